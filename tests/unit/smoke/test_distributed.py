"""`--ranks N`: process groups of real fresh processes over gloo on this host's CPU (tests/gpu and
a GPU host cover NCCL), and the runner's judgement of what the ranks answer."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from typing import Any

import pytest

pytest.importorskip("torch")

import torch

from builder.smoke import describe, distributed, group, key, preconditions, runner
from builder.smoke.fingerprint import fingerprint

FAIL_RANK = distributed.FAIL_RANK_VARIABLE
COLLECTIVES = ["distributed_all_reduce", "distributed_ddp_step"]


def smoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "builder.smoke", "--cpu", "--json", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, **(env or {})},
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


@pytest.fixture(scope="module")
def two_ranks() -> tuple[int, dict[str, Any]]:
    """The whole suite with --ranks 2, canary included. The failure switch is set, and ignored
    without --self-test."""
    return smoke("--ranks", "2", env={FAIL_RANK: "1"})


def test_two_gloo_groups_give_identical_fingerprints(two_ranks: tuple[int, dict[str, Any]]) -> None:
    code, report = two_ranks
    assert code == runner.PASS and report["verdict"] == "pass", report["errors"]
    assert report["errors"] == {}
    assert list(report["kernels"])[-2:] == COLLECTIVES
    assert len(report["kernels"]) == 16  # the 14 of the CPU suite, and the group's two
    for name in COLLECTIVES:
        first, second = report["kernels"][name]["runs"]
        assert first == second and len(first) == 64 and report["kernels"][name]["identical"]
        assert report["seconds"][name] >= 0
    assert report["preconditions"] == [
        {"name": "ranks", "ok": True, "detail": "2 ranks on the CPU over gloo"}
    ]


def test_the_all_reduce_is_the_sum_of_the_ranks_terms(
    two_ranks: tuple[int, dict[str, Any]],
) -> None:
    # Two terms meet in one order only (a + b == b + a in floating point), so one process
    # computes the group's bits exactly: the collective did sum both ranks' tensors.
    _, report = two_ranks
    expected = distributed.all_reduce_input(0, 0) + distributed.all_reduce_input(1, 0)
    assert report["kernels"]["distributed_all_reduce"]["runs"][0] == fingerprint([expected])
    alone = fingerprint([distributed.all_reduce_input(0, 0)])
    assert report["kernels"]["distributed_all_reduce"]["runs"][0] != alone


def test_the_key_names_the_group_and_the_canary_its_witness(
    two_ranks: tuple[int, dict[str, Any]],
) -> None:
    _, report = two_ranks
    assert report["key"]["distributed"] == {
        "world_size": 2,
        "backend": "gloo",
        "backend_version": torch.__version__,
    }
    assert report["key"]["settings"]["deterministic_algorithms"] is True
    # The suite's 8 CPU witnesses and the group's DDP steps; CPU kernels do not race.
    assert report["canary"] == {"witnesses": 9, "differed": 0, "names": []}


def test_the_text_report_names_the_group(two_ranks: tuple[int, dict[str, Any]]) -> None:
    _, report = two_ranks
    lines = describe.text(report).splitlines()
    assert lines[0].endswith(f", 2 ranks over gloo {torch.__version__}")
    shown = report["kernels"]["distributed_ddp_step"]["runs"][0][:16]
    assert f"  identical {'distributed_ddp_step':<32} {shown}" in lines
    assert lines[-1].startswith(
        "PASS: 16 fingerprints identical across 2 fresh processes and 2 groups of 2 ranks ("
    )


def test_a_rank_that_fails_is_reported_not_waited_for() -> None:
    code, report = smoke("--ranks", "2", "--self-test", "--no-canary", env={FAIL_RANK: "1"})
    assert code == runner.FAIL and report["verdict"] == "fail"
    message = (
        f"rank 1 of 2 failed: RuntimeError: injected failure in rank 1 ({FAIL_RANK}=1 with "
        "--self-test)"
    )
    assert report["errors"] == {
        "distributed deterministic 1": message,
        "distributed deterministic 2": message,
    }
    assert not set(COLLECTIVES) & set(report["kernels"])
    assert report["kernels"]["index_add_"]["identical"] is True
    # Rank 0 would have waited for rank 1 up to the store's timeout: the runner stopped it.
    assert report["wall_s"] < group.COLLECTIVE_TIMEOUT_S


@pytest.mark.parametrize("given", ["0", "-2", "two"])
def test_ranks_must_be_a_number_of_processes(given: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "builder.smoke", "--cpu", "--ranks", given],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines()[-1] == (
        f"reprobuild-smoke: error: argument --ranks: {given!r} is not a number of processes: "
        "give 1 (no group), or 2 or more"
    )


def test_ranks_that_cannot_start_are_named_and_stopped() -> None:
    started = group.start(
        "builder.no_such_payload",
        "canary",
        "canary",
        2,
        cpu=True,
        self_test=False,
        env={**os.environ},
    )
    try:
        with pytest.raises(group.GroupFailed) as failed:
            started.answers(time.perf_counter() + 60, 60)
    finally:
        started.stop()
    assert re.fullmatch(
        rf"rank [01] of 2 exited 1: {re.escape(sys.executable)}: "
        r"No module named builder\.no_such_payload",
        str(failed.value),
    )
    assert [rank.process.returncode for rank in started.ranks] == [1, 1]


def test_a_suite_process_that_dies_stops_the_groups() -> None:
    report = runner.run("builder.no_such_payload", True, {}, False, True, ranks=2)
    assert report.as_dict()["verdict"] == "fail"
    assert report.errors == {
        "process": "the deterministic 1 process exited 1: "
        f"{sys.executable}: No module named builder.no_such_payload"
    }
    assert report.kernels == {} and report.canary == {}


def rank_answer(rank: int, ddp: str = "b" * 64, **settings: Any) -> dict[str, Any]:
    return {
        "rank": rank,
        "fingerprints": {"distributed_all_reduce": "a" * 64, "distributed_ddp_step": ddp},
        "seconds": {},
        "settings": {"deterministic_algorithms": True, "num_threads": 2, **settings},
        "distributed": GLOO,
    }


GLOO = {"world_size": 2, "backend": "gloo", "backend_version": "2.5.1"}
SUITE_KEY = {"settings": {"deterministic_algorithms": True, "num_threads": 2}, "distributed": GLOO}


def test_ranks_must_agree_with_rank_0_and_with_the_suite() -> None:
    agreeing = [rank_answer(0), rank_answer(1)]
    assert group.problems("deterministic 1", agreeing, SUITE_KEY) == {}
    diverged = [rank_answer(0), rank_answer(1, ddp="c" * 64)]
    assert group.problems("deterministic 2", diverged, SUITE_KEY) == {
        "distributed_ddp_step": "rank 1 of 2 ended with other bits than rank 0 in the "
        "deterministic 2 group"
    }
    loose = [rank_answer(0), rank_answer(1, deterministic_algorithms=False, num_threads=1)]
    assert group.problems("deterministic 1", loose, SUITE_KEY) == {
        "distributed deterministic 1": "rank 1 of 2 ran with other settings than the suite's "
        "processes: deterministic_algorithms, num_threads"
    }
    other_key = {**SUITE_KEY, "distributed": {**GLOO, "world_size": 3}}
    assert group.problems("deterministic 1", agreeing, other_key) == {
        "distributed deterministic 1": "rank 1 of 2 saw another group key than the suite's "
        "processes"
    }


def test_too_few_gpus_for_the_ranks_is_a_precondition() -> None:
    assert preconditions.gpu_count_check(4, 2) == preconditions.Check(
        "ranks",
        False,
        "--ranks 4 needs 4 GPUs, one per rank, and 2 are visible: give the container more "
        "(--gpus all or --gpus 4), or use --ranks 2 or fewer",
    )
    assert preconditions.gpu_count_check(2, 1).detail.startswith(
        "--ranks 2 needs 2 GPUs, one per rank, and 1 is visible: "
    )
    assert preconditions.gpu_count_check(1 + 1, 8) == preconditions.Check(
        "ranks", True, "2 ranks on 2 of 8 GPUs over nccl"
    )


def test_an_nccl_failure_names_a_small_dev_shm() -> None:
    failure = "rank 0 of 2 failed: DistBackendError: NCCL error in: ..., unhandled system error"
    assert group.shm_note(failure, 64 << 20) == (
        " (/dev/shm here is 64 MiB, and NCCL needs more: run the container with --shm-size 1g "
        "or more, or --ipc host)"
    )
    assert group.shm_note(failure, 8 << 30) == ""
    assert group.shm_note("rank 1 of 2 failed: RuntimeError: gloo", 64 << 20) == ""


def test_the_group_key_on_the_cpu_is_gloo_and_torch() -> None:
    assert key.distributed(torch.device("cpu"), 3) == {
        "world_size": 3,
        "backend": "gloo",
        "backend_version": torch.__version__,
    }
    assert key.backend(torch.device("cuda")) == "nccl"
