"""`reprobuild build` figures for the torch 2.5.1 / CUDA 12.4 example spec, measured in one run.

1. Overhead: `reprobuild build --no-cache` against a plain classic `docker build --no-cache` of
   the same rendered context (target <= 1.10x): once as a rebuild (layers checked by an earlier
   build of the lock are known by diff ID; `--no-cache` installs and writes the Python layers
   again), once with that knowledge deleted (the first build of a lock on a machine: the parts
   the engine builds are exported and read).
2. Normalisation of the plain build: export, scan, and the Python layers (copied from its
   install stage) rewritten in the canonical form, which must give `reprobuild build`'s image
   ID; and a forced rewrite of its largest layer (target >= 150 MB/s of layer data).
3. Code-only change: a rebuild after editing the code (target <= 5 s, exactly one new layer).
4. Size: the image against base + the installed size of the Python closure (target <= 1.10).

Needs scripts/infra up (engine, registry, the bootstrapped Debian base) and PyPI; the example's
own base is on Docker Hub, so the spec is built on the local Debian base.
    python benchmarks/build_time.py [--project DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from timing import DEBIAN_MIRROR, TEST_BASE, reprobuild, timed

from builder import files, tarstream
from builder.build import buildrecord, normalise
from builder.build.image import normalise_image
from builder.engine.common import API_VERSION
from builder.engine.sdk import Engine
from builder.lock import lockfile
from builder.reference import ImageReference
from builder.render import plan, wheelhouse

ROOT = Path(__file__).parents[1]
TARGETS = {"overhead": 1.10, "throughput_mb_s": 150.0, "code_change_s": 5.0, "size": 1.10}


def make_project(folder: Path) -> Path:
    spec = (ROOT / "images" / "example" / "reprobuild.toml").read_text()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "reprobuild.toml").write_text(
        spec.replace("[target]", f'base = "{TEST_BASE}"\n\n[target]')
    )
    (folder / "train.py").write_text("print('training')\n")
    return folder


def build_seconds(project: Path, *args: str) -> float:
    mirror = ["--debian-mirror", DEBIAN_MIRROR]
    return timed(reprobuild(project, "build", "--quiet", *args, *mirror))[0]


def plain_build(context_dir: Path) -> tuple[float, str]:
    environment = {**os.environ, "DOCKER_BUILDKIT": "0", "DOCKER_API_VERSION": API_VERSION}
    seconds, output = timed(
        ["docker", "build", "--no-cache", "-q", str(context_dir)], env=environment
    )
    return seconds, output.strip()


def settle(engine: Engine, held: set[str]) -> None:
    """Drop the untagged images this run's builds left (the plain build's stages: gigabytes each
    time), never one the engine held before the run."""
    for _ in range(5):  # a step image goes once the images built on it have gone
        for image_id in engine.client.api.images(filters={"dangling": True}, quiet=True):
            if image_id not in held:
                engine.remove_image(image_id)


def installed_size(lock: Any) -> int:
    """Bytes the closure occupies once unpacked: every wheel member but bytecode."""
    cache = wheelhouse.default_cache()
    total = 0
    for package in lock.python.packages:
        with zipfile.ZipFile(cache / package.filename) as wheel:
            total += sum(i.file_size for i in wheel.infolist() if not i.filename.endswith(".pyc"))
    return total


def rewrite_throughput(engine: Engine, image: str, epoch: int) -> float:
    """MB/s of a forced rewrite of the image's largest layer, read from the engine's export."""
    best = 0.0
    with engine.saved_members(image) as archive, tempfile.TemporaryFile() as target:
        for member in archive:
            if member.isreg() and member.name.endswith("layer.tar") and member.size > 10**9:
                start = time.perf_counter()
                result = normalise.rewrite(tarstream.data(archive, member), target, epoch)
                best = max(best, result.size / 1e6 / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--project", type=Path, help="keep the project here (default: a temp dir)")
    options = parser.parse_args()
    folder = options.project or Path(tempfile.mkdtemp(prefix="reprobuild-bench-"))
    project = make_project(folder)
    engine = Engine.connect()
    held = {image["Id"] for image in engine.client.api.images(all=True)}

    build_seconds(project)  # lock, fetch the wheels and pull the base outside the timed runs
    ours = build_seconds(project, "--no-cache")
    record = buildrecord.read(project)
    settle(engine, held)
    shutil.rmtree(files.cache_root() / "images", ignore_errors=True)
    shutil.rmtree(files.cache_root() / "layers", ignore_errors=True)
    first = build_seconds(project, "--no-cache")
    settle(engine, held)
    plain, plain_id = plain_build(project / ".reprobuild" / "context")
    print(
        f"overhead: reprobuild build {ours:.1f} s, docker build {plain:.1f} s, "
        f"ratio {ours / plain:.2f} (target <= {TARGETS['overhead']}); the first build of the "
        f"lock on this machine {first:.1f} s, ratio {first / plain:.2f}"
    )

    current = lockfile.read_current(project)
    epoch = plan.plan(current.lock, current.digest).epoch
    start = time.perf_counter()
    normalised = normalise_image(
        engine,
        plain_id,
        parent=record.base,
        epoch=epoch,
        reference="bench/plain:normalised",
        note=lambda _: None,
        rescan=True,
    )
    seconds = time.perf_counter() - start
    scanned = normalised.scanned_bytes / 1e6
    rewrite = rewrite_throughput(engine, plain_id, epoch)
    print(
        f"normalisation: {scanned:.0f} MB in {seconds:.1f} s = {scanned / seconds:.0f} MB/s "
        f"(export, scan, and the Python layers rewritten in the canonical form), forced rewrite "
        f"{rewrite:.0f} MB/s "
        f"(target >= {TARGETS['throughput_mb_s']:.0f}); same image ID as reprobuild build: "
        f"{normalised.image_id == record.image_id}"
    )

    settle(engine, held)
    unchanged = build_seconds(project)  # leaves the final stage's steps in the engine's cache
    (project / "train.py").write_text("print('training, changed')\n")
    code_change = build_seconds(project)
    changed = buildrecord.read(project)
    new_layers = sum(a != b for a, b in zip(record.layers, changed.layers, strict=True))
    print(
        f"rebuild, nothing changed: {unchanged:.1f} s; "
        f"code-only change: {code_change:.1f} s, {new_layers} new layer(s) "
        f"(target <= {TARGETS['code_change_s']} s, exactly 1)"
    )

    image = sum(layer.size for layer in record.layers)
    base = sum(layer.size for layer in record.layers[: record.base_layers])
    closure = installed_size(current.lock)
    print(
        f"size: image {image / 1e9:.2f} GB, base {base / 1e9:.2f} GB + installed closure "
        f"{closure / 1e9:.2f} GB, ratio {image / (base + closure):.3f} "
        f"(target <= {TARGETS['size']})"
    )
    repository = ImageReference.parse(record.image).written_name
    dependencies = [
        tag
        for image in engine.client.api.images(name=repository)
        for tag in image["RepoTags"] or []
        if tag.startswith(f"{repository}:{plan.DEPS_STAGE}-")
    ]
    for name in (record.image, changed.image, "bench/plain:normalised", plain_id, *dependencies):
        engine.remove_image(name)
    engine.close()


if __name__ == "__main__":
    main()
