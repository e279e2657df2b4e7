"""The Docker engine edge, through the docker SDK: one `Engine` that connects, builds, saves,
loads, pulls, pushes and runs.

Every engine failure becomes an `EngineError` whose message names the engine address and the
fix. Containers started here are always removed, also on errors and Ctrl-C. The docker SDK's
private calls (streamed build and save responses that must be closable) live only in this class.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
import socket
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Concatenate, ParamSpec, TypeVar

from builder.engine.common import (
    API_VERSION,
    TIMEOUT_S,
    address,
    create_failed,
    gpu_count,
    lookup_failed,
    missing_engine_message,
    start_failed,
)
from builder.engine.images import EngineImage
from builder.errors import BuildFailed, EngineError, RegistryError
from builder.reference import ImageReference
from builder.tarstream import BLOCK, blocks

PUSH_FIX = (
    "Check that the registry answers, that the engine may push there (`docker login`), and "
    "that the reference names a repository, e.g. registry.example.org/lab/train:v1."
)
LOAD_FIX = "Free disk space under the engine's data root and run `reprobuild build` again."
DAMAGED = (
    "The engine's image store may be damaged: run the command again; if it fails the same way, "
    "restart dockerd and rebuild with `reprobuild build --no-cache`."
)
TAIL_LINES = 15
_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
# How the engine words a registry it cannot reach (Go's net and net/http errors).
_UNREACHABLE = (
    "connection refused",
    "connection reset",
    ": EOF",
    "broken pipe",
    "i/o timeout",
    "no such host",
    "no route to host",
    "network is unreachable",
    "handshake timeout",
)
_P = ParamSpec("_P")
_R = TypeVar("_R")


@dataclass(frozen=True)
class ScriptResult:
    exit_code: int
    output: str


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class BuildEvent:
    """One line of the engine's build log, with the step it belongs to."""

    step: int  # 1-based; 0 before the first step
    steps: int
    instruction: str  # the step's Dockerfile instruction, as the engine echoes it
    line: str  # "" for the step's own header line
    cached: bool = False


def unreachable_reason(target: str) -> str | None:
    """Why a unix-socket engine cannot be reached, checked with a socket we close ourselves."""
    if not target.startswith("unix://"):
        return None
    path = target.removeprefix("unix://")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(5)
        try:
            probe.connect(path)
        except OSError as error:
            return f"{path}: {error.strerror or error}"
    return None


def first_line(error: Exception) -> str:
    text = str(error).split("\n", 1)[0]
    return text if len(text) <= 200 else text[:197] + "..."


def _name_and_tag(reference: str) -> tuple[str, str]:
    """name:tag as written (a registry's port is not a tag), "latest" when it names none. A
    name is tagged and pushed by tag: a digest is the registry's answer, never the question."""
    try:
        parsed = ImageReference.parse(reference)
    except RegistryError:
        parsed = None
    if parsed is None or parsed.digest is not None:
        raise EngineError(
            f"{reference} names an image by digest: tag and push it by name:tag, e.g. "
            "registry.example.org/lab/train:v1 (the push reports the digest)."
        )
    return parsed.written_name, parsed.tag or "latest"


def _why(error: Exception) -> str:
    """An APIError's reason: the engine's explanation, else the error itself (never "None")."""
    return str(getattr(error, "explanation", None) or error)


def _lost_errors() -> tuple[type[BaseException], ...]:
    """What the HTTP client raises when the engine's connection goes: refused, reset, an answer
    cut off (the engine stopped or restarted)."""
    import requests
    import urllib3

    return (
        requests.exceptions.ConnectionError,
        requests.exceptions.ChunkedEncodingError,
        urllib3.exceptions.ProtocolError,
        ConnectionError,
    )


def lost_engine_message(target: str, doing: str, reason: str) -> str:
    return (
        f"the Docker engine at {target} stopped answering while {doing} ({reason}): it stopped "
        "or restarted. Check that it runs (`docker info`; its log: `journalctl -u docker`, or "
        "the output of dockerd), then run the command again."
    )


def _lost_reason(error: BaseException) -> str:
    """The system's word for a lost connection (connection refused, ...), from the errors the
    HTTP client wrapped it in."""
    pending, seen = [error], set()
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        pending += [item for item in current.args if isinstance(item, BaseException)]
        pending += [item for item in (current.__cause__, current.__context__) if item is not None]
    return "the connection broke off"


def push_failed(reference: str, registry: str, error: str) -> str:
    if any(words in error for words in _UNREACHABLE):
        return (
            f"the registry {registry} did not answer while the engine pushed {reference} "
            f"({error}). Check that it runs and that this host reaches it, then push again "
            f"(`reprobuild build --push {reference}`): the image is built, and the layers the "
            "registry already holds are not sent again."
        )
    return f"pushing {reference} to {registry} failed: {error}. {PUSH_FIX}"


class _Sent:
    """A request body made while it is sent. The HTTP client reports a failure to make it (a
    full disk, a file that cannot be read) as a lost connection; it is kept here, to be raised
    as itself."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.failure: BaseException | None = None

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self.chunks
        except Exception as error:  # not GeneratorExit: the client closing the body is no failure
            self.failure = error
            raise


def _answering(
    doing: str,
) -> Callable[[Callable[Concatenate[Engine, _P], _R]], Callable[Concatenate[Engine, _P], _R]]:
    """A method that speaks to the engine: a lost connection is an EngineError naming the
    engine and what it was doing (`doing`, formatted with the method's arguments)."""

    def decorate(
        method: Callable[Concatenate[Engine, _P], _R],
    ) -> Callable[Concatenate[Engine, _P], _R]:
        @functools.wraps(method)
        def speak(engine: Engine, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
            with engine.answering(doing.format(*args)):
                return method(engine, *args, **kwargs)

        return speak

    return decorate


class Engine:
    """A Docker engine that answered a ping, spoken to through the docker SDK. Close it (or use
    it as a context manager) to release its connection pool."""

    def __init__(self, client: Any, target: str) -> None:
        self.client = client  # a docker.DockerClient
        self.target = target

    @classmethod
    def connect(cls, target: str | None = None, timeout_s: int = TIMEOUT_S) -> Engine:
        """The engine at `target` (default: $DOCKER_HOST, else the local socket); EngineError
        naming the fix when none answers."""
        import docker
        from docker.errors import DockerException

        chosen = target or address()
        reason = unreachable_reason(chosen)
        if reason is not None:
            raise EngineError(missing_engine_message(chosen, reason))
        try:
            client = docker.DockerClient(base_url=chosen, version=API_VERSION, timeout=timeout_s)
            client.ping()
        except (DockerException, OSError) as error:
            raise EngineError(missing_engine_message(chosen, first_line(error))) from None
        return cls(client, chosen)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *_exception: object) -> None:
        self.close()

    @contextmanager
    def answering(self, doing: str, sent: _Sent | None = None) -> Iterator[None]:
        """Calls to the engine inside: a lost connection is an EngineError naming the engine and
        what it was `doing`, unless the body being `sent` failed (that failure is raised)."""
        try:
            yield
        except _lost_errors() as error:
            if sent is not None and sent.failure is not None:
                raise sent.failure from None
            raise EngineError(
                lost_engine_message(self.target, doing, _lost_reason(error))
            ) from None

    # Facts.

    @_answering("reading its version")
    def version(self) -> str:
        return str(self.client.version().get("Version", "unknown"))

    @_answering("reading its platform")
    def platform(self) -> str:
        """The platform whose images the engine runs natively: linux/amd64, linux/arm64."""
        found = self.client.version()
        return f"{found.get('Os') or 'linux'}/{found.get('Arch') or 'amd64'}"

    @_answering("describing itself")
    def describe(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The engine's version document and its system info (runtimes among them)."""
        return dict(self.client.version()), dict(self.client.info())

    # Images.

    @_answering("looking up {0}")
    def image_id(self, reference: str) -> str | None:
        """The ID of an image the engine has; None when it has none of that name."""
        from docker.errors import APIError, ImageNotFound

        try:
            return str(self.client.images.get(reference).id)
        except ImageNotFound:
            return None
        except APIError as error:
            raise lookup_failed(reference, _why(error)) from None

    def has_image(self, reference: str) -> bool:
        return self.image_id(reference) is not None

    def ensure_image(self, reference: str) -> str:
        """The ID of `reference`, pulled first (by digest where it has one) if the engine lacks
        it."""
        found = self.image_id(reference)
        if found is None:
            self.pull(reference)
            found = self.image_id(reference)
        if found is None:
            raise EngineError(f"the engine pulled {reference} but does not list it. {DAMAGED}")
        return found

    @_answering("inspecting {0}")
    def inspect_image(self, reference: str) -> dict[str, Any]:
        from docker.errors import APIError, ImageNotFound

        try:
            return dict(self.client.api.inspect_image(reference))
        except ImageNotFound:
            raise EngineError(
                f"the engine has no image {reference}. Build it with `reprobuild build`, or fetch "
                f"it with `docker pull {reference}`; `docker images` lists the images the engine "
                "has."
            ) from None
        except APIError as error:
            raise EngineError(
                f"the engine could not inspect {reference}: {_why(error)}. Check the reference "
                "(name:tag, name@sha256:... or an image ID) and that the engine answers."
            ) from None

    @_answering("reading the history of {0}")
    def history(self, reference: str) -> list[dict[str, Any]]:
        """An image's history, oldest step first: per step the image it made (where the engine
        still holds it, else "<missing>"), the command, the comment and the size of the layer it
        added."""
        from docker.errors import APIError

        try:
            steps: list[dict[str, Any]] = self.client.api.history(reference)
        except APIError as error:
            raise EngineError(
                f"the engine could not read the history of {reference}: {_why(error)}."
            ) from None
        return steps[::-1]

    @_answering("naming {0} {1}")
    def tag(self, image_id: str, reference: str) -> str:
        """Name an image; return the name with its tag made explicit."""
        name, label = _name_and_tag(reference)
        self.client.api.tag(image_id, name, label)
        return f"{name}:{label}"

    def remove_image(self, reference: str) -> None:
        """Remove an image, if the engine can: a clean-up that never hides why a command
        failed."""
        from docker.errors import APIError, ImageNotFound

        with contextlib.suppress(ImageNotFound, APIError, *_lost_errors()):
            self.client.api.remove_image(reference, force=True, noprune=False)

    @_answering("listing its images")
    def images(self, label: str | None = None) -> list[EngineImage]:
        """Every image the engine holds (with `label`: those that carry it), the intermediate
        images of its builds too, each as its inspect describes it (one that goes between the
        listing and its inspect is left out)."""
        from docker.errors import APIError, ImageNotFound

        filters = {"label": label} if label else None
        try:
            listed = self.client.api.images(all=True, quiet=True, filters=filters)
        except APIError as error:
            raise EngineError(
                f"the engine could not list its images: {_why(error)}. Check that it answers "
                "(`docker info`), then run the command again."
            ) from None
        found = []
        for image_id in dict.fromkeys(listed):
            try:
                found.append(EngineImage.from_inspect(self.client.api.inspect_image(image_id)))
            except ImageNotFound:
                continue
            except APIError as error:
                raise EngineError(
                    f"the engine could not inspect image {image_id[:19]}, which it listed: "
                    f"{_why(error)}. Check that it answers (`docker info`), then run the command "
                    "again."
                ) from None
        return found

    @_answering("listing its containers")
    def containers_by_image(self) -> dict[str, tuple[str, ...]]:
        """The containers made from each image, running or stopped, as `name (state)`, by image
        ID."""
        from docker.errors import APIError

        try:
            listed = self.client.api.containers(all=True)
        except APIError as error:
            raise EngineError(
                f"the engine could not list its containers: {_why(error)}. Check that it answers "
                "(`docker info`), then run the command again."
            ) from None
        found: dict[str, list[str]] = {}
        for container in listed:
            name = str((container.get("Names") or [container["Id"][:12]])[0]).lstrip("/")
            state = container.get("State") or "unknown"
            found.setdefault(str(container.get("ImageID", "")), []).append(f"{name} ({state})")
        return {image_id: tuple(sorted(names)) for image_id, names in found.items()}

    def untag(self, reference: str) -> None:
        """Remove one name, without force: the engine removes the image with its last name, and
        refuses (EngineError with its reason) while a container uses it. A name already gone is
        no error."""
        self._remove_unforced(reference)

    def delete_image(self, image_id: str) -> bool:
        """Remove an image by ID, without force and without its untagged parents: the engine
        refuses (EngineError with its reason) while it has a name in several repositories, a
        container or a child image. False when the engine no longer had it."""
        return self._remove_unforced(image_id)

    @_answering("removing {0}")
    def _remove_unforced(self, reference: str) -> bool:
        from docker.errors import APIError, ImageNotFound

        try:
            self.client.api.remove_image(reference, force=False, noprune=True)
        except ImageNotFound:
            return False
        except APIError as error:
            raise EngineError(f"the engine kept {reference}: {_why(error)}.") from None
        return True

    # Registries.

    @_answering("pulling {0}")
    def pull(self, reference: str) -> None:
        """Pull an image (by digest where given); EngineError naming the reference otherwise."""
        from docker.errors import APIError

        try:
            parsed = ImageReference.parse(reference)
            self.client.api.pull(parsed.written_name, tag=parsed.digest or parsed.tag)
        except (APIError, RegistryError) as error:
            raise EngineError(
                f"the engine could not pull {reference}: {_why(error)}. Check that the "
                "registry answers and the reference exists."
            ) from None

    def push(self, reference: str) -> str:
        """Push a local tag; return the manifest digest the registry reported."""
        name, tag = _name_and_tag(reference)
        registry = ImageReference.parse(reference).registry
        digest = ""
        with self.answering(f"pushing {reference}"):
            for event in self.client.api.push(name, tag=tag, stream=True, decode=True):
                if "error" in event:
                    raise EngineError(push_failed(reference, registry, str(event["error"])))
                digest = event.get("aux", {}).get("Digest", digest)
        if not digest:
            raise EngineError(
                f"pushing {reference} to {registry} reported no manifest digest. {PUSH_FIX}"
            )
        return str(digest)

    # Archives: `docker save` and `docker load`, streamed.

    @_answering("exporting {0}")
    def save_stream(self, image: str) -> IO[bytes]:
        """`docker save` of one image as a readable stream (never written to disk here)."""
        from docker.errors import APIError

        # docker-py's get_image hides the response, and a reader that stops at the end of the
        # tar (before the stream's last bytes) must still close the connection.
        api = self.client.api
        try:
            response = api._get(api._url("/images/{0}/get", image), stream=True)
            api._raise_for_status(response)
        except APIError as error:
            raise EngineError(
                f"the engine could not export {image}: {_why(error)}. Check that the image "
                "exists (`docker images`) and that the engine has disk space for the export."
            ) from None
        chunks = response.iter_content(chunk_size=BLOCK, decode_unicode=False)
        return io.BufferedReader(_ChunkReader(chunks, response), BLOCK)

    @contextmanager
    def saved_members(self, image: str) -> Iterator[tarfile.TarFile]:
        """The members of `docker save`, streamed; the connection is closed however reading
        ends."""
        with (
            self.answering(f"exporting {image}"),
            self.save_stream(image) as stream,
            tarfile.open(fileobj=stream, mode="r|", bufsize=BLOCK) as archive,
        ):
            yield archive

    def load_stream(self, archive: Iterator[bytes], what: str = "the normalised image") -> None:
        """`docker load` of an archive produced while it is sent; returns once the engine has
        it."""
        from docker.errors import APIError

        sent = _Sent(archive)
        try:
            with self.answering(f"loading {what}", sent):
                for event in self.client.api.load_image(iter(sent)):
                    if "error" in event:
                        raise EngineError(
                            f"the engine refused {what}: {event['error']}. {LOAD_FIX}"
                        )
        except APIError as error:
            raise EngineError(f"the engine refused {what}: {_why(error)}. {LOAD_FIX}") from None

    def load_archive(self, archive: Path) -> None:
        """`docker load` an image archive from disk, waiting for the engine's verdict."""
        with archive.open("rb") as handle:
            self.load_stream(blocks(handle), what=archive.name)

    # Builds.

    def build(
        self,
        context: Iterator[bytes],
        on_event: Callable[[BuildEvent], None],
        no_cache: bool,
        target: str | None = None,
    ) -> str:
        """Build a streamed context with the classic builder (up to the stage `target`, when one
        is named); return the image ID, untagged.

        Nothing is tagged here: a failed or interrupted build leaves no name pointing at a
        half-built image. Closing the stream (Ctrl-C) makes the engine cancel the build.
        """
        from docker.errors import APIError

        params: dict[str, bool | str] = {
            "rm": True,
            "forcerm": True,
            "nocache": no_cache,
            "pull": False,
            "q": False,
        }
        if target is not None:
            params["target"] = target
        # The request is made here rather than through docker-py's build() so that the streamed
        # response can be closed: on a failed step, and on Ctrl-C, where closing the connection
        # makes the engine cancel the build.
        api = self.client.api
        response = None
        sent = _Sent(context)
        try:
            with self.answering("building", sent):
                response = api._post(
                    api._url("/build"),
                    data=iter(sent),
                    params=params,
                    headers={"Content-Type": "application/tar"},
                    stream=True,
                    timeout=None,
                )
                api._raise_for_status(response)
                return _follow(api._stream_helper(response, decode=True), on_event)
        except APIError as error:
            raise EngineError(
                f"the engine refused the build: {_why(error)}. Its own log says why "
                "(`journalctl -u docker`, or the output of `dockerd`)."
            ) from None
        finally:
            if response is not None:
                response.close()

    # Containers.

    @_answering("running a container of {0}")
    def run(
        self,
        image: str,
        command: list[str],
        *,
        user: str | None = None,
        gpus: str | None = None,
        network: bool = True,
        timeout_s: int = TIMEOUT_S,
        shm_size: int | None = None,
        environment: dict[str, str] | None = None,
    ) -> RunResult:
        """Run a command in a throwaway container (removed afterwards, also on errors and
        Ctrl-C); shm_size in bytes sizes its /dev/shm (None: the engine's 64 MB)."""
        from requests.exceptions import ConnectionError as LostConnection
        from requests.exceptions import ReadTimeout

        options: dict[str, Any] = {"network_disabled": not network}
        if shm_size is not None:
            options["shm_size"] = shm_size
        if environment:
            options["environment"] = environment
        container = self._create(image, command, options, user=user, gpus=gpus)
        try:
            self._start(container, image, command, gpus)
            try:
                status = container.wait(timeout=timeout_s)
            except (ReadTimeout, LostConnection):
                raise EngineError(
                    f"{' '.join(command)} in {image} did not finish within {timeout_s} s; it was "
                    "stopped and removed. Run it by hand (`docker run --rm IMAGE ...`) to see "
                    "where it hangs."
                ) from None
            return RunResult(
                int(status.get("StatusCode", 1)),
                container.logs(stdout=True, stderr=False).decode("utf-8", errors="replace"),
                container.logs(stdout=False, stderr=True).decode("utf-8", errors="replace"),
            )
        finally:
            container.remove(force=True)

    def run_script(self, image: str, script: str, timeout_s: int = TIMEOUT_S) -> ScriptResult:
        """Run `sh -c script` as root in a throwaway container; return exit code and output."""
        result = self.run(image, ["sh", "-c", script], user="0:0", timeout_s=timeout_s)
        return ScriptResult(result.exit_code, result.stdout + result.stderr)

    def _create(
        self,
        image: str,
        command: list[str],
        options: dict[str, Any],
        *,
        user: str | None,
        gpus: str | None,
    ) -> Any:
        from docker.errors import APIError
        from docker.types import DeviceRequest

        if user is not None:
            options["user"] = user
        if gpus is not None:  # `--gpus all|N`: the engine's device request (its NVIDIA runtime)
            options["device_requests"] = [
                DeviceRequest(count=gpu_count(gpus), capabilities=[["gpu"]])
            ]
        try:
            return self.client.containers.create(image, command, **options)
        except APIError as error:
            raise create_failed(image, _why(error)) from None

    @staticmethod
    def _start(container: Any, image: str, command: list[str], gpus: str | None) -> None:
        from docker.errors import APIError

        try:
            container.start()
        except APIError as error:
            raise start_failed(image, command, gpus, _why(error)) from None


def _follow(events: Iterator[dict[str, Any]], on_event: Callable[[BuildEvent], None]) -> str:
    step, steps, instruction, image_id = 0, 0, "", ""
    tail: list[str] = []
    for event in events:
        if "error" in event:
            raise BuildFailed(_failure(step, steps, instruction, tail, str(event["error"])))
        image_id = event.get("aux", {}).get("ID", image_id)
        for line in str(event.get("stream", "")).splitlines():
            header = _STEP.match(line)
            if header:
                step, steps, instruction = int(header[1]), int(header[2]), header[3]
                tail = []
                on_event(BuildEvent(step, steps, instruction, ""))
            elif line.strip():
                tail = [*tail[-(TAIL_LINES - 1) :], line]
                cached = line.strip() == "---> Using cache"
                on_event(BuildEvent(step, steps, instruction, line, cached))
    if not image_id:
        raise EngineError(
            "the engine ended the build without reporting an image ID. Run `reprobuild build "
            "--no-cache`, and check the engine's log if it happens again."
        )
    return str(image_id)


def _failure(step: int, steps: int, instruction: str, tail: list[str], error: str) -> str:
    shown = "\n".join(f"    {line}" for line in tail if not line.strip().startswith("--->"))
    where = f"step {step}/{steps} failed: {instruction}" if step else "the build failed"
    return f"{where}\n  {error.strip()}\n  last output:\n{shown or '    (none)'}"


class _ChunkReader(io.RawIOBase):
    """A file-like view of the engine's chunked response, for tarfile's stream mode."""

    def __init__(self, chunks: Iterator[bytes], response: Any) -> None:
        self.chunks = chunks
        self.pending = b""
        self.response = response

    def close(self) -> None:
        if self.response is not None:
            self.response.close()
            self.response = None
        super().close()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.pending:
            self.pending = next(self.chunks, b"")
            if not self.pending:
                return 0
        size = min(len(buffer), len(self.pending))
        buffer[:size] = self.pending[:size]
        self.pending = self.pending[size:]
        return size
