"""The anonymous bearer-token flow, against a token-demanding front for the real local registry.

The front is a real HTTP server on 127.0.0.1: it answers 401 with a WWW-Authenticate challenge
until the request carries the token its realm hands out, then forwards to docker-registry. It
stands in for Docker Hub's auth service, which this machine cannot reach.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
import requests

from builder.engine.registry import RegistryClient
from builder.reference import ImageReference
from tests.infra import REGISTRY

TOKEN = "anonymous-pull-token"


class _TokenFront(BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        host = self.headers.get("Host", "127.0.0.1")
        if self.path.startswith("/token"):
            self.seen.append(self.path)
            self._send(
                200, b'{"token": "%s"}' % TOKEN.encode(), {"Content-Type": "application/json"}
            )
            return
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            challenge = (
                f'Bearer realm="http://{host}/token",service="front",'
                'scope="repository:reprobuild-test/debian-python:pull"'
            )
            self._send(401, b"{}", {"WWW-Authenticate": challenge})
            return
        upstream = requests.get(
            f"http://{REGISTRY}{self.path}",
            headers={"Accept": self.headers.get("Accept", "*/*")},
            timeout=10,
        )
        headers = {
            k: v
            for k, v in upstream.headers.items()
            if k in ("Content-Type", "Docker-Content-Digest")
        }
        self._send(upstream.status_code, upstream.content, headers)

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def token_front() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TokenFront)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_bearer_token_flow(token_front: str, test_base: str) -> None:
    _TokenFront.seen.clear()
    with RegistryClient() as client:
        direct = client.resolve(ImageReference.parse(test_base))
        via_front = client.resolve(
            ImageReference.parse(f"{token_front}/reprobuild-test/debian-python:bookworm")
        )
    assert via_front.digest == direct.digest
    assert via_front.config_digest == direct.config_digest
    # One token for the manifest, reused for the config blob.
    assert _TokenFront.seen == [
        "/token?service=front&scope=repository%3Areprobuild-test%2Fdebian-python%3Apull"
    ]
