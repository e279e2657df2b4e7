"""Which runs can be published, the command that replays them, and registries readers cannot
reach."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pytest

from builder.publish import runs
from builder.run import replay
from tests.records import make_record
from tests.unit.run.test_replay import A, record


@pytest.mark.parametrize(
    ("pushed", "private"),
    [
        ("127.0.0.1:5000/lab/m@sha256:" + A, True),
        ("localhost:5000/lab/m@sha256:" + A, True),
        ("10.1.2.3/lab/m@sha256:" + A, True),
        ("192.168.1.9:443/lab/m@sha256:" + A, True),
        ("[::1]:5000/lab/m@sha256:" + A, True),
        ("registry.lab.local/m@sha256:" + A, True),
        ("ghcr.io/lab/m@sha256:" + A, False),
        ("lab/m@sha256:" + A, False),
        ("8.8.8.8:5000/lab/m@sha256:" + A, False),
    ],
)
def test_registries_readers_cannot_reach(pushed: str, private: bool) -> None:
    note = runs.private_registry(pushed)
    assert (note is not None) == private
    if note:
        assert "readers of the paper cannot pull it" in note


def published(**changes: Any) -> runs.PublishedRun:
    run = record({"model.pt": A}, **changes)
    return {"record": asdict(run), "data_listings": {}, "trace_entries": None}


def test_the_replay_command_names_each_input_by_a_variable() -> None:
    data = {
        name: {"path": "/d", "inside": f"/data/{name}", "mode": "ro", "root": "r", "files": 1,
               "bytes": 1}
        for name in ("train", "tok-2")
    }  # fmt: skip
    run = published()
    run["record"]["data"] = data
    assert runs.replay_command(run) == (
        'reprobuild replay reprobuild.manifest.json --data tok-2="$DATA_TOK_2" '
        '--data train="$DATA_TRAIN"'
    )
    assert runs.replay_command(published()) == "reprobuild replay reprobuild.manifest.json"


def recorded(**changes: Any) -> replay.RecordedRun:
    return replay.RecordedRun(record({"model.pt": A}, **changes), {}, None, "runs/x", None, False)


def test_only_a_run_of_the_image_s_own_code_is_published() -> None:
    build = make_record("sha256:" + A, image_id="sha256:" + A, git_commit="c0ffee", git_dirty=False)
    clean = {"git_commit": "c0ffee", "git_dirty": False}
    assert runs.unpublishable(recorded(**clean), build) is None
    assert runs.unpublishable(recorded(**clean, exit_code=2), build) == (
        "the run exited 2; publish a run that succeeded."
    )
    assert runs.unpublishable(recorded(git_commit="c0ffee", git_dirty=True), build) == (
        "the run's code (commit c0ffee, with uncommitted changes) is not the code in the image "
        "(commit c0ffee, without uncommitted changes), and a reader replays the image's code. "
        "Commit, `reprobuild build`, run again, and publish that run."
    )
    other = runs.unpublishable(recorded(**clean, image_id="sha256:" + "f" * 64), build)
    assert other is not None and other.startswith("the run used image sha256:ffffffffffff")
