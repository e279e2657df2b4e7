"""The Docker Engine API spoken directly on the engine's socket, for `reprobuild run`.

A short `docker run` lives about 0.3 s, and importing the docker SDK (with requests) takes a
third of that, so `run` talks HTTP/1.1 to the engine itself with the standard library's socket
and json; every other stage uses the SDK (`engine.sdk`). One connection per call (a local
socket connects in microseconds), JSON in and out, and the attach stream's 8-byte frame headers.
What both clients share lives in `engine.common`.
"""

from __future__ import annotations

import json
import socket

from builder.engine import common
from builder.errors import ApiError, EngineError

TYPE_CHECKING = False  # typing's own flag, without importing typing on `run`'s way to the start
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import IO, Any

FRAME_HEADER = 8  # stream (1 stdout, 2 stderr), three zero bytes, big-endian payload length
STDERR, ENGINE_ERROR = 2, 3  # attach stream types besides stdout (1)
RAW_CHUNK = 65536


class Response:
    """An answer's status and headers, with its socket left open for the body."""

    def __init__(
        self, connection: socket.socket, reader: IO[bytes], status: int, headers: dict[str, str]
    ) -> None:
        self.connection = connection
        self.reader = reader
        self.status = status
        self.headers = headers

    def body(self) -> bytes:
        """The whole body; OSError when the connection ends before it does."""
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            return b"".join(self._chunks())
        if "content-length" in self.headers:
            return self._exactly(int(self.headers["content-length"]))
        return self.reader.read()

    def _chunks(self) -> Iterator[bytes]:
        while size := int(self._line().split(b";", 1)[0], 16):
            yield self._exactly(size)
            self._line()

    def _line(self) -> bytes:
        line = self.reader.readline()
        if not line.endswith(b"\n"):
            raise OSError("the connection ended inside an answer")
        return line

    def _exactly(self, size: int) -> bytes:
        data = self.reader.read(size)
        if len(data) < size:
            raise OSError("the connection ended inside an answer")
        return data

    def close(self) -> None:
        self.reader.close()
        self.connection.close()


def read_head(connection: socket.socket) -> Response:
    """Read an answer's status line and headers from the connection."""
    reader = connection.makefile("rb")
    try:
        status_line = reader.readline()
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise OSError(f"the engine answered {status_line[:80]!r}, not HTTP")
        headers: dict[str, str] = {}
        while (line := reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
    except BaseException:
        reader.close()
        raise
    return Response(connection, reader, int(parts[1]), headers)


class Wire:
    """The engine at a unix:// socket or tcp://HOST[:PORT] (plain HTTP, port 2375 by default).
    `reprobuild run` mounts this machine's folders by path, so the engine must see them."""

    def __init__(self, target: str | None = None, timeout_s: float = common.TIMEOUT_S) -> None:
        self.target = target or common.address()
        self.timeout_s = timeout_s
        scheme, _, rest = self.target.partition("://")
        rest = rest.rstrip("/")
        if scheme not in ("unix", "tcp", "http") or not rest:
            raise EngineError(UNSUPPORTED_ADDRESS.format(target=self.target))
        self._socket_path = rest if scheme == "unix" else None
        self._host, self._port = ("", 0) if scheme == "unix" else _host_and_port(rest)

    def call(self, method: str, path: str, body: Any = None, **query: str | int) -> Any:
        """One request; the decoded JSON answer (None for an empty one), ApiError on an error
        status, EngineError when the answer breaks off."""
        response = self.request(method, path, body, query=query)
        try:
            data = response.body()
            return json.loads(data) if data.strip() else None
        except (OSError, ValueError) as error:
            raise self.broken(method, path, error) from None
        finally:
            response.close()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        upgrade: bool = False,
        query: dict[str, str | int] | None = None,
    ) -> Response:
        """Send a request and read the answer's head; the caller reads and closes the rest."""
        data = b"" if body is None else json.dumps(body).encode()
        parameters = "&".join(f"{name}={value}" for name, value in (query or {}).items())
        target = f"/v{common.API_VERSION}{path}" + (f"?{parameters}" if parameters else "")
        head = [
            f"{method} {target} HTTP/1.1",
            "Host: docker",
            "Content-Type: application/json",
            f"Content-Length: {len(data)}",
            "Connection: Upgrade\r\nUpgrade: tcp" if upgrade else "Connection: close",
        ]
        connection = self._connect()
        response: Response | None = None
        try:
            connection.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + data)
            response = read_head(connection)
            if response.status >= 400:
                raise ApiError(response.status, _explanation(response))
        except BaseException as error:
            (response or connection).close()
            if isinstance(error, OSError | ValueError):
                raise self.broken(method, path, error) from None
            raise
        return response

    def broken(self, method: str, path: str, error: Exception) -> EngineError:
        return EngineError(
            f"the engine's answer to {method} {path} broke off ({error}): the "
            f"engine at {self.target} may have stopped or restarted. Its log (dockerd) says why; "
            "run the command again."
        )

    def _connect(self) -> socket.socket:
        try:
            if self._socket_path is None:
                return socket.create_connection((self._host, self._port), self.timeout_s)
            connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            connection.settimeout(self.timeout_s)
            try:
                connection.connect(self._socket_path)
            except OSError:
                connection.close()
                raise
            return connection
        except OSError as error:
            where = self._socket_path or f"{self._host}:{self._port}"
            reason = f"{where}: {error.strerror or error}"
            raise EngineError(common.missing_engine_message(self.target, reason)) from None

    def image_id(self, reference: str) -> str | None:
        """The ID of an image the engine has; None when it has none of that name."""
        found = self.image_labels(reference)
        return None if found is None else found[0]

    def image_labels(self, reference: str) -> tuple[str, dict[str, str]] | None:
        """The ID and the labels of an image the engine has; None when it has none of that
        name."""
        try:
            answer = self.call("GET", f"/images/{_path_safe(reference)}/json")
        except ApiError as error:
            if error.status == 404:
                return None
            raise common.lookup_failed(reference, error.message) from None
        labels = (answer.get("Config") or {}).get("Labels") or {}
        return str(answer["Id"]), {str(name): str(value) for name, value in labels.items()}

    def ensure_image(self, reference: str) -> str:
        """The ID of `reference`, pulled first (through the docker SDK, with its progress) if the
        engine lacks it."""
        found = self.image_id(reference)
        if found is None:
            from builder.engine.sdk import Engine

            with Engine.connect(self.target) as engine:
                return engine.ensure_image(reference)
        return found

    def create(self, image: str, spec: dict[str, Any]) -> Container:
        """Create a container from the create call's body `spec`; `image` names it in messages."""
        try:
            created = self.call("POST", "/containers/create", spec)
        except ApiError as error:
            raise common.create_failed(image, error.message) from None
        return Container(self, str(created["Id"]), image)

    def exit_code(self, removal: Response) -> int:
        """The exit code in the answer of `Container.removal`."""
        try:
            answer = json.loads(removal.body())
            code = int(answer["StatusCode"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise self.broken("POST", "/containers/ID/wait", error) from None
        finally:
            removal.close()
        reported = answer.get("Error")
        problem = reported.get("Message") if isinstance(reported, dict) else reported
        if problem:
            raise EngineError(
                f"the engine lost track of the run: {problem}. Its log (dockerd) says why."
            )
        return code

    def relay_frames(self, stream: Response, output: Callable[[bytes, bool], None]) -> None:
        """Pass each frame of an attach stream on (second argument True for stderr and for the
        engine's own errors) until it ends."""
        while frame := self._next_frame(stream.reader):
            kind, payload = frame
            if payload:
                output(payload, kind in (STDERR, ENGINE_ERROR))

    def relay_raw(self, stream: Response, output: Callable[[bytes, bool], None]) -> None:
        """Pass a terminal's output on as it comes (a container with a TTY has one stream,
        not frames) until it ends."""
        read = getattr(stream.reader, "read1", stream.reader.read)
        try:
            while data := read(RAW_CHUNK):
                output(data, False)
        except OSError as error:
            raise self.broken("POST", "/containers/ID/attach", error) from None

    def _next_frame(self, reader: IO[bytes]) -> tuple[int, bytes] | None:
        """The next frame's stream type and payload; None at the stream's end."""
        try:
            header = reader.read(FRAME_HEADER)
            if len(header) < FRAME_HEADER:
                return None
            return header[0], reader.read(int.from_bytes(header[4:], "big"))
        except OSError as error:  # the connection reset: the engine went away mid-run
            raise self.broken("POST", "/containers/ID/attach", error) from None


UNSUPPORTED_ADDRESS = (
    "DOCKER_HOST={target}: `reprobuild run` reaches the engine through a unix:// socket or "
    "tcp://HOST:PORT, and mounts this machine's folders by path, so it needs the engine on this "
    "machine. Unset DOCKER_HOST for unix:///var/run/docker.sock, or point it at this machine's "
    "engine."
)
DEFAULT_TCP_PORT = 2375


def _host_and_port(authority: str) -> tuple[str, int]:
    """tcp://HOST[:PORT], HOST a name, an IPv4 address or a bracketed IPv6 one."""
    host, port = authority, str(DEFAULT_TCP_PORT)
    if authority.startswith("["):
        host, _, after = authority[1:].partition("]")
        port = after.removeprefix(":") or port
    elif authority.count(":") == 1:
        host, port = authority.split(":")
    if not port.isascii() or not port.isdigit() or not host:
        raise EngineError(f"DOCKER_HOST=tcp://{authority} does not name a HOST:PORT.")
    return host, int(port)


def _explanation(response: Response) -> str:
    text = response.body().decode("utf-8", errors="replace")
    try:
        return str(json.loads(text)["message"])
    except (ValueError, KeyError, TypeError):
        return text.strip() or f"HTTP {response.status}"


def _path_safe(reference: str) -> str:
    """A reference as one path segment's worth of URL: references hold none of ?#% or spaces,
    so anything else is refused here rather than sent as a different request."""
    if not reference or any(character in reference for character in "?#% \t\r\n"):
        raise EngineError(
            f"{reference!r} is not an image reference: give name:tag, "
            "name@sha256:<64 hex digits> or an image ID."
        )
    return reference


class Mounts:
    """What a run mounts, as whom it runs, its /dev/shm size (None: the engine's) and whether
    it has a terminal."""

    def __init__(
        self,
        binds: list[tuple[str, str, str]],  # (host path, path inside, "ro" | "rw")
        environment: dict[str, str],
        user: str,
        working_dir: str,
        *,
        shm_size: int | None = None,
        tty: bool = False,
    ) -> None:
        self.binds = binds
        self.environment = environment
        self.user = user
        self.working_dir = working_dir
        self.shm_size = shm_size
        self.tty = tty


def container_spec(
    image: str, command: list[str], mounts: Mounts, gpus: str | None
) -> dict[str, Any]:
    """The create call's body: what `docker run --rm -v -e -u -w [--shm-size] [-t] [--gpus]`
    sends."""
    host: dict[str, Any] = {
        "Binds": [f"{host}:{inside}:{mode}" for host, inside, mode in mounts.binds],
        "AutoRemove": True,  # as `docker run --rm`: the engine removes it as it exits
    }
    if mounts.shm_size is not None:
        host["ShmSize"] = mounts.shm_size
    if gpus is not None:
        host["DeviceRequests"] = [{"Count": common.gpu_count(gpus), "Capabilities": [["gpu"]]}]
    return {
        "Image": image,
        "Cmd": command,
        "Env": [f"{name}={value}" for name, value in mounts.environment.items()],
        "User": mounts.user,
        "WorkingDir": mounts.working_dir,
        "AttachStdout": True,
        "AttachStderr": True,
        "Tty": mounts.tty,
        "HostConfig": host,
    }


class Container:
    """A created container (`image` names it in messages), removed by the engine when it exits
    (AutoRemove); `remove` deletes it before that, on an error."""

    def __init__(self, wire: Wire, container_id: str, image: str) -> None:
        self.wire = wire
        self.id = container_id
        self.image = image

    def attach(self) -> Response:
        """The output stream, opened before the start (as `docker run` does) so none is lost."""
        path = f"/containers/{self.id}/attach"
        query: dict[str, str | int] = {"stream": 1, "stdout": 1, "stderr": 1}
        stream = self._open(path, upgrade=True, query=query)
        stream.connection.settimeout(None)  # a run may print nothing for hours
        return stream

    def removal(self) -> Response:
        """The answer the engine sends once the container has exited and been removed, asked
        before the start (as `docker run --rm` does) so the exit cannot be missed."""
        path = f"/containers/{self.id}/wait"
        stream = self._open(path, upgrade=False, query={"condition": "removed"})
        stream.connection.settimeout(None)  # the answer comes when the run ends
        return stream

    def _open(self, path: str, *, upgrade: bool, query: dict[str, str | int]) -> Response:
        try:
            return self.wire.request("POST", path, upgrade=upgrade, query=query)
        except ApiError as error:
            raise EngineError(
                f"the engine refused {path.rsplit('/', 1)[-1]} on the container of {self.image}: "
                f"{error.message}. Check the engine's log (dockerd)."
            ) from None

    def start(self, command: list[str], gpus: str | None) -> None:
        try:
            self.wire.call("POST", f"/containers/{self.id}/start")
        except ApiError as error:
            raise common.start_failed(self.image, command, gpus, error.message) from None

    def kill(self, signum: int) -> bool:
        """Send a signal; False when the container does not run (yet, or any more)."""
        try:
            self.wire.call("POST", f"/containers/{self.id}/kill", signal=signum)
        except ApiError:
            return False
        return True

    def remove(self) -> None:
        """Stop and delete it now; one the engine already removes is left to it."""
        try:
            self.wire.call("DELETE", f"/containers/{self.id}", force=1, v=1)
        except ApiError as error:
            if error.status not in (404, 409):  # gone, or its removal already under way
                raise EngineError(
                    f"the engine could not remove container {self.id[:12]}: {error.message}. "
                    f"Remove it by hand: `docker rm -f {self.id[:12]}`."
                ) from None
