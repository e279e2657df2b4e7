"""Test infrastructure that lives in Python: the bootstrapped Debian bases in the local registry.

`python -m tests.infra base` builds each with mmdebstrap when the registry lacks it, loads it into
the tests' engine and pushes it to the tests' registry; the arm64 one runs under the qemu-user
emulation that scripts/infra registers with binfmt_misc. The engine and registry are started by
scripts/infra, beside any the machine already runs: their addresses are here, read from the same
variables as that script, and the tests never use another engine or registry.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

from builder.build.base import build_base
from builder.build.pushindex import Pushed, push_index
from builder.engine.registry import RegistryClient
from builder.engine.sdk import Engine
from builder.errors import RegistryError
from builder.knowledge import AMD64, ARM64
from builder.lock import bootstrap
from builder.reference import ImageReference

STATE = Path(os.environ.get("REPROBUILD_INFRA_DIR") or "/var/tmp/reprobuild-infra")
ENGINE = f"unix://{STATE}/engine.sock"
REGISTRY = os.environ.get("REPROBUILD_INFRA_REGISTRY") or "127.0.0.1:5055"
BASE = f"{REGISTRY}/reprobuild-test/debian-python:bookworm"
# No Python at all: locks must install the spec's Python from the distribution's archive.
MINBASE = f"{REGISTRY}/reprobuild-test/debian-minbase:bookworm"
ARM64_BASE = f"{REGISTRY}/reprobuild-test/debian-python:bookworm-arm64"
# Both, as a multi-platform tag (an OCI image index), like python:3.11-slim-bookworm on Docker Hub:
# the base a spec of two platforms names, pinned per platform by its lock.
MULTI_BASE = f"{REGISTRY}/reprobuild-test/debian-python:bookworm-multi"


class BaseImage(NamedTuple):
    packages: tuple[str, ...]
    architecture: str  # Debian's name: amd64, arm64


IMAGES = {
    BASE: BaseImage(bootstrap.BOOTSTRAP_PACKAGES, "amd64"),
    MINBASE: BaseImage(("ca-certificates",), "amd64"),
    ARM64_BASE: BaseImage(bootstrap.BOOTSTRAP_PACKAGES, "arm64"),
}
BASE_SNAPSHOT = "2026-11-01T00:00:00Z"
DEBIAN_MIRROR = "http://deb.debian.org/debian"


def registry_has(reference: str) -> bool:
    with RegistryClient(attempts=1) as client:
        try:
            client.resolve(ImageReference.parse(reference))
        except RegistryError:
            return False
    return True


def build_image(workdir: Path, reference: str, image: BaseImage) -> None:
    source = bootstrap.DebianSource("bookworm", DEBIAN_MIRROR)
    print(
        f"test base: bootstrapping {reference} ({image.architecture}) from {DEBIAN_MIRROR}",
        flush=True,
    )
    archive = build_base(
        source, image.packages, BASE_SNAPSHOT, reference, workdir, architecture=image.architecture
    )
    with Engine.connect(ENGINE) as engine:
        engine.load_archive(archive.path)
        digest = engine.push(reference)
    print(f"test base: {reference} image {archive.image_id}, pushed as {digest}")


def ensure_base() -> None:
    for reference, image in IMAGES.items():
        if registry_has(reference):
            print(f"test base: {reference} is in the registry")
            continue
        with tempfile.TemporaryDirectory(prefix="reprobuild-base-") as folder:
            build_image(Path(folder), reference, image)
    ensure_multi_base()


def _digest(client: RegistryClient, reference: str) -> str:
    return client.resolve(ImageReference.parse(reference)).digest


def ensure_multi_base() -> None:
    """The index of BASE (linux/amd64) and ARM64_BASE (linux/arm64) at MULTI_BASE."""
    with RegistryClient() as client:
        pushed = [
            Pushed(platform, ImageReference.parse(reference).pinned(_digest(client, reference)))
            for platform, reference in ((AMD64, BASE), (ARM64, ARM64_BASE))
        ]
    index = push_index(MULTI_BASE, pushed)
    print(f"test base: {MULTI_BASE} is the index {index.split('@')[1]} of both platforms")


if __name__ == "__main__":
    if sys.argv[1:] != ["base"]:
        sys.exit("usage: python -m tests.infra base")
    ensure_base()
