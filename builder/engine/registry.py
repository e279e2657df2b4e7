"""OCI distribution API client (requests): resolve an image tag to its linux/amd64 digest, copy
manifests and blobs out byte for byte, push blobs and manifests back, list tags and referrers.

A 401's WWW-Authenticate challenge is answered (Bearer: a token from its realm; Basic: a user
name and password) with the user's Docker credentials for that registry, read by docker-py's own
reader (~/.docker/config.json, $DOCKER_CONFIG, credential helpers), or anonymously when there
are none; the answer is kept per registry and scope (pull, or pull,push for writes) and sent up
front from then on. Every method retries with backoff on connection errors, 429 and 5xx (a
streamed upload is rewound first); timeouts throughout. Manifest lists and OCI indexes.
Registries on loopback are spoken to over plain HTTP, as the Docker engine does; every other
registry over HTTPS.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import requests

from builder import tarstream
from builder.errors import RegistryError, RegistryUnreachable
from builder.reference import DIGEST, DOCKER_HUB, ImageReference

AMD64 = "linux/amd64"  # the platform a base is pinned for unless asked for another
ATTEMPTS = 3
BACKOFF_S = 0.5
TIMEOUT = (5.0, 30.0)
# A registry may hash or move a large blob before it answers the PUT that completes its upload.
UPLOAD_TIMEOUT = (5.0, 600.0)
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPES = (OCI_INDEX, "application/vnd.docker.distribution.manifest.list.v2+json")
MANIFEST_TYPES = (OCI_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json")
_ACCEPT = ", ".join((*INDEX_TYPES, *MANIFEST_TYPES))
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class ResolvedImage:
    reference: ImageReference
    digest: str  # the image manifest of the platform asked for
    index_digest: str | None  # the manifest list / index it was chosen from
    config_digest: str
    env: tuple[str, ...]

    def env_value(self, key: str) -> str | None:
        prefix = f"{key}="
        return next((item[len(prefix) :] for item in self.env if item.startswith(prefix)), None)


@dataclass(frozen=True)
class _Login:
    """A user name and password from the user's Docker credentials."""

    user: str
    password: str

    @property
    def basic(self) -> str:
        pair = f"{self.user}:{self.password}".encode()
        return f"Basic {base64.b64encode(pair).decode()}"


class _Upload:
    """`size` bytes of a seekable file, from where it stood, as a request body: requests sends
    its length as Content-Length and reads it a block at a time (never all of it at once);
    `rewind` returns to the start for a retry. Hashes the bytes as they go out."""

    def __init__(self, source: BinaryIO, size: int, digest: str) -> None:
        self._source = source
        self._size = size
        self._digest = digest
        if not source.seekable():
            raise RegistryError(
                f"the source of blob {digest} is not a seekable file (a pipe?), so a failed "
                "upload could not be sent again: give a file, or the blob's bytes."
            )
        self._start = source.tell()
        self.sent = hashlib.sha256()
        self._left = size

    def rewind(self) -> None:
        self._source.seek(self._start)
        self.sent = hashlib.sha256()
        self._left = self._size

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[bytes]:
        while block := self.read(tarstream.BLOCK):
            yield block

    def read(self, size: int = -1) -> bytes:
        wanted = self._left if size < 0 else min(size, self._left)
        data = _read_exactly(self._source, wanted)
        if len(data) < wanted:
            got = self._size - self._left + len(data)
            raise RegistryError(
                f"the source of blob {self._digest} ended after {got} of its {self._size} "
                "bytes: the file or archive it is read from is truncated. Fetch or copy it "
                "again, then push again."
            )
        self._left -= len(data)
        self.sent.update(data)
        return data

    @property
    def sent_digest(self) -> str | None:
        """The digest of what went out, once all of it has."""
        return None if self._left else f"sha256:{self.sent.hexdigest()}"


class RegistryClient:
    def __init__(self, attempts: int = ATTEMPTS, backoff_s: float = BACKOFF_S) -> None:
        self._session = requests.Session()
        self._session.headers["User-Agent"] = "reprobuild"
        self._authorizations: dict[str, str] = {}  # "registry scope" -> Authorization header
        # registry -> the user's Docker login, None, or why it cannot be used
        self._logins: dict[str, _Login | RegistryError | None] = {}
        self._attempts = attempts
        self._backoff_s = backoff_s

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def resolve(self, reference: ImageReference, platform: str | None = None) -> ResolvedImage:
        """Tag or digest -> the manifest digest for `platform` ("linux/arm64"), its config digest
        and env. With a platform, an image (not an index) must be for it by its config; without
        one, an index gives its linux/amd64 image and an image is taken as it is."""
        target = reference.digest or reference.tag or "latest"
        body, media_type, digest = self._manifest(reference, target)
        index_digest = None
        if media_type in INDEX_TYPES or "manifests" in body:
            index_digest = digest
            digest = self._platform_digest(reference, body, platform or AMD64)
            body, media_type, _ = self._manifest(reference, digest)
        config = body.get("config")
        config_digest = config.get("digest") if isinstance(config, dict) else None
        if not isinstance(config_digest, str) or not DIGEST.match(config_digest):
            raise RegistryError(
                f"{reference.written}: the manifest names no config blob, so it is not a container "
                "image: check the reference, or give the base by a digest of an image."
            )
        blob = self._get(reference, f"{reference.base_url}/blobs/{config_digest}", {})
        image_config = json_object(blob.content, "a config blob", reference)
        if platform is not None:
            _check_platform(reference, image_config, platform)
        settings = image_config.get("config") or {}
        env = (settings.get("Env") or []) if isinstance(settings, dict) else None
        if not isinstance(env, list) or not all(isinstance(item, str) for item in env):
            raise _broken(reference, "a config blob", "its config.Env is not a list of strings")
        return ResolvedImage(reference, digest, index_digest, config_digest, tuple(env))

    # Reading exact bytes.

    def manifest(self, reference: ImageReference, target: str) -> tuple[bytes, str]:
        """The manifest or index at `target` (a tag or a digest): its bytes as served and its
        media type. By digest, the bytes must hash to it."""
        what = f"{reference.name}{'@' if _is_digest(target) else ':'}{target}"
        url = f"{reference.base_url}/manifests/{target}"
        response = self._get(reference, url, {"Accept": _ACCEPT}, what=what)
        content = response.content
        if _is_digest(target) and _sha256(content) != target:
            raise _untrustworthy(reference, f"the manifest {target}", _sha256(content))
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        if media_type in ("", "application/json", "application/octet-stream", "text/plain"):
            media_type = str(json_object(content, "a manifest", reference).get("mediaType") or "")
        if not media_type:
            raise _broken(reference, "a manifest", "it names no media type")
        return content, media_type

    def read_blob(
        self,
        reference: ImageReference,
        digest: str,
        sink: Callable[[bytes], object],
        chunk: int = tarstream.BLOCK,
    ) -> int:
        """Stream blob `digest` to `sink` in chunks of up to `chunk` bytes, hashing as it goes;
        its size. RegistryError when the bytes hash to another digest (`sink` has had them)."""
        _check_digest(reference, digest)
        url = f"{reference.base_url}/blobs/{digest}"
        response = self._get(
            reference, url, {}, stream=True, what=f"blob {digest} in {reference.name}"
        )
        hasher, size = hashlib.sha256(), 0
        with response:
            try:
                for block in response.iter_content(chunk):
                    hasher.update(block)
                    sink(block)
                    size += len(block)
            except requests.RequestException as error:
                raise RegistryUnreachable(
                    f"the registry {reference.registry} broke off the blob {digest} of "
                    f"{reference.name} after {size} bytes ({type(error).__name__}). Check the "
                    "network to it, then copy again."
                ) from None
        if f"sha256:{hasher.hexdigest()}" != digest:
            raise _untrustworthy(reference, f"the blob {digest}", f"sha256:{hasher.hexdigest()}")
        return size

    def has_blob(self, reference: ImageReference, digest: str) -> bool:
        return self._has_blob(reference, digest, push=False)

    def tags(self, reference: ImageReference) -> list[str]:
        """The repository's tags, every page; [] when the repository does not exist."""
        names: list[str] = []
        for response in self._pages(reference, f"{reference.base_url}/tags/list", {}):
            if response is None:
                return []
            page = json_object(response.content, "a tag list", reference).get("tags") or []
            if not isinstance(page, list) or not all(isinstance(name, str) for name in page):
                raise _broken(reference, "a tag list", "its tags are not a list of strings")
            names.extend(page)
        return names

    def referrers(
        self, reference: ImageReference, digest: str, artifact_type: str | None = None
    ) -> list[dict[str, Any]] | None:
        """The descriptors of the artifacts whose subject is `digest` (OCI distribution 1.1),
        of `artifact_type` when given; None when the registry has no referrers API."""
        _check_digest(reference, digest)
        url = f"{reference.base_url}/referrers/{digest}"
        if artifact_type is not None:
            url = _with_query(url, {"artifactType": artifact_type})
        found: list[dict[str, Any]] = []
        for response in self._pages(reference, url, {"Accept": OCI_INDEX}):
            entries = None if response is None else _index_entries(response)
            if entries is None:
                return None
            found.extend(entries)
        # A registry may ignore the filter (it then sends no OCI-Filters-Applied): apply it here.
        return [e for e in found if artifact_type in (None, e.get("artifactType"))]

    # Pushing.

    def push_blob(
        self, reference: ImageReference, digest: str, size: int, source: BinaryIO | bytes
    ) -> None:
        """Upload `size` bytes from `source` (bytes, or a seekable file at the blob's start)
        as blob `digest` in one monolithic PUT; nothing when the registry has it already."""
        _check_digest(reference, digest)
        if self._has_blob(reference, digest, push=True):
            return
        location = self._start_upload(reference)
        upload = _Upload(io.BytesIO(source) if isinstance(source, bytes) else source, size, digest)
        response = self._send(
            reference,
            "PUT",
            _with_query(location, {"digest": digest}),
            push=True,
            headers={"Content-Type": "application/octet-stream"},
            body=upload,
            timeout=UPLOAD_TIMEOUT,
        )
        if not 200 <= response.status_code < 300:  # 201 Created; some registries say 204
            sent = upload.sent_digest
            if sent is not None and sent != digest:
                raise RegistryError(
                    f"the {size} bytes given for blob {digest} hash to {sent}: the file or "
                    "archive they came from does not hold that blob. Copy it again, or push the "
                    "blob its manifest names."
                )
            raise _push_refused(reference, f"the blob {digest}", response)

    def push_manifest(
        self, reference: ImageReference, target: str, body: bytes, media_type: str
    ) -> str:
        """PUT `body` as the manifest at `target` (a tag or its own digest); its digest."""
        digest = _sha256(body)
        if _is_digest(target) and target != digest:
            raise RegistryError(
                f"the manifest to push as {reference.name}@{target} hashes to {digest}: push it "
                "by its own digest, or by a tag."
            )
        response = self._send(
            reference,
            "PUT",
            f"{reference.base_url}/manifests/{target}",
            push=True,
            headers={"Content-Type": media_type},
            body=body,
        )
        if not 200 <= response.status_code < 300:  # 201 Created, as the specification says
            raise _push_refused(reference, f"the manifest {target}", response)
        stored = response.headers.get("Docker-Content-Digest")
        if stored is not None and stored != digest:
            raise RegistryError(
                f"{reference.registry} stored the manifest pushed to {reference.name}:{target} "
                f"as {stored}, not as its bytes' digest {digest}: it rewrote the manifest, so "
                "references by digest would not hold. Push to a registry that keeps manifests "
                "as sent (any OCI distribution registry does)."
            )
        return digest

    def _has_blob(self, reference: ImageReference, digest: str, push: bool) -> bool:
        _check_digest(reference, digest)
        url = f"{reference.base_url}/blobs/{digest}"
        response = self._send(reference, "HEAD", url, push=push)
        if response.status_code in (200, 404):
            return response.status_code == 200
        if push:
            raise _push_refused(reference, f"the blob {digest}", response)
        raise _read_refused(reference, url, response.status_code)

    def _start_upload(self, reference: ImageReference) -> str:
        """POST for an upload session; the absolute URL it is to be completed at."""
        response = self._send(reference, "POST", f"{reference.base_url}/blobs/uploads/", push=True)
        location = response.headers.get("Location")
        if response.status_code != 202:
            raise _push_refused(reference, "a new blob", response)
        if not location:
            raise _broken(reference, "an upload session", "it has no Location header")
        return urljoin(response.url or reference.base_url, location)

    # Requests: errors, pages, the 401 challenge, retries.

    def _manifest(self, reference: ImageReference, target: str) -> tuple[dict[str, Any], str, str]:
        response = self._get(
            reference, f"{reference.base_url}/manifests/{target}", {"Accept": _ACCEPT}
        )
        digest = response.headers.get("Docker-Content-Digest") or _sha256(response.content)
        if target.startswith("sha256:") and digest != target:
            raise RegistryError(
                f"{reference.registry} answered {reference.written} with content of digest "
                f"{digest}, not {target}: the registry or something between us and it is not "
                "trustworthy. Lock from another network or registry mirror."
            )
        body = json_object(response.content, "a manifest", reference)
        media_type = response.headers.get("Content-Type", "").split(";")[0] or body.get(
            "mediaType", ""
        )
        return body, str(media_type), digest

    def _platform_digest(
        self, reference: ImageReference, index: dict[str, Any], platform: str
    ) -> str:
        entries = index.get("manifests", [])
        if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
            raise _broken(reference, "an index", "its manifests are not a list of objects")
        platforms = [p if isinstance(p := e.get("platform"), dict) else {} for e in entries]
        for entry, described in zip(entries, platforms, strict=True):
            if _platform_of(described) == platform:
                digest = entry.get("digest")
                if not isinstance(digest, str) or not DIGEST.match(digest):
                    raise _broken(reference, "an index", f"its {platform} entry names no digest")
                return digest
        found = sorted(_platform_of(p) for p in platforms)
        raise RegistryError(
            f"{reference.written} has no {platform} image (it has {', '.join(found) or 'none'}); "
            f"choose a base built for {platform}."
        )

    def _get(
        self,
        reference: ImageReference,
        url: str,
        headers: dict[str, str],
        *,
        stream: bool = False,
        what: str | None = None,
    ) -> requests.Response:
        """A GET that must answer 200; RegistryError naming `what` (the reference as written
        by default) when the registry has no such thing."""
        response = self._send(reference, "GET", url, headers=headers, stream=stream)
        if response.status_code == 404:
            _release(response, stream)
            raise RegistryError(
                f"{reference.registry} has no {what or reference.written} (HTTP 404): check the "
                "image name and tag."
            )
        if response.status_code != 200:
            _release(response, stream)
            raise RegistryError(
                f"{reference.registry} refused {url} (HTTP {response.status_code}); if the image "
                "is private, pull it where you have credentials and give it by digest."
            )
        return response

    def _pages(
        self, reference: ImageReference, url: str, headers: dict[str, str]
    ) -> Iterator[requests.Response | None]:
        """Each page of a paginated GET (Link: <...>; rel="next"); None (and no more) for a 404."""
        seen: set[str] = set()
        page: str | None = url
        while page is not None:
            seen.add(page)
            response = self._send(reference, "GET", page, headers=headers)
            if response.status_code == 404:
                yield None
                return
            if response.status_code != 200:
                raise _read_refused(reference, page, response.status_code)
            yield response
            link = response.links.get("next", {}).get("url")
            page = urljoin(response.url or page, link) if link else None
            if page in seen:
                raise _broken(reference, "a page of a list", "its next page is one already read")

    def _send(
        self,
        reference: ImageReference,
        method: str,
        url: str,
        *,
        push: bool = False,
        headers: dict[str, str] | None = None,
        body: bytes | _Upload | None = None,
        stream: bool = False,
        timeout: tuple[float, float] = TIMEOUT,
    ) -> requests.Response:
        """One request, with retries, the authorization known for its scope, and a 401's
        challenge answered once."""
        scope = _scope(reference, push)
        sent = dict(headers or {})
        known = self._authorizations.get(scope) or self._authorizations.get(_scope(reference, True))
        if known:
            sent["Authorization"] = known
        options = _Options(method, body, stream, timeout)
        response = self._request(reference, url, sent, options=options)
        if response.status_code != 401:
            return response
        _release(response, options.stream)
        challenge = response.headers.get("WWW-Authenticate", "")
        self._authorizations[scope] = self._authorize(reference, challenge, push)
        sent["Authorization"] = self._authorizations[scope]
        return self._request(reference, url, sent, options=options)

    def _authorize(self, reference: ImageReference, challenge: str, push: bool) -> str:
        """The Authorization header that answers a 401's WWW-Authenticate challenge."""
        scheme, _, parameters = challenge.partition(" ")
        fields = dict(_CHALLENGE.findall(parameters))
        login = self._login(reference.registry, push)
        if scheme.lower() == "basic":
            if login is None:
                raise _no_login(reference, push)
            return login.basic
        if scheme.lower() != "bearer" or "realm" not in fields:
            raise RegistryError(
                f"{reference.registry} asks for {scheme or 'unknown'} authentication; only bearer "
                "tokens and Basic (user name and password) are supported. Give the base by digest "
                "instead."
            )
        return f"Bearer {self._token(reference, fields, push, login)}"

    def _token(
        self, reference: ImageReference, fields: dict[str, str], push: bool, login: _Login | None
    ) -> str:
        params = {k: v for k, v in fields.items() if k in ("service", "scope")}
        params.setdefault("scope", f"repository:{reference.repository}:pull")
        if push:
            params["scope"] = f"repository:{reference.repository}:pull,push"
        headers = {"Authorization": login.basic} if login is not None else {}
        response = self._request(reference, fields["realm"], headers, params)
        if response.status_code != 200 and login is not None:
            raise RegistryError(
                f"{reference.registry}'s token service refused the Docker credentials of "
                f"{login.user!r} (HTTP {response.status_code}): log in again with "
                f"`{_login_command(reference)}`."
            )
        if response.status_code != 200 and push:
            raise _no_login(reference, push)
        if response.status_code != 200:
            raise RegistryError(
                f"{reference.registry} gave no anonymous token (HTTP {response.status_code}): "
                "the repository may be private; log in (`docker login`) or use a public base."
            )
        answer = json_object(response.content, "a token answer", reference)
        return str(answer.get("token") or answer.get("access_token") or "")

    def _login(self, registry: str, push: bool) -> _Login | None:
        """The user's Docker login for `registry`; one that cannot be used is an error for a
        push, and anonymous for a read (which worked before there were credentials)."""
        if registry not in self._logins:
            self._logins[registry] = _docker_login(registry)
        login = self._logins[registry]
        if isinstance(login, RegistryError):
            if push:
                raise login
            return None
        return login

    def _request(
        self,
        reference: ImageReference,
        url: str,
        headers: dict[str, str],
        params: dict[str, str] | None = None,
        *,
        options: _Options | None = None,
    ) -> requests.Response:
        """The request, tried up to `attempts` times while the connection fails or the answer
        is a 429 or a 5xx (an upload rewound before each try); the first other answer."""
        options = options or _Options()
        problem = ""
        for attempt in range(self._attempts):
            if attempt:
                time.sleep(self._backoff_s * 2 ** (attempt - 1))
            try:
                response = self._call(url, headers, params, options)
            except requests.RequestException as error:
                problem = type(error).__name__
                continue
            if response.status_code < 500 and response.status_code != 429:
                return response
            _release(response, options.stream)
            problem = f"HTTP {response.status_code}"
        raise RegistryUnreachable(
            f"the registry {reference.registry} did not answer ({problem} after {self._attempts} "
            "attempts). Check that it runs and that this machine reaches it (network, proxy)."
        )

    def _call(
        self, url: str, headers: dict[str, str], params: dict[str, str] | None, options: _Options
    ) -> requests.Response:
        if isinstance(options.body, _Upload):
            options.body.rewind()
        if options.method == "GET":
            return self._session.get(
                url, headers=headers, params=params, timeout=options.timeout, stream=options.stream
            )
        return self._session.request(
            options.method,
            url,
            headers=headers,
            params=params,
            data=options.body,
            timeout=options.timeout,
            allow_redirects=options.method == "HEAD",
        )


@dataclass(frozen=True)
class _Options:
    """What a request carries besides its URL, headers and query."""

    method: str = "GET"
    body: bytes | _Upload | None = None
    stream: bool = False
    timeout: tuple[float, float] = TIMEOUT


def _docker_login(registry: str) -> _Login | RegistryError | None:
    """The user's Docker credentials for `registry`, read as the docker CLI stores them; None
    when there are none; the error to raise when they cannot be read or used."""
    # Imported here: docker is slow to import, and only a 401 needs it.
    import docker.auth
    import docker.errors

    name = "docker.io" if registry == DOCKER_HUB else registry
    try:
        with warnings.catch_warnings():  # a missing helper warns, then fails: the error says it
            warnings.simplefilter("ignore", UserWarning)
            found = docker.auth.load_config().resolve_authconfig(name)
    except (docker.errors.DockerException, ValueError, OSError) as error:
        return RegistryError(
            f"your Docker credentials for {name} could not be read ({error}): fix the Docker "
            f"config (~/.docker/config.json, or $DOCKER_CONFIG) or its credential helper, or "
            f"log in again with `docker login {name}`."
        )
    if not found:
        return None
    if found.get("IdentityToken"):
        return RegistryError(
            f"your Docker credentials for {name} are an identity token, which reprobuild cannot "
            f"use: log in with a user name and password or access token (`docker login {name} "
            "-u USER`)."
        )
    user = found.get("Username") or found.get("username")
    password = found.get("Password") or found.get("password")
    if not isinstance(user, str) or not isinstance(password, str) or not user:
        return None
    return _Login(user, password)


def _platform_of(described: dict[str, Any]) -> str:
    """os/architecture of an index entry's platform or an image config ("linux/arm64": the
    variant, v8 on every arm64 image, is not told apart)."""
    return f"{described.get('os')}/{described.get('architecture')}"


def _check_platform(reference: ImageReference, config: dict[str, Any], platform: str) -> None:
    if "architecture" not in config:  # an image whose config does not say is taken as asked
        return
    found = _platform_of(
        {"os": platform.split("/", maxsplit=1)[0], **config}
    )  # os: as asked, unless said
    if found != platform:
        raise RegistryError(
            f"{reference.written} is a {found} image, and this image is for {platform}: choose a "
            f"base built for {platform} (or a multi-platform tag that has one)."
        )


def _release(response: requests.Response, stream: bool) -> None:
    """Give a streamed answer's connection back unread (an answer read whole has given it)."""
    if stream:
        response.close()


def _read_exactly(source: BinaryIO, size: int) -> bytes:
    """Up to `size` bytes, fewer only at the end of the file (a raw file reads short)."""
    parts: list[bytes] = []
    while size > 0 and (part := source.read(size)):
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def _index_entries(response: requests.Response) -> list[dict[str, Any]] | None:
    """The descriptors of an OCI image index; None when the answer is not one."""
    try:
        document = json.loads(response.content)
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict):
        return None
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
    entries = document.get("manifests")
    if OCI_INDEX not in (document.get("mediaType"), content_type) or not isinstance(entries, list):
        return None
    if not all(isinstance(entry, dict) for entry in entries):
        return None
    return entries


def _scope(reference: ImageReference, push: bool) -> str:
    actions = "pull,push" if push else "pull"
    return f"{reference.registry} repository:{reference.repository}:{actions}"


def _with_query(url: str, extra: dict[str, str]) -> str:
    """`url` with `extra` added to the query it may already carry."""
    parts = urlsplit(url)
    query = "&".join(filter(None, (parts.query, urlencode(extra))))
    return urlunsplit(parts._replace(query=query))


def _sha256(content: bytes) -> str:
    return f"sha256:{hashlib.sha256(content).hexdigest()}"


def _is_digest(target: str) -> bool:
    return target.startswith("sha256:")


def _check_digest(reference: ImageReference, digest: str) -> None:
    if not DIGEST.match(digest):
        raise RegistryError(
            f"{digest!r} (for {reference.name}) is not a digest: write sha256:<64 hex digits>."
        )


def _login_command(reference: ImageReference) -> str:
    return (
        "docker login" if reference.registry == DOCKER_HUB else f"docker login {reference.registry}"
    )


def _no_login(reference: ImageReference, push: bool) -> RegistryError:
    doing = "push to" if push else "read"
    return RegistryError(
        f"{reference.registry} asks for credentials to {doing} {reference.name}, and your Docker "
        f"config has none for it: log in with `{_login_command(reference)}`, then try again."
    )


def _push_refused(
    reference: ImageReference, what: str, response: requests.Response
) -> RegistryError:
    """The error for a push answered with something other than success."""
    status = response.status_code
    if status in (401, 403):
        return RegistryError(
            f"{reference.registry} refused the push of {what} to {reference.name} (HTTP "
            f"{status}): log in with `{_login_command(reference)}` as a user who may push there, "
            "then push again."
        )
    return RegistryError(
        f"{reference.registry} refused {what} pushed to {reference.name} (HTTP {status}"
        f"{_error_codes(response)}): check that the registry accepts this content (OCI image "
        "manifests, every blob pushed before the manifest that names it), then push again."
    )


def _read_refused(reference: ImageReference, url: str, status: int) -> RegistryError:
    return RegistryError(
        f"{reference.registry} refused {url} (HTTP {status}): if {reference.name} is private, "
        f"log in with `{_login_command(reference)}`, then try again."
    )


def _error_codes(response: requests.Response) -> str:
    """`: CODE, CODE` from an OCI error answer, or nothing."""
    try:
        errors = json.loads(response.content).get("errors")
        codes = [str(error["code"]) for error in errors]
    except (ValueError, RecursionError, AttributeError, TypeError, KeyError):
        return ""
    return f": {', '.join(codes)}" if codes else ""


def _untrustworthy(reference: ImageReference, what: str, actual: str) -> RegistryError:
    return RegistryError(
        f"{reference.registry} served {what} of {reference.name} as bytes of digest {actual}: "
        "the registry (its storage) or something between us and it is not trustworthy. Copy "
        "from another network or registry mirror."
    )


BROKEN_FIX = "Lock from another network or registry mirror."


def json_object(
    content: bytes, what: str, reference: ImageReference, fix: str = BROKEN_FIX
) -> dict[str, Any]:
    """A registry's JSON answer (a manifest, an index, a config blob, a token) as an object;
    RegistryError naming what was malformed, and `fix`."""
    try:
        document = json.loads(content)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise _broken(reference, what, f"it is not JSON ({error})", fix) from None
    if not isinstance(document, dict):
        raise _broken(reference, what, "it is not a JSON object", fix)
    return document


def _broken(
    reference: ImageReference, what: str, problem: str, fix: str = BROKEN_FIX
) -> RegistryError:
    return RegistryError(
        f"{reference.registry} answered {reference.written} with {what} that is not one "
        f"({problem}): the registry or something between us and it is broken. {fix}"
    )
