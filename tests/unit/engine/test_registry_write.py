"""The registry client's writes, exact reads and credentials against stand-in registries: small
HTTP servers in a thread on 127.0.0.1, each answering as a test scripts it. They are stand-ins
because the real local registry (docker-registry 2.8.2, tests/integration/test_registry_write.py)
cannot show these cases: it has no referrers API, asks for no credentials, never fails with a
5xx, and serves the bytes it stored."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from builder.engine.registry import RegistryClient
from builder.errors import RegistryError, RegistryUnreachable
from builder.reference import ImageReference

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SBOM = "application/vnd.example.sbom+json"
SIGNATURE = "application/vnd.example.signature"
USER, PASSWORD = "lab", "s3cret"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


@dataclass(frozen=True)
class Seen:
    method: str
    path: str  # without the query
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    length: int | None = None  # a Content-Length other than the body's: a stream cut short


Script = Callable[[Seen], Answer]


class _StandIn(ThreadingHTTPServer):
    def __init__(self, script: Script) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script = script
        self.seen: list[Seen] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: _StandIn

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def do_PUT(self) -> None:
        self._answer()

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        url = urlsplit(self.path)
        seen = Seen(self.command, url.path, parse_qs(url.query), dict(self.headers), body)
        self.server.seen.append(seen)
        answer = self.server.script(seen)
        self.send_response(answer.status)
        for key, value in answer.headers.items():
            self.send_header(key, value)
        length = len(answer.body) if answer.length is None else answer.length
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)
        self.close_connection = True


@pytest.fixture
def serve() -> Iterator[Callable[[Script], _StandIn]]:
    servers: list[_StandIn] = []

    def start(script: Script) -> _StandIn:
        server = _StandIn(script)
        threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def no_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Docker config folder with no credentials in it, never the user's."""
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "config.json").write_text("{}")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))


def _log_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registry: str) -> None:
    """Write credentials as `docker login` does, to a DOCKER_CONFIG folder of the test's."""
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "config.json").write_text(
        json.dumps({"auths": {registry: {"auth": auth}}})
    )
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))


def _digest(content: bytes) -> str:
    return f"sha256:{hashlib.sha256(content).hexdigest()}"


def _client() -> RegistryClient:
    return RegistryClient(attempts=3, backoff_s=0.01)


def _reference(server: _StandIn) -> ImageReference:
    return ImageReference.parse(f"{server.address}/lab/app:v1")


def _pushing(seen: Seen, put: Callable[[Seen], Answer] | None = None) -> Answer:
    """A registry that has no blobs and accepts uploads (a relative Location with a query)."""
    if seen.method == "HEAD":
        return Answer(404)
    if seen.method == "POST":
        return Answer(202, headers={"Location": "/v2/lab/app/blobs/uploads/u1?_state=abc"})
    if put is not None:
        return put(seen)
    digest = seen.query.get("digest", [_digest(seen.body)])[0]
    return Answer(201, headers={"Docker-Content-Digest": digest})


# Referrers.

SUBJECT = _digest(b"the image manifest")
REFERRERS = [
    {"mediaType": OCI_MANIFEST, "digest": _digest(b"sbom"), "size": 4, "artifactType": SBOM},
    {"mediaType": OCI_MANIFEST, "digest": _digest(b"sig"), "size": 3, "artifactType": SIGNATURE},
    {"mediaType": OCI_MANIFEST, "digest": _digest(b"sbom2"), "size": 5, "artifactType": SBOM},
]


def _referrers(seen: Seen) -> Answer:
    """An OCI 1.1 referrers API that ignores the artifactType filter and pages by two."""
    page = 1 if seen.query.get("page") == ["2"] else 0
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": REFERRERS[2 * page : 2 * page + 2],
    }
    headers = {"Content-Type": OCI_INDEX}
    if page == 0:
        headers["Link"] = f'</v2/lab/app/referrers/{SUBJECT}?page=2>; rel="next"'
    return Answer(200, json.dumps(index).encode(), headers)


def test_referrers_are_read_from_every_page_and_filtered(
    serve: Callable[[Script], _StandIn],
) -> None:
    server = serve(_referrers)
    with _client() as client:
        every = client.referrers(_reference(server), SUBJECT)
        sboms = client.referrers(_reference(server), SUBJECT, SBOM)
    assert every == REFERRERS
    assert sboms == [REFERRERS[0], REFERRERS[2]]
    asked = [seen for seen in server.seen if seen.query.get("artifactType")]
    assert [seen.query["artifactType"] for seen in asked] == [[SBOM]]
    assert {seen.path for seen in server.seen} == {f"/v2/lab/app/referrers/{SUBJECT}"}


@pytest.mark.parametrize(
    "answer",
    [
        Answer(404, b"404 page not found", {"Content-Type": "text/plain"}),
        Answer(200, b"<html>a portal</html>", {"Content-Type": "text/html"}),
        Answer(200, b'{"repositories": []}', {"Content-Type": "application/json"}),
    ],
    ids=["404", "html", "not-an-index"],
)
def test_a_registry_without_a_referrers_api_gives_none(
    serve: Callable[[Script], _StandIn], answer: Answer
) -> None:
    server = serve(lambda seen: answer)
    with _client() as client:
        assert client.referrers(_reference(server), SUBJECT, SBOM) is None


# Credentials.


def _basic_only(seen: Seen) -> Answer:
    """A registry that answers only requests carrying the test's user name and password."""
    if seen.headers.get("Authorization") != BASIC:
        return Answer(401, b"{}", {"WWW-Authenticate": 'Basic realm="stand-in"'})
    if seen.path.endswith("/tags/list"):
        return Answer(200, b'{"name": "lab/app", "tags": ["v1"]}')
    if seen.path.startswith("/v2/lab/app/manifests/"):
        return Answer(201, headers={"Docker-Content-Digest": _digest(seen.body)})
    return _pushing(seen)


def test_basic_credentials_come_from_the_docker_config(
    serve: Callable[[Script], _StandIn], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve(_basic_only)
    _log_in(tmp_path, monkeypatch, server.address)
    blob, manifest = b"layer bytes", b'{"schemaVersion": 2}'
    with _client() as client:
        client.push_blob(_reference(server), _digest(blob), len(blob), blob)
        pushed = client.push_manifest(_reference(server), "v1", manifest, OCI_MANIFEST)
        tags = client.tags(_reference(server))
    assert (pushed, tags) == (_digest(manifest), ["v1"])
    # The first request met the challenge; every later one carried the credentials up front.
    assert [
        (seen.method, seen.path, seen.headers.get("Authorization")) for seen in server.seen
    ] == [
        ("HEAD", f"/v2/lab/app/blobs/{_digest(blob)}", None),
        ("HEAD", f"/v2/lab/app/blobs/{_digest(blob)}", BASIC),
        ("POST", "/v2/lab/app/blobs/uploads/", BASIC),
        ("PUT", "/v2/lab/app/blobs/uploads/u1", BASIC),
        ("PUT", "/v2/lab/app/manifests/v1", BASIC),
        ("GET", "/v2/lab/app/tags/list", BASIC),
    ]
    put = server.seen[3]
    assert put.query == {"_state": ["abc"], "digest": [_digest(blob)]}
    assert (put.body, put.headers["Content-Length"]) == (blob, str(len(blob)))


def test_a_bearer_challenge_takes_a_push_token_for_the_docker_credentials(
    serve: Callable[[Script], _StandIn], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def registry(seen: Seen) -> Answer:
        if seen.path == "/token":
            granted = seen.headers.get("Authorization") == BASIC
            return Answer(200, json.dumps({"token": "push" if granted else "pull"}).encode())
        if seen.headers.get("Authorization") != "Bearer push":
            challenge = f'Bearer realm="http://{server.address}/token",service="stand-in"'
            return Answer(401, b"{}", {"WWW-Authenticate": challenge})
        return _pushing(seen)

    server = serve(registry)
    _log_in(tmp_path, monkeypatch, server.address)
    with _client() as client:
        client.push_blob(_reference(server), _digest(b"x"), 1, b"x")
    tokens = [seen for seen in server.seen if seen.path == "/token"]
    assert len(tokens) == 1
    assert tokens[0].headers["Authorization"] == BASIC
    assert tokens[0].query == {"service": ["stand-in"], "scope": ["repository:lab/app:pull,push"]}


def test_a_credential_helper_that_is_missing_leaves_reads_anonymous(
    serve: Callable[[Script], _StandIn], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config copied from a desktop names a helper this machine lacks: a public image still
    resolves (as before credentials were read); a push says what to fix."""

    def registry(seen: Seen) -> Answer:
        if seen.path == "/token":
            return Answer(200, b'{"token": "anonymous"}')
        if seen.headers.get("Authorization") != "Bearer anonymous":
            challenge = f'Bearer realm="http://{server.address}/token"'
            return Answer(401, b"{}", {"WWW-Authenticate": challenge})
        return Answer(200, b'{"tags": ["v1"]}') if seen.method == "GET" else Answer(404)

    server = serve(registry)
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "config.json").write_text('{"credsStore": "reprobuild-absent"}')
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    with _client() as client:
        assert client.tags(_reference(server)) == ["v1"]
        with pytest.raises(RegistryError) as refused:
            client.push_blob(_reference(server), _digest(b"x"), 1, b"x")
    assert str(refused.value).startswith(
        f"your Docker credentials for {server.address} could not be read ("
    )
    assert str(refused.value).endswith(
        "): fix the Docker config (~/.docker/config.json, or $DOCKER_CONFIG) or its credential "
        f"helper, or log in again with `docker login {server.address}`."
    )


@pytest.mark.parametrize("scheme", ["Basic", "Bearer"])
def test_a_push_without_credentials_says_to_log_in(
    serve: Callable[[Script], _StandIn], no_credentials: None, scheme: str
) -> None:
    """Reads are anonymous; the upload is refused (Bearer: the anonymous token may only pull)."""

    def registry(seen: Seen) -> Answer:
        if seen.path == "/token":
            return Answer(200, b'{"token": "pull-only"}')
        if seen.method == "HEAD":
            return Answer(404)
        realm = f'realm="http://{server.address}/token"'
        return Answer(401, b"{}", {"WWW-Authenticate": f"{scheme} {realm}"})

    server = serve(registry)
    with _client() as client, pytest.raises(RegistryError) as refused:
        client.push_blob(_reference(server), _digest(b"x"), 1, b"x")
    expected = {
        "Basic": f"{server.address} asks for credentials to push to {server.address}/lab/app, "
        "and your Docker config has none for it: log in with "
        f"`docker login {server.address}`, then try again.",
        "Bearer": f"{server.address} refused the push of a new blob to {server.address}/lab/app "
        f"(HTTP 401): log in with `docker login {server.address}` as a user who may push "
        "there, then push again.",
    }
    assert str(refused.value) == expected[scheme]


def test_a_forbidden_manifest_push_says_to_log_in(
    serve: Callable[[Script], _StandIn], no_credentials: None
) -> None:
    server = serve(lambda seen: Answer(403, b'{"errors": [{"code": "DENIED"}]}'))
    with _client() as client, pytest.raises(RegistryError) as refused:
        client.push_manifest(_reference(server), "v1", b"{}", OCI_MANIFEST)
    assert str(refused.value) == (
        f"{server.address} refused the push of the manifest v1 to {server.address}/lab/app (HTTP "
        f"403): log in with `docker login {server.address}` as a user who may push there, then "
        "push again."
    )


# Bytes that are not what was asked for.


def test_a_blob_served_with_other_bytes_names_both_digests(
    serve: Callable[[Script], _StandIn],
) -> None:
    asked, served = _digest(b"the layer"), b"something else"
    server = serve(lambda seen: Answer(200, served))
    received: list[bytes] = []
    with _client() as client, pytest.raises(RegistryError) as refused:
        client.read_blob(_reference(server), asked, received.append)
    assert str(refused.value) == (
        f"{server.address} served the blob {asked} of {server.address}/lab/app as bytes of "
        f"digest {_digest(served)}: the registry (its storage) or something between us and it "
        "is not trustworthy. Copy from another network or registry mirror."
    )
    assert b"".join(received) == served


def test_a_blob_stream_that_breaks_off_is_unreachable(
    serve: Callable[[Script], _StandIn],
) -> None:
    server = serve(lambda seen: Answer(200, b"0123456789", length=1000))
    with _client() as client, pytest.raises(RegistryUnreachable) as broken:
        client.read_blob(_reference(server), _digest(b"x" * 1000), lambda block: None, chunk=4)
    assert str(broken.value) == (
        f"the registry {server.address} broke off the blob {_digest(b'x' * 1000)} of "
        f"{server.address}/lab/app after 8 bytes (ChunkedEncodingError). Check the network to "
        "it, then copy again."
    )


def test_a_manifest_by_digest_must_hash_to_it(serve: Callable[[Script], _StandIn]) -> None:
    asked, served = _digest(b'{"a": 1}'), b'{"a": 2}'
    server = serve(lambda seen: Answer(200, served, {"Content-Type": OCI_MANIFEST}))
    with _client() as client:
        assert client.manifest(_reference(server), "v1") == (served, OCI_MANIFEST)
        with pytest.raises(RegistryError) as refused:
            client.manifest(_reference(server), asked)
    assert f"served the manifest {asked} of {server.address}/lab/app as bytes of digest " in str(
        refused.value
    )


def test_a_registry_that_rewrites_a_manifest_is_refused(
    serve: Callable[[Script], _StandIn],
) -> None:
    rewritten = _digest(b"other")
    server = serve(lambda seen: Answer(201, headers={"Docker-Content-Digest": rewritten}))
    with _client() as client, pytest.raises(RegistryError) as refused:
        client.push_manifest(_reference(server), "v1", b"{}", OCI_MANIFEST)
    assert f"as {rewritten}, not as its bytes' digest {_digest(b'{}')}" in str(refused.value)


# Retries and streamed uploads.


def test_a_503_on_the_upload_is_retried_with_the_whole_file(
    serve: Callable[[Script], _StandIn], tmp_path: Path
) -> None:
    """The blob sits inside a larger file (as in an archive): exactly its bytes go, twice."""
    blob = bytes(range(256)) * 4096  # 1 MiB
    answers = iter([Answer(503), Answer(201)])
    server = serve(lambda seen: _pushing(seen, put=lambda put: next(answers)))
    (tmp_path / "archive").write_bytes(b"header" + blob + b"trailer")
    with (tmp_path / "archive").open("rb") as source, _client() as client:
        source.seek(len(b"header"))
        client.push_blob(_reference(server), _digest(blob), len(blob), source)
    puts = [seen for seen in server.seen if seen.method == "PUT"]
    assert len(puts) == 2
    assert all(put.body == blob for put in puts)
    assert all(put.headers["Content-Length"] == str(len(blob)) for put in puts)


def test_a_source_shorter_than_its_size_is_named(
    serve: Callable[[Script], _StandIn], tmp_path: Path
) -> None:
    server = serve(_pushing)
    (tmp_path / "short").write_bytes(b"abc")
    digest = _digest(b"abcdef")
    with (
        (tmp_path / "short").open("rb") as source,
        _client() as client,
        pytest.raises(RegistryError) as refused,
    ):
        client.push_blob(_reference(server), digest, 6, source)
    assert str(refused.value) == (
        f"the source of blob {digest} ended after 3 of its 6 bytes: the file or archive it is "
        "read from is truncated. Fetch or copy it again, then push again."
    )


def test_bytes_that_do_not_hash_to_the_digest_are_named(
    serve: Callable[[Script], _StandIn],
) -> None:
    claimed = _digest(b"the real layer")
    errors = b'{"errors": [{"code": "DIGEST_INVALID"}]}'
    server = serve(lambda seen: _pushing(seen, put=lambda put: Answer(400, errors)))
    with _client() as client, pytest.raises(RegistryError) as refused:
        client.push_blob(_reference(server), claimed, 5, b"wrong")
    assert str(refused.value) == (
        f"the 5 bytes given for blob {claimed} hash to {_digest(b'wrong')}: the file or archive "
        "they came from does not hold that blob. Copy it again, or push the blob its manifest "
        "names."
    )


def test_tags_of_a_repository_that_does_not_exist_are_none(
    serve: Callable[[Script], _StandIn],
) -> None:
    server = serve(lambda seen: Answer(404, b'{"errors": [{"code": "NAME_UNKNOWN"}]}'))
    with _client() as client:
        assert client.tags(_reference(server)) == []


def test_a_registry_failing_on_every_try_is_unreachable(
    serve: Callable[[Script], _StandIn],
) -> None:
    server = serve(lambda seen: Answer(503))
    with _client() as client, pytest.raises(RegistryUnreachable) as unreachable:
        client.has_blob(_reference(server), _digest(b"x"))
    assert len(server.seen) == 3
    assert str(unreachable.value) == (
        f"the registry {server.address} did not answer (HTTP 503 after 3 attempts). Check that "
        "it runs and that this machine reaches it (network, proxy)."
    )
