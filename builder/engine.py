"""The Docker engine edge, through the docker SDK: connect, load, pull, push, run a script.

Every engine failure becomes an `EngineError` whose message names the engine address and the
fix. Containers started here are always removed, also on errors and Ctrl-C.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.errors import ReprobuildError

TIMEOUT_S = 600
# A fixed API version: with "auto" docker-py queries the engine inside the client constructor and
# leaks the socket when that fails. 1.41 is spoken by Debian's docker.io (20.10) and newer engines.
API_VERSION = "1.41"
DEFAULT_ADDRESS = "unix:///var/run/docker.sock"


class EngineError(ReprobuildError):
    """The Docker engine is missing or refused an operation."""


def address() -> str:
    return os.environ.get("DOCKER_HOST", DEFAULT_ADDRESS)


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


def missing_engine_message(target: str, reason: str) -> str:
    return (
        f"no Docker engine answers at {target} ({reason}). Start one: on Debian "
        "`apt-get install docker.io` then `dockerd &` (or `systemctl start docker`); or set "
        "DOCKER_HOST to a running engine."
    )


def connect(target: str | None = None, timeout_s: int = TIMEOUT_S) -> Any:
    """A docker.DockerClient that has answered a ping; EngineError otherwise."""
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
    return client


def first_line(error: Exception) -> str:
    text = str(error).split("\n", 1)[0]
    return text if len(text) <= 200 else text[:197] + "..."


def load_archive(client: Any, archive: Path) -> None:
    """`docker load` an image archive (streamed from disk)."""
    with archive.open("rb") as handle:
        client.api.load_image(handle)


def has_image(client: Any, reference: str) -> bool:
    from docker.errors import ImageNotFound

    try:
        client.images.get(reference)
    except ImageNotFound:
        return False
    return True


def pull(client: Any, reference: str) -> None:
    """Pull an image (by digest where given); EngineError naming the reference otherwise."""
    from docker.errors import APIError

    repository, _, digest = reference.partition("@")
    try:
        if digest:
            client.api.pull(repository, tag=digest)
        else:
            name, tag = _split_tag(repository)
            client.api.pull(name, tag=tag)
    except APIError as error:
        raise EngineError(
            f"the engine could not pull {reference}: {error.explanation or error}. Check that the "
            "registry answers and the reference exists."
        ) from None


def push(client: Any, reference: str) -> str:
    """Push a local tag; return the manifest digest the registry reported."""
    name, tag = _split_tag(reference)
    digest = ""
    for event in client.api.push(name, tag=tag, stream=True, decode=True):
        if "error" in event:
            raise EngineError(f"pushing {reference} failed: {event['error']}")
        digest = event.get("aux", {}).get("Digest", digest)
    if not digest:
        raise EngineError(f"pushing {reference} reported no manifest digest.")
    return str(digest)


def _split_tag(reference: str) -> tuple[str, str]:
    slash = reference.rfind("/")
    colon = reference.rfind(":")
    if colon > slash:
        return reference[:colon], reference[colon + 1 :]
    return reference, "latest"


@dataclass(frozen=True)
class ScriptResult:
    exit_code: int
    output: str


def run_script(client: Any, image: str, script: str, timeout_s: int = TIMEOUT_S) -> ScriptResult:
    """Run `sh -c script` as root in a throwaway container; return exit code and output."""
    from docker.errors import APIError

    try:
        container = client.containers.create(image, ["sh", "-c", script], user="0:0")
    except APIError as error:
        reason = error.explanation or error
        raise EngineError(f"the engine could not start {image}: {reason}") from None
    try:
        container.start()
        status = container.wait(timeout=timeout_s)
        output = container.logs(stdout=True, stderr=True).decode("utf-8", errors="replace")
        return ScriptResult(int(status.get("StatusCode", 1)), output)
    finally:
        container.remove(force=True)
