"""`reprobuild run` against the real engine, on the bootstrapped test base (any image runs; the
determinism of what runs is the smoke test's business)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from builder import plan
from tests import cli
from tests.records import make_record


def reprobuild(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli.reprobuild("-C", str(project), *args)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "train.py").write_text("print('training')\n")
    git = ["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "train.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "first"], check=True)
    return folder


def only_record(project: Path) -> dict[str, Any]:
    (record,) = (project / "runs").glob("*/run.json")
    loaded: dict[str, Any] = json.loads(record.read_text())
    return loaded


def test_a_run_streams_returns_the_exit_code_and_writes_its_record(
    project: Path, engine_client: Any, test_base: str
) -> None:
    (project / "notes.txt").write_text("not committed\n")
    script = "cat train.py; echo to-stderr >&2; id -u; pwd; touch /outputs/model.pt; exit 7"
    result = reprobuild(project, "run", "--image", test_base, "--", "sh", "-c", script)
    assert result.returncode == 7
    user = os.getuid() or plan.UID
    assert result.stdout == f"print('training')\n{user}\n/workspace\n"
    assert result.stderr.startswith("to-stderr\n")
    record = only_record(project)
    commit = subprocess.run(
        ["git", "-C", str(project), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert record["exit_code"] == 7 and record["command"] == ["sh", "-c", script]
    assert (record["git_commit"], record["git_dirty"]) == (commit, True)
    assert record["image"] == test_base
    assert record["image_id"] == engine_client.images.get(test_base).id
    assert record["started"] <= record["ended"] and record["gpus_requested"] is None
    model = Path(record["outputs"]) / "model.pt"
    assert model.is_file() and model.stat().st_uid == user
    assert f"exit 7; record {project / 'runs'}" in result.stderr
    leftovers = engine_client.containers.list(all=True, filters={"ancestor": test_base})
    assert leftovers == []


def test_the_project_is_read_only_inside(project: Path, test_base: str) -> None:
    result = reprobuild(project, "run", "--image", test_base, "--", "touch", "/workspace/x")
    assert result.returncode == 1
    assert "Read-only file system" in result.stderr
    assert not (project / "x").exists()


def test_sigterm_reaches_the_command(project: Path, test_base: str) -> None:
    script = 'trap "echo got TERM; exit 42" TERM; echo ready; while :; do sleep 0.1; done'
    argv = [sys.executable, "-m", "builder", "-C", str(project), "run", "--image", test_base]
    process = subprocess.Popen(
        [*argv, "--", "sh", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "ready\n"
    process.send_signal(signal.SIGTERM)
    stdout, _ = process.communicate(timeout=60)
    assert process.returncode == 42
    assert stdout == "got TERM\n"
    assert only_record(project)["exit_code"] == 42


def test_an_image_the_registry_does_not_have(project: Path, engine_client: Any) -> None:
    result = reprobuild(project, "run", "--image", "127.0.0.1:5000/nothing:here", "--", "true")
    assert result.returncode == 1
    assert result.stderr.startswith("error: the engine could not pull 127.0.0.1:5000/nothing:here")
    assert not (project / "runs").exists()


def _write_record(project: Path, image_id: str, pushed: str | None) -> None:
    from builder import buildrecord

    record = make_record(
        "sha256:" + "0" * 64, pushed=pushed, image_id=image_id, image="lab/train:0123456789ab"
    )
    buildrecord.write(project, record)


GONE = "sha256:" + "de" * 32


def test_a_last_build_gone_from_the_engine_and_never_pushed(project: Path, test_base: str) -> None:
    _write_record(project, GONE, None)
    result = reprobuild(project, "run", "--", "true")
    assert result.returncode == 1
    assert result.stderr == (
        f"error: the last build's image lab/train:0123456789ab ({GONE}) is no longer in the engine "
        "and was not pushed: run `reprobuild build` again.\n"
    )
    assert not (project / "runs").exists()


def test_a_last_build_pulled_back_must_have_the_recorded_id(
    project: Path, engine_client: Any, test_base: str
) -> None:
    from builder.registry import ImageReference, RegistryClient

    with RegistryClient(attempts=1) as registry:
        digest = registry.resolve(ImageReference.parse(test_base)).digest
    pushed = f"{test_base.rsplit(':', 1)[0]}@{digest}"
    _write_record(project, GONE, pushed)
    result = reprobuild(project, "smoke", "--cpu")
    assert result.returncode == 1
    found = engine_client.images.get(test_base).id
    assert result.stderr.splitlines()[-1] == (
        f"error: {pushed} is {found} in the registry, but {project / 'reprobuild.build.json'} "
        f"recorded {GONE}: the record was edited or belongs to another build. Run "
        "`reprobuild build` again."
    )
