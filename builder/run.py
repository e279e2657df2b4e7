"""`reprobuild run -- COMMAND...`: train inside the built image, and record the run.

The image runs by ID (the config digest the build recorded), never by tag. The project is
mounted read-only at /workspace, an outputs folder writable at /outputs, and the command runs
as the host user so what it writes there is the user's. Each run leaves a record under runs/.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from builder import engine, host, plan, snapshots, source
from builder.buildrecord import ImageToRun
from builder.files import write_atomic

RUNS_FOLDER = source.RUNS_FOLDER


@dataclass(frozen=True)
class RunRecord:
    image: str
    image_id: str
    pushed: str | None
    command: list[str]
    git_commit: str | None
    git_dirty: bool | None
    driver: str | None
    gpus: list[str]
    gpus_requested: str | None
    user: str
    outputs: str
    started: str
    ended: str
    exit_code: int


@dataclass(frozen=True)
class RunPlan:
    project: Path
    outputs: Path | None  # None: runs/<run>/outputs
    image: ImageToRun
    command: list[str]
    gpus: str | None


def container_user() -> str:
    """The host user's uid:gid; root on the host runs as the image's own non-root user."""
    uid, gid = os.getuid(), os.getgid()
    return f"{plan.UID}:{plan.UID}" if uid == 0 else f"{uid}:{gid}"


def prepare_outputs(outputs: Path, user: str) -> None:
    outputs.mkdir(parents=True, exist_ok=True)
    if os.getuid() == 0:
        uid, gid = (int(part) for part in user.split(":"))
        os.chown(outputs, uid, gid)


def attachment(run_plan: RunPlan, outputs: Path, user: str) -> engine.Attached:
    return engine.Attached(
        mounts={
            str(run_plan.project): {"bind": plan.CODE, "mode": "ro"},
            str(outputs): {"bind": plan.OUTPUTS, "mode": "rw"},
        },
        environment={"HOME": "/tmp", "REPROBUILD_OUTPUTS": plan.OUTPUTS},
        user=user,
        working_dir=plan.CODE,
        gpus=run_plan.gpus,
    )


def execute(
    client: Any, run_plan: RunPlan, output: Callable[[bytes, bool], None]
) -> tuple[RunRecord, Path]:
    """Run the command and write its record (runs/<start>-<image>/run.json), which holds the
    command's exit code; the outputs default to that run's folder."""
    image_id = run_plan.image.image_id
    started = snapshots.utc_now()
    folder = run_folder(run_plan.project, started, image_id)
    outputs = run_plan.outputs or folder / "outputs"
    user = container_user()
    prepare_outputs(outputs, user)
    commit, dirty = source.git_state(run_plan.project)
    found = host.probe_nvidia()
    code = engine.run_attached(
        client, image_id, run_plan.command, attachment(run_plan, outputs, user), output
    )
    record = RunRecord(
        image=run_plan.image.reference,
        image_id=image_id,
        pushed=run_plan.image.pushed,
        command=run_plan.command,
        git_commit=commit,
        git_dirty=dirty,
        driver=str(found.driver) if found.driver else None,
        gpus=[gpu.name for gpu in found.gpus],
        gpus_requested=run_plan.gpus,
        user=user,
        outputs=str(outputs),
        started=started,
        ended=snapshots.utc_now(),
        exit_code=code,
    )
    path = folder / "run.json"
    write_atomic(path, json.dumps(asdict(record), indent=2, sort_keys=True) + "\n")
    return record, path


def run_folder(project: Path, started: str, image_id: str) -> Path:
    """runs/20261122T101500123Z-0123456789ab: sorts by start time, names the image."""
    stamp = started.replace(":", "").replace("-", "").replace(".", "")
    folder = project / RUNS_FOLDER / f"{stamp}-{image_id.removeprefix('sha256:')[:12]}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
