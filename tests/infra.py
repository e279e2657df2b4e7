"""Test infrastructure that lives in Python: the bootstrapped Debian base in the local registry.

`python -m tests.infra base` builds it with mmdebstrap when the registry lacks it, loads it into
the tests' engine and pushes it to the tests' registry. The engine and registry are started by
scripts/infra, beside any the machine already runs: their addresses are here, read from the same
variables as that script, and the tests never use another engine or registry.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from builder.build.base import build_base
from builder.engine.registry import RegistryClient
from builder.engine.sdk import Engine
from builder.errors import RegistryError
from builder.lock import bootstrap
from builder.reference import ImageReference

STATE = Path(os.environ.get("REPROBUILD_INFRA_DIR") or "/var/tmp/reprobuild-infra")
ENGINE = f"unix://{STATE}/engine.sock"
REGISTRY = os.environ.get("REPROBUILD_INFRA_REGISTRY") or "127.0.0.1:5055"
BASE = f"{REGISTRY}/reprobuild-test/debian-python:bookworm"
# No Python at all: locks must install the spec's Python from the distribution's archive.
MINBASE = f"{REGISTRY}/reprobuild-test/debian-minbase:bookworm"
IMAGES = {BASE: bootstrap.BOOTSTRAP_PACKAGES, MINBASE: ("ca-certificates",)}
BASE_SNAPSHOT = "2026-11-01T00:00:00Z"
DEBIAN_MIRROR = "http://deb.debian.org/debian"


def registry_has(reference: str) -> bool:
    with RegistryClient(attempts=1) as client:
        try:
            client.resolve(ImageReference.parse(reference))
        except RegistryError:
            return False
    return True


def build_image(workdir: Path, reference: str, packages: tuple[str, ...]) -> None:
    source = bootstrap.DebianSource("bookworm", DEBIAN_MIRROR)
    print(f"test base: bootstrapping {reference} from {DEBIAN_MIRROR}", flush=True)
    archive = build_base(source, packages, BASE_SNAPSHOT, reference, workdir)
    with Engine.connect(ENGINE) as engine:
        engine.load_archive(archive.path)
        digest = engine.push(reference)
    print(f"test base: {reference} image {archive.image_id}, pushed as {digest}")


def ensure_base() -> None:
    for reference, packages in IMAGES.items():
        if registry_has(reference):
            print(f"test base: {reference} is in the registry")
            continue
        with tempfile.TemporaryDirectory(prefix="reprobuild-base-") as folder:
            build_image(Path(folder), reference, packages)


if __name__ == "__main__":
    if sys.argv[1:] != ["base"]:
        sys.exit("usage: python -m tests.infra base")
    ensure_base()
