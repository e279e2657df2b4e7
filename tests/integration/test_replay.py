"""A real training job in the real torch image (CPU mode: CI has no GPU), recorded, replayed,
published and replayed again from the manifest by a reader whose engine lacks the image.

The job (the example's images/example/train.py, as fit.py) reads a generated dataset mounted
with --data, feeds 80 MB batches through a DataLoader with two workers (more than the engine's
64 MB /dev/shm), reads a variable, and writes a checkpoint and a metrics file; the hook traces
it every 5 steps.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from builder import layout
from builder.run import datadigest
from builder.run.args import default_shm
from tests import cli
from tests.infra import REGISTRY

PAPER = f"{REGISTRY}/reprobuild-test/torch-e2e:replay"
SECRET = "sk-test-7f3a9c0e51d2"  # a tracker key: passed to the job, written nowhere
ROWS, FEATURES = 200, 64
COMMAND = ["python", "fit.py"]


def reprobuild(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return cli.reprobuild(*args, env=env, timeout=1200)  # a pull of the torch image: minutes


def environment(**extra: str) -> dict[str, str]:
    return {**os.environ, "WANDB_API_KEY": SECRET, **extra}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dataset")
    folder.chmod(0o755)  # the job's user reads it (pytest makes its folders for root alone)
    generator = random.Random(7)
    values = [generator.uniform(-1, 1) for _ in range(ROWS * FEATURES)]
    (folder / "rows.f32").write_bytes(struct.pack(f"<{len(values)}f", *values))
    return folder


def run_training(project: Path, dataset: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return reprobuild(
        "-C", str(project), "run",
        "--data", f"train={dataset}",
        "-e", "TRAIN_LR=0.02", "-e", "WANDB_API_KEY",
        "--trace", "5",
        *extra,
        "--", *COMMAND,
        env=environment(),
    )  # fmt: skip


def run_folder(result: subprocess.CompletedProcess[str]) -> Path:
    match = re.search(r"record\s+(\S+)/run\.json", result.stderr)
    assert match, result.stderr
    return Path(match[1])


@pytest.fixture(scope="module")
def first_run(torch_image: Any, dataset: Path) -> Path:
    result = run_training(torch_image.project, dataset)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "step 20 loss" in result.stdout
    return run_folder(result)


def record_of(folder: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((folder / "run.json").read_text())
    return loaded


def test_the_record_holds_inputs_settings_and_outputs(
    first_run: Path, dataset: Path, torch_image: Any
) -> None:
    record = record_of(first_run)
    data = datadigest.digest_data("train", dataset, cache=False)
    assert record["data"] == {
        "train": {
            "path": str(dataset), "inside": "/data/train", "mode": "ro",
            "root": data.root, "files": 1, "bytes": ROWS * FEATURES * 4,
        }
    }  # fmt: skip
    assert json.loads((first_run / "data" / "train.json").read_text()) == data.listing()
    assert record["env"] == {"TRAIN_LR": "0.02", "WANDB_API_KEY": None}
    assert record["shm_size"] == default_shm()
    assert (record["image_id"], record["lock"]) == (
        torch_image.record.image_id,
        torch_image.record.lock,
    )
    assert record["git_dirty"] is False and record["command"] == COMMAND
    main = record["processes"][0]
    assert (main["argv"], main["mode"], main["seed"], main["tf32"]) == (["fit.py"], "1", 0, False)
    assert main["threads"] == len(os.sched_getaffinity(0))
    assert record["key"]["device"] == "cpu" and record["key"]["torch"] == "2.5.1+cu124"
    assert [entry["path"] for entry in record["outputs"]["entries"]] == [
        "metrics.json",
        "model.pt",
    ]
    assert record["trace"]["entries"] == 4 and record["trace"]["interval"] == 5
    trace = [json.loads(line) for line in (first_run / "trace.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in trace] == [5, 10, 15, 20]
    assert [entry["previous"] for entry in trace[1:]] == [entry["hash"] for entry in trace[:-1]]
    assert record["trace"]["head"] == trace[-1]["hash"]
    assert "step 20 loss" in (first_run / "stdout.log").read_text()
    assert (
        json.loads((Path(record["outputs"]["folder"]) / "metrics.json").read_text())["lr"] == 0.02
    )


def test_a_second_run_gives_the_same_bits(first_run: Path, dataset: Path, torch_image: Any) -> None:
    result = run_training(torch_image.project, dataset)
    assert result.returncode == 0, result.stderr
    again = record_of(run_folder(result))
    first = record_of(first_run)
    assert again["outputs"]["root"] == first["outputs"]["root"]
    assert again["trace"]["head"] == first["trace"]["head"]


def test_the_engine_default_shared_memory_kills_the_workers(
    torch_image: Any, dataset: Path
) -> None:
    argv = [
        sys.executable, "-m", "builder", "-C", str(torch_image.project), "run",
        "--data", f"train={dataset}", "--shm-size", "64m", "--", *COMMAND,
    ]  # fmt: skip
    # Not tests.cli.reprobuild: the job's own traceback is the point here.
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 1
    assert (
        "is killed by signal: Bus error. It is possible that dataloader's workers are out of "
        in (result.stderr)
    )


def test_replay_gives_identical_results(first_run: Path, torch_image: Any) -> None:
    result = reprobuild("-C", str(torch_image.project), "replay", str(first_run), env=environment())
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"replay of {first_run}: identical\n" in result.stderr
    assert "  outputs    2 identical\n  trace      4 entries identical\n  key        same\n" in (
        result.stderr
    )
    replayed = run_folder(result)
    assert record_of(replayed)["replay_of"] == str(first_run)
    assert json.loads((replayed / "replay.json").read_text())["identical"] is True


def test_a_byte_changed_in_the_data_is_refused(
    first_run: Path, dataset: Path, torch_image: Any, tmp_path: Path
) -> None:
    moved = shutil.copytree(dataset, tmp_path / "moved")
    moved.chmod(0o755)
    rows = bytearray((moved / "rows.f32").read_bytes())
    rows[100] ^= 1
    (moved / "rows.f32").write_bytes(rows)
    runs_before = sorted((torch_image.project / "runs").iterdir())
    result = reprobuild(
        "-C", str(torch_image.project), "replay", str(first_run), "--data", f"train={moved}",
        env=environment(),
    )  # fmt: skip
    assert result.returncode == 4, result.stderr
    assert "1 file differs from the recorded data 'train': changed rows.f32." in result.stderr
    assert sorted((torch_image.project / "runs").iterdir()) == runs_before  # nothing ran


def test_a_secret_missing_at_replay_is_named(first_run: Path, torch_image: Any) -> None:
    bare = {name: value for name, value in os.environ.items() if name != "WANDB_API_KEY"}
    result = reprobuild("-C", str(torch_image.project), "replay", str(first_run), env=bare)
    assert result.returncode == 4
    assert "the run was given the secret WANDB_API_KEY, whose value is never recorded" in (
        result.stderr
    )


def test_a_perturbed_step_is_found(first_run: Path, torch_image: Any) -> None:
    result = reprobuild(
        "-C", str(torch_image.project), "replay", str(first_run), "--env", "PERTURB_STEP=7",
        env=environment(),
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"replay of {first_run}: DIFFERS\n" in result.stderr
    assert "  outputs    0 identical; differ: metrics.json, model.pt\n" in result.stderr
    assert "  trace      first differs at step 10 (optimizer 0): params, state\n" in result.stderr
    assert "  env        PERTURB_STEP='7' (not as recorded)\n" in result.stderr


@pytest.fixture(scope="module")
def paper(first_run: Path, torch_image: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("paper")
    result = reprobuild(
        "-C", str(torch_image.project), "publish", "--cpu", "--to", PAPER, "-o", str(folder),
        "--run", str(first_run),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "registry on this machine or a private network: readers of the paper cannot pull" in (
        result.stderr
    )
    return folder


def test_the_published_run_is_in_the_manifest(paper: Path, first_run: Path) -> None:
    manifest = json.loads((paper / layout.MANIFEST_FILE).read_text())
    (published,) = manifest["runs"]
    record = record_of(first_run)
    assert published["record"] == record
    assert published["data_listings"] == {
        "train": json.loads((first_run / "data" / "train.json").read_text())
    }
    assert len(published["trace_entries"]) == 4
    assert manifest["commands"]["replay"] == [
        'reprobuild replay reprobuild.manifest.json --data train="$DATA_TRAIN"'
    ]
    reproduce = (paper / layout.REPRODUCE_FILE).read_text()
    root = record["data"]["train"]["root"]
    assert f"| train | `/data/train` | 1 | {ROWS * FEATURES * 4} | `{root}` |" in reproduce
    for entry in record["outputs"]["entries"]:
        assert f"| `{entry['path']}` | {entry['size']} | `{entry['sha256']}` |" in reproduce


def test_a_reader_without_the_image_replays_the_manifest(
    paper: Path, dataset: Path, torch_image: Any, engine_client: Any, tmp_path: Path
) -> None:
    image_id = torch_image.record.image_id
    engine_client.remove_image(image_id)
    try:
        result = reprobuild(
            "-C", str(tmp_path), "replay", str(paper / layout.MANIFEST_FILE),
            "--data", f"train={dataset}", env=environment(),
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert ": identical\n" in result.stderr
        assert engine_client.client.images.get(image_id).id == image_id  # pulled by digest
        replayed = record_of(run_folder(result))
        assert replayed["code_mounted"] is False  # the image's own code, as a reader has it
    finally:
        _restore_tag(engine_client, torch_image)


def _restore_tag(engine_client: Any, torch_image: Any) -> None:
    """The session's torch image keeps its tag for the tests that follow."""
    image = engine_client.client.images.get(torch_image.record.image_id)
    repository, tag = torch_image.record.image.rsplit(":", 1)
    image.tag(repository, tag)


GPU_ONLY = ("# on a GPU host", "reprobuild-smoke", "apptainer ")


def test_every_command_of_reproduce_md_runs_as_written(
    paper: Path, dataset: Path, tmp_path: Path
) -> None:
    """Each line of REPRODUCE.md's shell blocks, run literally in the paper's folder with the
    data variable set as the page says; those that need a GPU or Apptainer are named."""
    blocks = re.findall(r"```sh\n(.*?)```", (paper / layout.REPRODUCE_FILE).read_text(), re.S)
    lines = [line for block in blocks for line in block.splitlines() if line.strip()]
    runnable = [line for line in lines if not line.startswith("#") and not _gpu_only(line)]
    skipped = [line for line in lines if _gpu_only(line)]
    assert [line.split()[:2] for line in skipped] == [
        ["reprobuild", "verify"],
        ["docker", "run"],
        ["apptainer", "pull"],
    ]
    assert [line.split()[:2] for line in runnable] == [
        ["docker", "pull"],
        ["reprobuild", "replay"],
    ]
    bin_folder = str(Path(sys.executable).parent)
    env = environment(DATA_TRAIN=str(dataset), PATH=f"{bin_folder}:{os.environ['PATH']}")
    for line in runnable:
        result = subprocess.run(
            ["bash", "-c", line],
            cwd=paper,
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
        assert result.returncode == 0, f"{line}\n{result.stdout}{result.stderr}"


def _gpu_only(line: str) -> bool:
    return any(mark in line for mark in GPU_ONLY)


def test_no_file_written_holds_the_secret(paper: Path, torch_image: Any) -> None:
    written = [*(torch_image.project / "runs").rglob("*"), *paper.rglob("*")]
    holding = [
        str(path) for path in written if path.is_file() and SECRET.encode() in path.read_bytes()
    ]
    assert holding == []
