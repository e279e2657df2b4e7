"""A real training job through `reprobuild run` against a plain `docker run` of the same command
and mounts. Target: <= 1.10x wall time on a job of 10 s or more.

The job is the example's training script (images/example/train.py: a DataLoader with two
workers moving 80 MB batches, SGD with momentum, a checkpoint and a metrics file) in the torch
2.5.1 / CUDA 12.4 image built from the tests' spec on the local Debian base, on the CPU. The
`reprobuild run` side mounts two data folders with --data (digested while the job runs), passes
a variable with --env, traces the parameters at the default interval, saves the logs, digests
the outputs and writes the record; the `docker run` side mounts the same folders, project and
outputs with the same /dev/shm, user and variables. The two take turns; medians are compared.

Needs scripts/infra up and PyPI (the wheels, once); the image is built first (minutes) and
removed at the end, with every image the run made.
    python benchmarks/run_job.py [--runs N] [--epochs E]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import struct
import subprocess
import tempfile
import time
from pathlib import Path

from timing import DEBIAN_MIRROR, reprobuild, timed

from builder.build import buildrecord
from builder.engine.sdk import Engine
from builder.run.args import default_shm
from builder.smoke.hook import DEFAULT_TRACE_INTERVAL
from tests.integration.conftest import SPEC as TORCH_SPEC

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "images" / "example" / "train.py"
TARGET = 1.10
# The tests' torch spec, under its own name (its images are this run's to remove).
SPEC = TORCH_SPEC.replace('name = "lab/torch-e2e"', 'name = "bench/run-job"')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each way (default 3)")
    parser.add_argument("--epochs", type=int, default=13, help="epochs of the job (default 13)")
    options = parser.parse_args()
    docker = shutil.which("docker")
    if docker is None:
        raise SystemExit("the docker CLI is needed for the comparison (scripts/infra up)")
    folder = Path(tempfile.mkdtemp(prefix="reprobuild-bench-run-"))
    engine = Engine.connect()
    held = {image["Id"] for image in engine.client.api.images(all=True)}
    try:
        project = make_project(folder / "project")
        image = buildrecord.read(project).image_id
        measure(docker, project, image, folder, options)
    finally:
        for image_id in {i["Id"] for i in engine.client.api.images(all=True)} - held:
            engine.remove_image(image_id)
        engine.close()
        shutil.rmtree(folder, ignore_errors=True)


def make_project(project: Path) -> Path:
    project.mkdir(parents=True)
    (project / "reprobuild.toml").write_text(SPEC)
    shutil.copy(SCRIPT, project / "train.py")
    seconds, _ = timed(
        reprobuild(project, "build", "--quiet", "--debian-mirror", DEBIAN_MIRROR), cwd=project
    )
    print(f"built the torch image in {seconds:.0f} s")
    return project


def make_data(folder: Path) -> tuple[Path, Path]:
    train, vocab = folder / "train", folder / "vocab"
    train.mkdir()
    vocab.mkdir()
    generator = random.Random(7)
    values = [generator.uniform(-1, 1) for _ in range(200 * 64)]
    (train / "rows.f32").write_bytes(struct.pack(f"<{len(values)}f", *values))
    for index in range(1000):  # a second input of many small files
        (vocab / f"{index:04d}.txt").write_text(f"token {index}\n" * 50)
    return train, vocab


def measure(
    docker: str, project: Path, image: str, folder: Path, options: argparse.Namespace
) -> None:
    train, vocab = make_data(folder)
    outputs = folder / "outputs"
    outputs.mkdir()
    uid = os.getuid() or 1000
    shutil.chown(outputs, uid, uid)
    variables = {"TRAIN_LR": "0.02", "TRAIN_EPOCHS": str(options.epochs)}
    env_flags = [flag for name, value in variables.items() for flag in ("-e", f"{name}={value}")]
    plain = [
        docker, "run", "--rm", f"--shm-size={default_shm()}", "-u", f"{uid}:{uid}",
        "-w", "/workspace", "-e", "HOME=/tmp", "-e", "PYTHONUNBUFFERED=1",
        "-e", "REPROBUILD_OUTPUTS=/outputs", *env_flags,
        "-v", f"{project}:/workspace:ro", "-v", f"{train}:/data/train:ro",
        "-v", f"{vocab}:/data/vocab:ro", "-v", f"{outputs}:/outputs",
        image, "python", "train.py",
    ]  # fmt: skip
    ours = reprobuild(
        project, "run", "--image", image, "--data", f"train={train}", "--data", f"vocab={vocab}",
        *env_flags, "--trace", "--", "python", "train.py",
    )  # fmt: skip
    times: dict[str, list[float]] = {"docker run": [], "reprobuild run": []}
    for _ in range(options.runs):
        for name, argv in (("docker run", plain), ("reprobuild run", ours)):
            start = time.perf_counter()
            subprocess.run(argv, check=True, capture_output=True)
            times[name].append(time.perf_counter() - start)
    plain_s = statistics.median(times["docker run"])
    ours_s = statistics.median(times["reprobuild run"])
    print(
        f"job: train.py, {options.epochs} epochs; two --data mounts (1 file, 1000 files), "
        f"--env, --trace (every {DEFAULT_TRACE_INTERVAL} steps); {options.runs} runs each, "
        "interleaved"
    )
    for name, median in (("docker run", plain_s), ("reprobuild run", ours_s)):
        each = ", ".join(f"{seconds:.2f}" for seconds in times[name])
        print(f"{name:<16} median {median:.2f} s  ({each})")
    ratio = ours_s / plain_s
    verdict = "met" if ratio <= TARGET and plain_s >= 10 else "NOT met"
    print(f"ratio {ratio:.3f} (target <= {TARGET} on a job of >= 10 s: {verdict})")


if __name__ == "__main__":
    main()
