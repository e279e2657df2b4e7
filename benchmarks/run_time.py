"""Start overhead of `reprobuild run` against a plain `docker run --rm` of the same image and
command (`true`), both through the same engine. Target: <= 1.10x wall time.

`reprobuild run` also resolves the image to its ID, reads git and the GPUs, mounts the project
and an outputs folder, and writes a run record; those are part of what is measured. Two ways
are timed: `--image REF` (the comparison the target is set on) and the project's last build
(read from reprobuild.build.json, here a record naming the same image).
    python benchmarks/run_time.py [--runs N] [--image REF]
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from timing import TEST_BASE, reprobuild, wall_ms

import builder
from builder.build import buildrecord
from builder.engine.common import API_VERSION
from builder.engine.sdk import Engine
from tests.records import make_record

TARGET = 1.10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=41)
    parser.add_argument("--image", default=TEST_BASE)
    options = parser.parse_args()
    docker = shutil.which("docker")
    if docker is None:
        raise SystemExit("the docker CLI is needed for the comparison (scripts/infra up)")
    os.environ.setdefault("DOCKER_API_VERSION", API_VERSION)
    subprocess.run([docker, "pull", "-q", options.image], check=True, stdout=subprocess.DEVNULL)
    # As an installed package is: compiled once (PYTHONDONTWRITEBYTECODE would otherwise make
    # every run compile the modules that changed since the last write).
    compileall.compile_dir(Path(builder.__file__).parent, quiet=1)
    with tempfile.TemporaryDirectory(prefix="reprobuild-run-") as folder:
        project = Path(folder)
        project.chmod(0o755)  # as root, the command runs as the image's user, who reads it
        write_record(project, options.image)
        plain = [docker, "run", "--rm", options.image, "true"]
        by_image = reprobuild(project, "run", "--image", options.image, "--", "true")
        ways = {
            "reprobuild run --image": by_image,
            "reprobuild run (last build)": reprobuild(project, "run", "--", "true"),
            "docker run --rm": plain,
        }
        medians = interleaved_medians(ways, options.runs)
    plain_ms = medians.pop("docker run --rm")
    print(f"docker run --rm median {plain_ms:.0f} ms ({options.runs} runs, interleaved)")
    for name, ms in medians.items():
        ratio = ms / plain_ms
        verdict = "met" if ratio <= TARGET else "MISSED"
        print(
            f"{name}: median {ms:.0f} ms, overhead {ms - plain_ms:.0f} ms, ratio {ratio:.2f} "
            f"(target <= {TARGET:.2f}: {verdict})"
        )


def write_record(project: Path, image: str) -> None:
    """A last build that is `image`, for `reprobuild run` without --image."""
    with Engine.connect() as engine:
        image_id = engine.image_id(image)
    assert image_id is not None
    lock = "sha256:" + "0" * 64
    buildrecord.write(project, make_record(lock, image_id=image_id, image=image))


def interleaved_medians(ways: dict[str, list[str]], runs: int) -> dict[str, float]:
    """Each way's median wall time; the ways take turns, so that a slow spell of the engine
    weighs on all alike. One warm-up run each first."""
    times: dict[str, list[float]] = {name: [] for name in ways}
    for argv in ways.values():
        wall_ms(argv, quiet=True)
    for _ in range(runs):
        for name, argv in ways.items():
            times[name].append(wall_ms(argv, quiet=True))
    return {name: statistics.median(values) for name, values in times.items()}


if __name__ == "__main__":
    main()
