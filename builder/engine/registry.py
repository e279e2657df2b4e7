"""OCI distribution API client (requests): resolve an image tag to its linux/amd64 digest.

Anonymous bearer-token flow (401 + WWW-Authenticate -> token -> retry), manifest lists and OCI
indexes, retries with backoff on connection errors and 5xx, timeouts. Registries on loopback
are spoken to over plain HTTP, as the Docker engine does; every other registry over HTTPS.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from typing import Any

import requests

from builder.errors import RegistryError, RegistryUnreachable
from builder.reference import DIGEST, ImageReference

PLATFORM = ("linux", "amd64")
ATTEMPTS = 3
BACKOFF_S = 0.5
TIMEOUT = (5.0, 30.0)
INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class ResolvedImage:
    reference: ImageReference
    digest: str  # the linux/amd64 image manifest
    index_digest: str | None  # the manifest list / index it was chosen from
    config_digest: str
    env: tuple[str, ...]

    def env_value(self, key: str) -> str | None:
        prefix = f"{key}="
        return next((item[len(prefix) :] for item in self.env if item.startswith(prefix)), None)


class RegistryClient:
    def __init__(self, attempts: int = ATTEMPTS, backoff_s: float = BACKOFF_S) -> None:
        self._session = requests.Session()
        self._session.headers["User-Agent"] = "reprobuild"
        self._tokens: dict[str, str] = {}
        self._attempts = attempts
        self._backoff_s = backoff_s

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def resolve(self, reference: ImageReference) -> ResolvedImage:
        """Tag or digest -> the linux/amd64 manifest digest, its config digest and env."""
        target = reference.digest or reference.tag or "latest"
        body, media_type, digest = self._manifest(reference, target)
        index_digest = None
        if media_type in INDEX_TYPES or "manifests" in body:
            index_digest = digest
            digest = self._platform_digest(reference, body)
            body, media_type, _ = self._manifest(reference, digest)
        config = body.get("config")
        config_digest = config.get("digest") if isinstance(config, dict) else None
        if not isinstance(config_digest, str) or not DIGEST.match(config_digest):
            raise RegistryError(
                f"{reference.written}: the manifest names no config blob, so it is not a container "
                "image: check the reference, or give the base by a digest of an image."
            )
        blob = self._get(reference, f"{reference.base_url}/blobs/{config_digest}", {})
        settings = _document(blob.content, "a config blob", reference).get("config") or {}
        env = (settings.get("Env") or []) if isinstance(settings, dict) else None
        if not isinstance(env, list) or not all(isinstance(item, str) for item in env):
            raise _broken(reference, "a config blob", "its config.Env is not a list of strings")
        return ResolvedImage(reference, digest, index_digest, config_digest, tuple(env))

    def _manifest(self, reference: ImageReference, target: str) -> tuple[dict[str, Any], str, str]:
        accept = ", ".join((*INDEX_TYPES, *MANIFEST_TYPES))
        response = self._get(
            reference, f"{reference.base_url}/manifests/{target}", {"Accept": accept}
        )
        digest = response.headers.get("Docker-Content-Digest") or (
            f"sha256:{hashlib.sha256(response.content).hexdigest()}"
        )
        if target.startswith("sha256:") and digest != target:
            raise RegistryError(
                f"{reference.registry} answered {reference.written} with content of digest "
                f"{digest}, not {target}: the registry or something between us and it is not "
                "trustworthy. Lock from another network or registry mirror."
            )
        body = _document(response.content, "a manifest", reference)
        media_type = response.headers.get("Content-Type", "").split(";")[0] or body.get(
            "mediaType", ""
        )
        return body, str(media_type), digest

    def _platform_digest(self, reference: ImageReference, index: dict[str, Any]) -> str:
        entries = index.get("manifests", [])
        if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
            raise _broken(reference, "an index", "its manifests are not a list of objects")
        platforms = [p if isinstance(p := e.get("platform"), dict) else {} for e in entries]
        for entry, platform in zip(entries, platforms, strict=True):
            if (platform.get("os"), platform.get("architecture")) == PLATFORM:
                digest = entry.get("digest")
                if not isinstance(digest, str) or not DIGEST.match(digest):
                    raise _broken(reference, "an index", "its linux/amd64 entry names no digest")
                return digest
        found = sorted(f"{p.get('os')}/{p.get('architecture')}" for p in platforms)
        raise RegistryError(
            f"{reference.written} has no linux/amd64 image (it has {', '.join(found) or 'none'}); "
            "choose a base built for linux/amd64."
        )

    def _get(
        self, reference: ImageReference, url: str, headers: dict[str, str]
    ) -> requests.Response:
        response = self._request(reference, url, headers)
        if response.status_code == 401:
            token = self._token(reference, response.headers.get("WWW-Authenticate", ""))
            response = self._request(
                reference, url, {**headers, "Authorization": f"Bearer {token}"}
            )
        if response.status_code == 404:
            raise RegistryError(
                f"{reference.registry} has no {reference.written} (HTTP 404): check the image name "
                "and tag."
            )
        if response.status_code != 200:
            raise RegistryError(
                f"{reference.registry} refused {url} (HTTP {response.status_code}); if the image "
                "is private, pull it where you have credentials and give it by digest."
            )
        return response

    def _token(self, reference: ImageReference, challenge: str) -> str:
        scheme, _, parameters = challenge.partition(" ")
        fields = dict(_CHALLENGE.findall(parameters))
        if scheme.lower() != "bearer" or "realm" not in fields:
            raise RegistryError(
                f"{reference.registry} asks for {scheme or 'unknown'} authentication; only "
                "anonymous bearer tokens are supported. Give the base by digest instead."
            )
        cached = self._tokens.get(fields["realm"] + fields.get("scope", ""))
        if cached:
            return cached
        params = {k: v for k, v in fields.items() if k in ("service", "scope")}
        params.setdefault("scope", f"repository:{reference.repository}:pull")
        response = self._request(reference, fields["realm"], {}, params)
        if response.status_code != 200:
            raise RegistryError(
                f"{reference.registry} gave no anonymous token (HTTP {response.status_code}): "
                "the repository may be private; log in (`docker login`) or use a public base."
            )
        answer = _document(response.content, "a token answer", reference)
        token = str(answer.get("token") or answer.get("access_token") or "")
        self._tokens[fields["realm"] + fields.get("scope", "")] = token
        return token

    def _request(
        self,
        reference: ImageReference,
        url: str,
        headers: dict[str, str],
        params: dict[str, str] | None = None,
    ) -> requests.Response:
        problem = ""
        for attempt in range(self._attempts):
            if attempt:
                time.sleep(self._backoff_s * 2 ** (attempt - 1))
            try:
                response = self._session.get(url, headers=headers, params=params, timeout=TIMEOUT)
            except requests.RequestException as error:
                problem = type(error).__name__
                continue
            if response.status_code < 500 and response.status_code != 429:
                return response
            problem = f"HTTP {response.status_code}"
        raise RegistryUnreachable(
            f"the registry {reference.registry} did not answer ({problem} after {self._attempts} "
            "attempts). Check that it runs and that this machine reaches it (network, proxy)."
        )


def _document(content: bytes, what: str, reference: ImageReference) -> dict[str, Any]:
    """A registry's JSON answer (a manifest, an index, a config blob, a token) as an object;
    RegistryError naming what was malformed."""
    try:
        document = json.loads(content)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise _broken(reference, what, f"it is not JSON ({error})") from None
    if not isinstance(document, dict):
        raise _broken(reference, what, "it is not a JSON object")
    return document


def _broken(reference: ImageReference, what: str, problem: str) -> RegistryError:
    return RegistryError(
        f"{reference.registry} answered {reference.written} with {what} that is not one "
        f"({problem}): the registry or something between us and it is broken. Lock from "
        "another network or registry mirror."
    )
