"""The test Slurm's start and stop, and a two-node job's wall time against the same training by
`reprobuild run` on one node.

    python benchmarks/slurm_job.py PROJECT

PROJECT holds a pushed build with torch (`reprobuild build --push REF`) and the example's
training, images/example/train.py, as fit.py. The job is `reprobuild export slurm --runtime
docker --nodes 2 --gpus-per-node 0` of fit.py (two ranks, gloo on the CPU, one epoch), submitted
to the loopback cluster of `scripts/infra slurm`; the baseline is `reprobuild run` of the same
script and data in the same image, one process. On one 2-core host both "nodes" share the cores,
so the ratio shows what the Slurm and container plumbing costs, not a speed-up. Targets: start
and stop <= 2 s each.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from random import Random

from timing import reprobuild

from tests.infra import STATE

ROOT = Path(__file__).parents[1]
INFRA = ROOT / "scripts" / "infra"
SLURM_CONF = STATE / "slurm" / "slurm.conf"  # where scripts/infra writes it
ROUNDS = 3
JOB_TIMEOUT_S = 600  # a job that never leaves PENDING ends the benchmark, not hangs it


def seconds(argv: list[str | Path]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def cluster_times() -> tuple[list[float], list[float]]:
    ups, downs = [], []
    for _ in range(ROUNDS):
        ups.append(seconds([INFRA, "slurm", "up"]))
        downs.append(seconds([INFRA, "slurm", "down"]))
    return ups, downs


def dataset(folder: Path) -> Path:
    folder.mkdir()
    rows = Random(7)
    values = [rows.uniform(-1, 1) for _ in range(200 * 64)]
    (folder / "rows.f32").write_bytes(struct.pack(f"<{len(values)}f", *values))
    folder.chmod(0o755)
    return folder


def slurm_job(project: Path, data: Path, submit: Path) -> tuple[float, dict[str, object]]:
    script = submit / "job.sh"
    exported = [
        "export", "slurm", "--runtime", "docker", "--nodes", "2", "--gpus-per-node", "0",
        "--cpus-per-task", "2", "--data", f"train={data}", "-e", "TRAIN_EPOCHS=1",
        "-o", str(script), "--", "fit.py",
    ]  # fmt: skip
    subprocess.run(reprobuild(project, *exported), check=True, capture_output=True)
    env = {**os.environ, "SLURM_CONF": str(SLURM_CONF)}
    start = time.perf_counter()
    submitted = subprocess.run(
        ["sbatch", "--parsable", str(script)],
        cwd=submit, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    job = submitted.stdout.strip()
    deadline = start + JOB_TIMEOUT_S
    while True:
        if time.perf_counter() > deadline:
            subprocess.run(["scancel", job], env=env, check=False)
            sys.exit(f"job {job} did not end within {JOB_TIMEOUT_S} s; cancelled. See {submit}")
        shown = subprocess.run(
            ["scontrol", "show", "job", "-o", job],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        found = re.search(r"JobState=(\S+)", shown.stdout)
        if found and found.group(1) not in ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING"):
            break
        time.sleep(0.2)
    wall = time.perf_counter() - start
    if found.group(1) != "COMPLETED":
        sys.exit(f"job {job} ended {found.group(1)}; see {submit}")
    record: dict[str, object] = json.loads((submit / "outputs" / f"{job}.json").read_text())
    return wall, record


def one_node_run(project: Path, data: Path) -> float:
    argv = reprobuild(
        project, "run", "--data", f"train={data}", "-e", "TRAIN_EPOCHS=1", "--", "python",
        "fit.py",
    )  # fmt: skip
    return seconds(list(argv))


def main(project: Path) -> None:
    ups, downs = cluster_times()
    print(f"test Slurm start: median {statistics.median(ups):.2f} s, max {max(ups):.2f} s "
          f"({ROUNDS} rounds; target <= 2 s)")  # fmt: skip
    print(f"test Slurm stop:  median {statistics.median(downs):.2f} s, max {max(downs):.2f} s "
          f"({ROUNDS} rounds; target <= 2 s)")  # fmt: skip
    folder = Path(tempfile.mkdtemp(prefix="rb-slurm-bench-", dir="/var/tmp"))
    folder.chmod(0o755)
    subprocess.run([INFRA, "slurm", "up"], check=True, stdout=subprocess.DEVNULL)
    try:
        data = dataset(folder / "data")
        (folder / "submit").mkdir(mode=0o755)
        one_node_run(project, data)  # the image and the page cache warm for both
        run_s = one_node_run(project, data)
        job_s, record = slurm_job(project, data, folder / "submit")
        print(f"two-node job (sbatch to COMPLETED, world size {record['world_size']}): "
              f"{job_s:.1f} s")  # fmt: skip
        print(f"reprobuild run, one node, one process:                {run_s:.1f} s")
        print(f"ratio two-node job / one-node run: {job_s / run_s:.2f}")
    finally:
        subprocess.run([INFRA, "slurm", "down"], check=True, stdout=subprocess.DEVNULL)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]).resolve())
