"""Start overhead of `reprobuild run` against a plain `docker run --rm` of the same image and
command (`true`), both through the same engine. Target: <= 1.10x wall time.

`reprobuild run` also resolves the image to its ID, reads git and the GPUs, mounts the project
and an outputs folder, and writes a run record; those are part of what is measured.
    python benchmarks/run_time.py [--runs N] [--image REF]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from timing import TEST_BASE, reprobuild, wall_ms

from builder import engine

TARGET = 1.10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--image", default=TEST_BASE)
    options = parser.parse_args()
    docker = shutil.which("docker")
    if docker is None:
        raise SystemExit("the docker CLI is needed for the comparison (scripts/infra up)")
    os.environ.setdefault("DOCKER_API_VERSION", engine.API_VERSION)
    subprocess.run([docker, "pull", "-q", options.image], check=True, stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory(prefix="reprobuild-run-") as folder:
        project = Path(folder)
        ours = reprobuild(project, "run", "--image", options.image, "--", "true")
        plain = [docker, "run", "--rm", options.image, "true"]
        wall_ms(ours, quiet=True), wall_ms(plain)
        ours_ms = statistics.median(wall_ms(ours, quiet=True) for _ in range(options.runs))
        plain_ms = statistics.median(wall_ms(plain) for _ in range(options.runs))
    ratio = ours_ms / plain_ms
    verdict = "met" if ratio <= TARGET else "MISSED"
    print(f"reprobuild run median {ours_ms:.0f} ms, docker run --rm median {plain_ms:.0f} ms")
    print(f"overhead {ours_ms - plain_ms:.0f} ms per run")
    print(f"ratio {ratio:.2f} (target <= {TARGET:.2f}: {verdict})")


if __name__ == "__main__":
    main()
