"""Layer reuse figures for the torch 2.5.1 / CUDA 12.4 example spec, measured in one run.

1. First build of a lock: wall time, and the engine's disk growth (`docker system df`'s image
   bytes, before and after) against the bytes of the layers the image adds to its base
   (target <= 1.05x).
2. Re-lock after adding one small pure-Python package: which layers are new (target: only the
   closure layer and those above it), the build's wall time (target <= 30 s), and the bytes a
   push of the new image uploads to the local registry after the first image was pushed, against
   the image's bytes (target <= 5%).
3. A second project with the same torch build, Python and base but other packages: whether its
   CUDA and torch layers have the first project's diff IDs (target: equal), and its first build's
   wall time with the first project's layers in the engine (target <= 60 s).

Needs scripts/infra up (engine, registry, the bootstrapped Debian base) and PyPI; the example's
own base is on Docker Hub, so the specs are built on the local Debian base. Every image the run
makes is removed at the end (found as the images the engine did not hold before); what it pushed
stays in the local test registry under bench/layers.
    python benchmarks/layer_reuse.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from timing import DEBIAN_MIRROR, REGISTRY, TEST_BASE, reprobuild, timed

from builder.build import buildrecord
from builder.engine.sdk import Engine

ROOT = Path(__file__).parents[1]
REGISTRY_STORAGE = Path("/var/tmp/reprobuild-infra/registry")  # scripts/infra's registry root
TARGETS = {"disk": 1.05, "relock_s": 30.0, "push_share": 0.05, "second_s": 60.0}
SMALL_PACKAGE = "attrs==24.2.0"  # pure Python, 63 KB


def make_project(folder: Path, packages: list[str]) -> Path:
    spec = (ROOT / "images" / "example" / "reprobuild.toml").read_text()
    spec = spec.replace('packages = ["numpy==2.1.3", "tqdm==4.67.1"]', f"packages = {packages!r}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "reprobuild.toml").write_text(
        spec.replace("[target]", f'base = "{TEST_BASE}"\n\n[target]').replace("'", '"')
    )
    (folder / "train.py").write_text("print('training')\n")
    return folder


def lock(project: Path) -> None:
    timed(reprobuild(project, "lock", "--debian-mirror", DEBIAN_MIRROR))


def build(project: Path, *args: str) -> tuple[float, buildrecord.BuildRecord]:
    seconds, _ = timed(reprobuild(project, "build", "--quiet", *args))
    return seconds, buildrecord.read(project)


def image_bytes(engine: Engine) -> int:
    return int(engine.client.df()["LayersSize"])


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def own_layers(record: buildrecord.BuildRecord) -> list[str]:
    return [layer.diff_id for layer in record.layers[record.base_layers :]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", type=Path, help="keep the projects here (default: a temp dir)")
    options = parser.parse_args()
    folder = options.keep or Path(tempfile.mkdtemp(prefix="reprobuild-bench-"))
    engine = Engine.connect()
    held = {image["Id"] for image in engine.client.api.images(all=True)}
    try:
        measure(engine, folder)
    finally:
        remove_new_images(engine, held)
        engine.close()
        if options.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


def measure(engine: Engine, folder: Path) -> None:
    first = make_project(folder / "first", ["numpy==2.1.3", "tqdm==4.67.1"])
    lock(first)
    timed(reprobuild(first, "fetch"))  # the wheels, outside the timed build
    before = image_bytes(engine)
    seconds, record = build(first)
    growth = image_bytes(engine) - before
    added = sum(layer.size for layer in record.layers[record.base_layers :])
    print(
        f"first build: {seconds:.1f} s; engine disk +{growth / 1e9:.2f} GB for "
        f"{added / 1e9:.2f} GB of new layers, ratio {growth / added:.3f} "
        f"(target <= {TARGETS['disk']})"
    )

    pushed = f"{REGISTRY}/bench/layers:first-{os.getpid()}"
    timed(reprobuild(first, "build", "--quiet", "--push", pushed))  # built: only the push
    spec = first / "reprobuild.toml"
    spec.write_text(
        spec.read_text().replace('"tqdm==4.67.1"]', f'"tqdm==4.67.1", "{SMALL_PACKAGE}"]')
    )
    lock(first)
    timed(reprobuild(first, "fetch"))
    seconds, relocked = build(first)
    new = [
        index
        for index, (a, b) in enumerate(zip(own_layers(record), own_layers(relocked), strict=True))
        if a != b
    ]
    stored = folder_bytes(REGISTRY_STORAGE)
    relocked_ref = f"{REGISTRY}/bench/layers:relocked-{os.getpid()}"
    timed(reprobuild(first, "build", "--quiet", "--push", relocked_ref))
    uploaded = folder_bytes(REGISTRY_STORAGE) - stored
    size = sum(layer.size for layer in relocked.layers)
    print(
        f"re-lock (+{SMALL_PACKAGE}): build {seconds:.1f} s "
        f"(target <= {TARGETS['relock_s']:.0f} s);"
        f" new layers above the base: {new} of {len(own_layers(relocked))} "
        f"(the closure is layer {closure_index(relocked)}); push uploaded "
        f"{uploaded / 1e6:.1f} MB of {size / 1e9:.2f} GB = {uploaded / size:.2%} "
        f"(target <= {TARGETS['push_share']:.0%})"
    )

    second = make_project(folder / "second", ["tqdm==4.67.1"])
    lock(second)
    timed(reprobuild(second, "fetch"))
    seconds, other = build(second)
    shared = [d for d in own_layers(other) if d in own_layers(record)]
    print(
        f"second project: first build {seconds:.1f} s (target <= {TARGETS['second_s']:.0f} s); "
        f"{len(shared)} of its {len(own_layers(other))} layers above the base have the first "
        f"project's diff IDs: {', '.join(d[7:19] for d in shared)} (target: the venv, CUDA and "
        "torch layers)"
    )


def closure_index(record: buildrecord.BuildRecord) -> int:
    """The index (above the base) of the layer the closure's wheels went into: after the venv,
    the CUDA and the torch layers."""
    return 3 if len(record.layers) - record.base_layers > 3 else -1


def remove_new_images(engine: Engine, held: set[str]) -> None:
    """Remove the images this run made (children before parents), by ID."""
    for _ in range(20):
        made = [image for image in engine.client.api.images(all=True) if image["Id"] not in held]
        if not made:
            return
        for image in made:
            try:
                engine.client.api.remove_image(image["Id"], force=True, noprune=False)
            except Exception:  # a parent of one still to remove: the next round takes it
                continue


if __name__ == "__main__":
    main()
