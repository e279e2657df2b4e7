"""A run's record (runs/<start>-<image>/run.json), and the facts of the host it holds.

`reprobuild run` imports this module on a thread while the engine starts the container: it
costs nothing on the way to the start, and the facts (git, the GPUs) are read in the meantime.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from builder import source
from builder.engine import host
from builder.files import write_atomic


@dataclass(frozen=True)
class HostFacts:
    git_commit: str | None
    git_dirty: bool | None
    driver: str | None
    gpus: list[str]
    problems: list[str] = field(default_factory=list)  # for the user, not the record

    @classmethod
    def unread(cls, error: BaseException | None) -> HostFacts:
        why = f"{type(error).__name__}: {error}" if error else "no answer"
        problem = f"the host's git state and GPUs could not be read ({why}); the record has none"
        return cls(None, None, None, [], [problem])


def gather(project: str, outputs: str | None) -> HostFacts:
    """The project's commit and whether its tree is dirty (what the run writes to `outputs`
    not counted); the NVIDIA driver and GPU names."""
    ignored = () if outputs is None else (Path(outputs),)
    commit, dirty = source.git_state(Path(project), also_ignored=ignored)
    found = host.probe_nvidia()
    driver = str(found.driver) if found.driver else None
    return HostFacts(commit, dirty, driver, [gpu.name for gpu in found.gpus])


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


def write(folder: str, record: RunRecord) -> str:
    """runs/<run>/run.json; its path."""
    path = Path(folder) / "run.json"
    write_atomic(path, json.dumps(asdict(record), indent=2, sort_keys=True) + "\n")
    return str(path)
