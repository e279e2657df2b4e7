"""`reprobuild export slurm --runtime docker` on a real Slurm: the two-node loopback cluster of
scripts/infra runs what export writes with sbatch, in the real torch image pushed to the local
registry. The job is the example's own training (images/example/train.py, as fit.py), two ranks
data-parallel across the two nodes with gloo on the CPU (no GPU here), on a generated dataset.
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from random import Random

import pytest

from builder.build import buildrecord
from builder.engine.sdk import Engine
from tests.cli import reprobuild
from tests.infra import DEBIAN_MIRROR, REGISTRY
from tests.integration.conftest import Built

FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY")
NAME = "lab-torch-e2e"  # the job's name, from the image's


@dataclass(frozen=True)
class Cluster:
    env: dict[str, str]
    project: Path
    submit: Path  # where jobs are submitted from: their logs and outputs land here
    data: Path
    image: str  # the pushed reference, by digest


@pytest.fixture(scope="module")
def cluster(
    slurm_cluster: dict[str, str], torch_image: Built, tmp_path_factory: pytest.TempPathFactory
) -> Cluster:
    project = torch_image.project
    pushed = reprobuild(
        "-C", str(project), "build", "--plain", "--debian-mirror", DEBIAN_MIRROR,
        "--push", f"{REGISTRY}/reprobuild-test/slurm-e2e:1",
        timeout=900,
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    record = buildrecord.read(project)
    assert record.pushed is not None
    data = tmp_path_factory.mktemp("slurm-data")
    submit = tmp_path_factory.mktemp("slurm-submit")
    for folder in (data, submit):
        folder.chmod(0o755)  # the image's user reads the data; root submits
    rows = Random(7)
    values = [rows.uniform(-1, 1) for _ in range(200 * 64)]
    (data / "rows.f32").write_bytes(struct.pack(f"<{len(values)}f", *values))
    return Cluster(slurm_cluster, project, submit, data, record.pushed)


def export(cluster: Cluster, script: str, *options: str) -> Path:
    path = cluster.submit / script
    result = reprobuild(
        "-C", str(cluster.project), "export", "slurm", "--runtime", "docker",
        "--nodes", "2", "--gpus-per-node", "0", "--cpus-per-task", "2",
        "--data", f"train={cluster.data}", "-e", "TRAIN_EPOCHS=1", *options,
        "-o", str(path), "--", "fit.py",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return path


def submit(cluster: Cluster, script: Path) -> str:
    result = subprocess.run(
        ["sbatch", "--parsable", str(script)],
        cwd=cluster.submit, env=cluster.env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def state(cluster: Cluster, job: str) -> str:
    shown = subprocess.run(
        ["scontrol", "show", "job", "-o", job],
        env=cluster.env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    found = re.search(r"JobState=(\S+)", shown.stdout)
    assert found, shown.stdout
    return found.group(1)


def finished(cluster: Cluster, job: str, timeout_s: float = 300) -> str:
    deadline = time.monotonic() + timeout_s
    while (current := state(cluster, job)) not in FINAL:
        assert time.monotonic() < deadline, f"job {job} is still {current} after {timeout_s} s"
        time.sleep(0.5)
    return current


def log(cluster: Cluster, job: str) -> str:
    return (cluster.submit / f"{NAME}-{job}.out").read_text()


def record(cluster: Cluster, job: str) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((cluster.submit / "outputs" / f"{job}.json").read_text())
    return loaded


def digests(cluster: Cluster, job: str) -> dict[str, str]:
    lines = (cluster.submit / "outputs" / f"{job}.sha256").read_text().splitlines()
    return {line.split("  ", 1)[1]: line.split("  ", 1)[0] for line in lines}


def containers(engine: Engine, job: str) -> list[str]:
    listed = engine.client.containers.list(all=True, filters={"name": f"{NAME}-{job}-"})
    return [container.name for container in listed]


def processes(job: str) -> list[str]:
    """What still runs for the job: its step daemons and the docker clients they started."""
    found = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    return [
        line for line in found.stdout.splitlines() if f"[{job}." in line or f"{NAME}-{job}-" in line
    ]


def test_two_nodes_train_and_a_second_submission_gives_the_same_bits(
    cluster: Cluster, engine_client: Engine
) -> None:
    script = export(cluster, "ddp.sh")
    jobs = [submit(cluster, script)]
    assert finished(cluster, jobs[0]) == "COMPLETED", log(cluster, jobs[0])
    jobs.append(submit(cluster, script))
    assert finished(cluster, jobs[1]) == "COMPLETED", log(cluster, jobs[1])
    first, second = (record(cluster, job) for job in jobs)
    assert first["node_exits"] == [
        {"node": "n1", "node_rank": 0, "exit": 0},
        {"node": "n2", "node_rank": 1, "exit": 0},
    ]
    assert (first["nodes"], first["world_size"], first["state"], first["exit"]) == (
        2, 2, "completed", 0,
    )  # fmt: skip
    assert (first["image"], first["runtime"], first["command"]) == (
        cluster.image, "docker", ["fit.py"],
    )  # fmt: skip
    # Both ranks trained: 200 rows, 100 a rank, batches of 20: 5 steps each.
    text = log(cluster, jobs[0])
    for rank in (0, 1):
        assert f"{rank}: step 5 loss " in text, text
    assert set(digests(cluster, jobs[0])) == {"./model.pt", "./metrics.json"}
    assert digests(cluster, jobs[0]) == digests(cluster, jobs[1])
    assert second["node_exits"] == first["node_exits"]
    assert [containers(engine_client, job) for job in jobs] == [[], []]


def test_a_failing_rank_fails_the_job_with_its_error_in_the_log(
    cluster: Cluster, engine_client: Engine
) -> None:
    job = submit(cluster, export(cluster, "failing.sh", "-e", "FAIL_RANK=1"))
    assert finished(cluster, job) == "FAILED"
    text = log(cluster, job)
    assert "RuntimeError: rank 1 fails on purpose (FAIL_RANK=1)" in text, text
    written = record(cluster, job)
    assert (written["state"], written["exit"]) == ("failed", 1)
    exits = [node["exit"] for node in written["node_exits"]]  # type: ignore[attr-defined]
    assert 1 in exits and 0 not in exits, exits  # the other node was stopped, not finished
    assert containers(engine_client, job) == []


def test_scancel_leaves_no_container_or_process_behind(
    cluster: Cluster, engine_client: Engine
) -> None:
    job = submit(cluster, export(cluster, "long.sh", "-e", "TRAIN_EPOCHS=100000"))
    deadline = time.monotonic() + 120
    while len(containers(engine_client, job)) < 2:
        assert state(cluster, job) in ("PENDING", "RUNNING"), log(cluster, job)
        assert time.monotonic() < deadline, "the job's two containers never started"
        time.sleep(0.5)
    while "0: step 1 loss" not in log(cluster, job):  # training, not still starting
        assert time.monotonic() < deadline, log(cluster, job)
        time.sleep(0.5)
    subprocess.run(["scancel", job], env=cluster.env, check=True)
    assert finished(cluster, job, timeout_s=60) == "CANCELLED"
    deadline = time.monotonic() + 30
    while containers(engine_client, job) or processes(job):
        assert time.monotonic() < deadline, (containers(engine_client, job), processes(job))
        time.sleep(0.5)
    written = record(cluster, job)
    assert written["state"] == "cancelled"
