"""The engine client `reprobuild run` uses, on what a real engine cannot be made to do on cue:
answers that break off (an engine that dies mid-answer), and addresses. A unix socket served
by a thread in the test stands in for such an engine; the real engine is in
tests/integration/test_run.py."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from builder.engine.wire import Wire
from builder.errors import ApiError, EngineError

Serve = Callable[[bytes], Wire]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """serve(answer) -> a Wire to a socket that reads one request and writes `answer`."""
    servers: list[threading.Thread] = []

    def start(answer: bytes) -> Wire:
        path = tmp_path / f"engine-{len(servers)}.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        listener.listen(1)
        listener.settimeout(10)  # a test that fails before connecting does not leave it waiting

        def answer_once() -> None:
            with listener, listener.accept()[0] as connection:
                connection.recv(65536)
                connection.sendall(answer)

        server = threading.Thread(target=answer_once, daemon=True)
        server.start()
        servers.append(server)
        return Wire(f"unix://{path}", timeout_s=10)

    yield start
    for server in servers:
        server.join(timeout=10)


def test_a_chunked_answer_is_joined(serve: Serve) -> None:
    wire = serve(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'5\r\n{"Id"\r\n7\r\n: "abc"\r\n1\r\n}\r\n0\r\n\r\n'
    )
    assert wire.call("GET", "/images/a/json") == {"Id": "abc"}


def test_an_error_status_carries_the_engines_message(serve: Serve) -> None:
    wire = serve(
        b'HTTP/1.1 404 Not Found\r\nContent-Length: 28\r\n\r\n{"message": "no such image"}'
    )
    with pytest.raises(ApiError) as raised:
        wire.call("GET", "/images/a/json")
    assert (raised.value.status, raised.value.message) == (404, "no such image")


@pytest.mark.parametrize(
    "answer",
    [
        b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"Id',  # inside a chunk
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",  # before the first size
        b'HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n{"StatusCode": 0',  # short of its length
    ],
)
def test_an_answer_that_breaks_off_names_the_engine_and_the_fix(
    serve: Serve,
    answer: bytes,
) -> None:
    wire = serve(answer)
    with pytest.raises(EngineError) as raised:
        wire.call("POST", "/containers/x/wait")
    assert str(raised.value) == (
        "the engine's answer to POST /containers/x/wait broke off (the connection ended inside "
        f"an answer): the engine at {wire.target} may have stopped or restarted. Its log "
        "(dockerd) says why; run the command again."
    )


def test_something_that_is_not_http(serve: Serve) -> None:
    wire = serve(b"SSH-2.0-OpenSSH_9.2\r\n")
    with pytest.raises(EngineError, match=r"answered b'SSH-2.0-OpenSSH_9.2\\r\\n', not"):
        wire.call("GET", "/_ping")


@pytest.mark.parametrize(
    ("address", "where"),
    [
        ("tcp://127.0.0.1:2376", ("127.0.0.1", 2376)),
        ("tcp://localhost", ("localhost", 2375)),
        ("tcp://[::1]:2377", ("::1", 2377)),
        ("tcp://[::1]", ("::1", 2375)),
        ("http://127.0.0.1:2375/", ("127.0.0.1", 2375)),
    ],
)
def test_tcp_addresses(address: str, where: tuple[str, int]) -> None:
    wire = Wire(address)
    assert (wire._host, wire._port) == where


def test_a_tcp_address_without_a_host_or_with_a_bad_port() -> None:
    for address in ("tcp://:2375", "tcp://127.0.0.1:docker"):
        with pytest.raises(EngineError, match="does not name a HOST:PORT"):
            Wire(address)


def test_references_that_would_change_the_request_are_refused() -> None:
    wire = Wire("unix:///nonexistent.sock")
    with pytest.raises(EngineError, match="is not an image reference"):
        wire.image_id("lab/train:v1?all=1")
