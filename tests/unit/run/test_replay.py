"""The replay's judgement: outputs, the trace's first differing step, the key, the variables."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from builder.errors import ReplayPrecondition
from builder.run import replay, runrecord

A, B, C = "a" * 64, "b" * 64, "c" * 64


def record(outputs: dict[str, str], **changes: Any) -> runrecord.RunRecord:
    entries = [runrecord.FileRecord(path, 1, digest) for path, digest in sorted(outputs.items())]
    base = runrecord.RunRecord(
        format=runrecord.FORMAT, reprobuild="0", image="i", image_id="sha256:" + A, pushed=None,
        lock=None, command=["python", "fit.py"], code_mounted=True, git_commit=None,
        git_dirty=None, driver=None, gpus=[], gpus_requested=None, user="1000:1000", data={},
        env={"LR": "0.1", "WANDB_API_KEY": None}, shm_size=2**30, tty=False,
        processes=[
            runrecord.ProcessRecord(["fit.py"], None, "1", 0, False, 8, 8, ":4096:8", None, None)
        ],
        key={"device": "cpu", "cpu": "Xeon", "cores": 8},
        outputs=runrecord.OutputsRecord("/o", "sha256:" + A, len(entries), len(entries), entries),
        logs={}, trace=None, started="s", ended="e", exit_code=0,
    )  # fmt: skip
    return replace(base, **changes)


def entry(step: int, params: str, state: str = C) -> dict[str, Any]:
    return {"step": step, "optimizer": 0, "params": params, "state": state}


def test_identical_runs() -> None:
    original = record({"model.pt": A, "metrics.json": B})
    trace = [entry(5, A), entry(10, B)]
    comparison = replay.compare(original, trace, original, list(trace))
    assert comparison.identical and comparison.identical_files == 2
    assert comparison.trace_entries == (2, 2) and comparison.first_differing_step is None


def test_files_that_differ_are_missing_or_extra() -> None:
    original = record({"model.pt": A, "metrics.json": B, "log.txt": C})
    replayed = record({"model.pt": B, "metrics.json": B, "new.txt": C}, exit_code=3)
    comparison = replay.compare(original, None, replayed, None)
    assert not comparison.identical
    assert (comparison.differing, comparison.missing, comparison.extra) == (
        ["model.pt"],
        ["log.txt"],
        ["new.txt"],
    )
    assert comparison.exit_codes == (0, 3) and comparison.trace_entries is None


def test_the_first_differing_step_is_named() -> None:
    original = [entry(5, A), entry(10, A), entry(15, A)]
    assert replay.first_trace_difference(original, [entry(5, A), entry(10, B, B)]) == {
        "step": 10,
        "optimizer": 0,
        "differs": ["params", "state"],
    }
    assert replay.first_trace_difference(original, original[:2]) == {
        "step": 15,
        "optimizer": 0,
        "differs": ["missing from the replay"],
    }
    assert replay.first_trace_difference(original[:1], original[:2]) == {
        "step": 10,
        "optimizer": 0,
        "differs": ["not in the original"],
    }


def test_a_differing_key_is_named_but_does_not_make_the_bits_differ() -> None:
    original = record({"model.pt": A})
    elsewhere = record({"model.pt": A}, key={"device": "cpu", "cpu": "EPYC", "cores": 8})
    comparison = replay.compare(original, None, elsewhere, None)
    assert comparison.identical
    assert comparison.key_differences == {"cpu": ("Xeon", "EPYC")}


def test_the_replay_environment() -> None:
    original = record({})
    environment = replay.replay_environment(
        original, {"OMP_NUM_THREADS": "1"}, source={"WANDB_API_KEY": "k", "LR": "9"}
    )
    assert environment.values == {
        "LR": "0.1",
        "WANDB_API_KEY": "k",
        "REPROBUILD_THREADS": "8",
        "OMP_NUM_THREADS": "1",
    }
    assert environment.secrets == {"WANDB_API_KEY"}
    with pytest.raises(ReplayPrecondition) as raised:
        replay.replay_environment(original, source={})
    assert str(raised.value) == (
        "the run was given the secret WANDB_API_KEY, whose value is never recorded: set it in "
        "this environment (export WANDB_API_KEY=...)."
    )


def test_a_record_of_another_format_is_refused() -> None:
    with pytest.raises(Exception, match="is not a run record of this reprobuild"):
        runrecord.from_document({"format": 1}, "runs/x/run.json")


def test_a_record_reads_back_as_written(tmp_path: Any) -> None:
    written = record(
        {"model.pt": A},
        data={"train": runrecord.DataRecord("/d", "/data/train", "ro", "sha256:" + B, 2, 10)},
        logs={"stdout": runrecord.LogRecord("stdout.log", 3, C)},
        trace=runrecord.TraceRecord("trace.jsonl", 5, 4, A),
    )
    runrecord.write(str(tmp_path), written)
    assert runrecord.read(tmp_path) == written
