"""The catalogue's images (images/*/), each locked and built on the local Debian base, and its
size against what it must hold: its base and the Python closure installed.

For each image: the resolved build (torch label, CUDA, cuDNN), the image size, the base size,
the closure size, and size / (base + closure) (target: <= 1.05, nothing stored twice). The
closure is counted installed, as the sum of the uncompressed sizes of the files in the locked
wheels (read from the wheel cache the build filled): the image holds the wheels unpacked, so
their download size (also printed) would make the ratio measure zip's compression instead.

Needs scripts/infra up (engine, registry, the bootstrapped Debian base) and PyPI. The
catalogue's base is on Docker Hub, so each spec is copied with `base` set to the local Debian
base (the same Python closure; only the base differs). Each image (and its dependencies image)
is removed by ID after it is measured, before the next is built: a torch image is 5 to 8 GB.
    python benchmarks/catalogue.py [NAME...]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import zipfile
from pathlib import Path

from timing import DEBIAN_MIRROR, TEST_BASE, reprobuild, timed

from builder.build import buildrecord
from builder.engine.sdk import Engine
from builder.lock import lockfile
from builder.lock.model import Lock
from builder.render.wheelhouse import default_cache

IMAGES = Path(__file__).parents[1] / "images"
TARGET = 1.05
GB = 1e9


def on_local_base(name: str, folder: Path) -> Path:
    """A copy of images/NAME whose spec names the local Debian base (Docker Hub unreachable)."""
    project = folder / name
    shutil.copytree(IMAGES / name, project, ignore=shutil.ignore_patterns("reprobuild.lock"))
    spec = project / "reprobuild.toml"
    spec.write_text(spec.read_text().replace("\n[target]", f'base = "{TEST_BASE}"\n\n[target]'))
    return project


def installed_bytes(lock: Lock) -> int:
    """The uncompressed size of the files in the locked wheels (in the cache once built)."""
    cache = default_cache()
    total = 0
    for package in lock.python.packages:
        with zipfile.ZipFile(cache / package.filename) as wheel:
            total += sum(member.file_size for member in wheel.infolist())
    return total


def measure(engine: Engine, name: str, folder: Path) -> None:
    project = on_local_base(name, folder)
    lock_s, _ = timed(reprobuild(project, "lock", "--debian-mirror", DEBIAN_MIRROR))
    build_s, _ = timed(reprobuild(project, "build", "--quiet", "--debian-mirror", DEBIAN_MIRROR))
    record = buildrecord.read(project)
    try:
        lock = lockfile.read(project / "reprobuild.lock")
        image_bytes = int(engine.inspect_image(record.image_id)["Size"])
        base_bytes = sum(layer.size for layer in record.layers[: record.base_layers])
        wheels = sum(package.size or 0 for package in lock.python.packages)
        closure = installed_bytes(lock)
        resolution = lock.resolution
        print(
            f"{name}: {resolution['torch']['label']}, CUDA {resolution['cuda']}, "
            f"cuDNN {resolution['cudnn']}, {len(lock.python.packages)} wheels "
            f"(lock {lock_s:.0f} s, build {build_s:.0f} s)"
        )
        print(
            f"  image {image_bytes / GB:.2f} GB, base {base_bytes / GB:.2f} GB, closure "
            f"{closure / GB:.2f} GB installed ({wheels / GB:.2f} GB of wheels)"
        )
        ratio = image_bytes / (base_bytes + closure)
        verdict = "ok" if ratio <= TARGET else "over"
        print(f"  size / (base + closure) = {ratio:.3f} (target <= {TARGET}: {verdict})")
    finally:
        engine.remove_image(record.image_id)
        if record.dependencies:
            engine.remove_image(record.dependencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    folders = sorted(spec.parent.name for spec in IMAGES.glob("*/reprobuild.toml"))
    parser.add_argument("names", nargs="*", default=folders, help="catalogue folders to measure")
    options = parser.parse_args()
    with Engine.connect() as engine, tempfile.TemporaryDirectory(prefix="rb-catalogue-") as tmp:
        for name in options.names:
            measure(engine, name, Path(tmp))


if __name__ == "__main__":
    main()
