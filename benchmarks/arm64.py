"""The example spec built for linux/amd64 and for linux/arm64 in one run, side by side: the arm64
image under qemu emulation on this x86_64 machine, and each image's size against what it must
hold, its base and its Python closure installed (target for arm64: <= 1.10).

The example (images/example) asks for torch 2.5, whose only aarch64 build on PyPI is CPU-only;
the first torch with a CUDA build for both platforms on PyPI is 2.11.0 (CUDA 13.0, an R580
driver). So the spec is the example's with torch = "2.11.0", target.driver = "580.65.06" and
platforms = ["linux/amd64", "linux/arm64"], its base the tests' Debian base as a multi-platform
tag (Docker Hub is unreachable here): one spec, one lock, an image per platform. Each image is
built with `build --platform P` on its own and timed; the closure is counted installed (the
uncompressed files of the locked wheels, from the wheel cache), as benchmarks/catalogue.py does.
The first run downloads both closures (about 6 GB); each image and its dependencies image is
removed by ID once measured.
    python benchmarks/arm64.py
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from catalogue import GB, IMAGES, installed_bytes
from timing import DEBIAN_MIRROR, reprobuild, timed

from builder.build import buildrecord
from builder.build.buildrecord import BuildRecord
from builder.engine.sdk import Engine
from builder.knowledge import AMD64, ARM64
from builder.lock import lockfile
from builder.lock.model import Lock
from tests.infra import MULTI_BASE

TARGET = 1.10


def example_for_both(folder: Path) -> Path:
    project = folder / "example"
    shutil.copytree(IMAGES / "example", project, ignore=shutil.ignore_patterns("reprobuild.lock"))
    spec = project / "reprobuild.toml"
    text = re.sub(r'(?m)^torch = ".*"$', 'torch = "2.11.0"', spec.read_text())
    text = re.sub(r'(?m)^driver = ".*"$', 'driver = "580.65.06"', text)
    text = text.replace(
        "\n[target]",
        f'base = "{MULTI_BASE}"\nplatforms = ["linux/amd64", "linux/arm64"]\n\n[target]',
    )
    spec.write_text(text)
    return project


def measure(engine: Engine, lock: Lock, record: BuildRecord, build_s: float) -> float:
    """Print one image's figures; its size / (base + closure)."""
    image_bytes = int(engine.inspect_image(record.image_id)["Size"])
    base_bytes = sum(layer.size for layer in record.layers[: record.base_layers])
    closure = installed_bytes(lock)
    wheels = sum(package.size or 0 for package in lock.python.packages)
    ratio = image_bytes / (base_bytes + closure)
    resolution = lock.resolution
    print(
        f"{record.platform}: {resolution['torch']['label']}, CUDA {resolution['cuda']}, cuDNN "
        f"{resolution['cudnn']}, {len(lock.python.packages)} wheels; build {build_s:.0f} s"
    )
    print(
        f"  image {image_bytes / GB:.2f} GB, base {base_bytes / GB:.2f} GB, closure "
        f"{closure / GB:.2f} GB installed ({wheels / GB:.2f} GB of wheels); "
        f"size / (base + closure) = {ratio:.3f}"
    )
    return ratio


def build_one(engine: Engine, project: Path, lock: Lock, platform: str) -> tuple[float, float]:
    """Build the platform's image, measure it, remove it; (seconds, ratio)."""
    argv = reprobuild(project, "build", "--quiet", "--platform", platform)
    build_s, _ = timed([*argv, "--debian-mirror", DEBIAN_MIRROR])
    record = buildrecord.read(project)
    try:
        ratio = measure(engine, lock.on(platform), record, build_s)
    finally:
        engine.remove_image(record.image_id)
        if record.dependencies:
            engine.remove_image(record.dependencies)
    return build_s, ratio


def main() -> None:
    with Engine.connect() as engine, tempfile.TemporaryDirectory(prefix="rb-arm64-") as tmp:
        project = example_for_both(Path(tmp))
        lock_s, _ = timed(reprobuild(project, "lock", "--debian-mirror", DEBIAN_MIRROR))
        lock = lockfile.read(project / lockfile.LOCK_FILE)
        print(f"lock of {', '.join(lock.platforms)}: {lock_s:.1f} s")
        amd64_s, _ = build_one(engine, project, lock, AMD64)
        arm64_s, ratio = build_one(engine, project, lock, ARM64)
        verdict = "ok" if ratio <= TARGET else "over"
        print(f"arm64 size / (base + closure) = {ratio:.3f} (target <= {TARGET:.2f}: {verdict})")
        times = f"{arm64_s:.0f} s / {amd64_s:.0f} s"
        print(f"arm64 build / amd64 build = {arm64_s / amd64_s:.2f} ({times})")


if __name__ == "__main__":
    main()
