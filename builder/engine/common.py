"""What both engine clients share: the engine's address, the API version, and the messages of a
container that cannot be created or started. Standard library only (the socket client is on
`reprobuild run`'s way to the container's start).
"""

from __future__ import annotations

import os

from builder.errors import CommandNotFound, EngineError

TIMEOUT_S = 600
# A fixed API version: with "auto" docker-py queries the engine inside the client constructor and
# leaks the socket when that fails. 1.41 is spoken by Debian's docker.io (20.10) and newer engines.
API_VERSION = "1.41"
DEFAULT_ADDRESS = "unix:///var/run/docker.sock"

NO_GPU_RUNTIME = (
    "the Docker engine at {address} cannot give a container a GPU ({reason}): it has no NVIDIA "
    "container runtime. Install the NVIDIA Container Toolkit (`nvidia-container-toolkit`), run "
    "`nvidia-ctk runtime configure --runtime=docker` and restart dockerd; or use --cpu for the "
    "CPU mode."
)


def address() -> str:
    return os.environ.get("DOCKER_HOST", DEFAULT_ADDRESS)


def missing_engine_message(target: str, reason: str) -> str:
    return (
        f"no Docker engine answers at {target} ({reason}). Start one: on Debian "
        "`apt-get install docker.io` then `dockerd &` (or `systemctl start docker`); or set "
        "DOCKER_HOST to a running engine."
    )


def create_failed(image: str, reason: str) -> EngineError:
    return EngineError(
        f"the engine could not create a container of {image}: {reason}. Check the image and "
        "the engine's log (dockerd)."
    )


def start_failed(image: str, command: list[str], gpus: str | None, reason: str) -> EngineError:
    if gpus is not None and "device driver" in reason:
        return EngineError(NO_GPU_RUNTIME.format(address=address(), reason=reason))
    if "executable file not found" in reason:
        return CommandNotFound(
            f"{image} has no {command[0]} on its PATH: check the command's spelling, or give "
            f"its full path inside the image (`docker run --rm {image} which {command[0]}`)."
        )
    return EngineError(
        f"the engine could not start {image}: {reason}. Check the command and the engine's "
        "log (dockerd)."
    )


def lookup_failed(reference: str, reason: str) -> EngineError:
    return EngineError(
        f"{reference!r} is not an image the engine can look up ({reason}): give name:tag, "
        "name@sha256:<64 hex digits> or an image ID."
    )


def gpu_count(gpus: str) -> int:
    """`--gpus all` is every GPU (-1 to the engine), `--gpus N` the first N."""
    return -1 if gpus == "all" else int(gpus)
