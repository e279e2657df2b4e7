"""The smoke payload in CPU mode, in real fresh processes (CI has no GPU: tests/gpu covers it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")


def smoke(*args: str) -> tuple[int, dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "builder.smoke", "--cpu", "--json", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def test_cpu_mode_fingerprints_match_across_processes() -> None:
    code, report = smoke()
    assert code == 0 and report["verdict"] == "pass"
    names = set(report["kernels"])
    assert {
        "index_add_",
        "scatter_add_",
        "cumsum_float32",
        "conv2d_fwd_bwd",
        "training_sgd_cnn",
    } <= names
    assert all(kernel["identical"] for kernel in report["kernels"].values())
    assert all(
        len(kernel["runs"]) == 2 and len(kernel["runs"][0]) == 64
        for kernel in report["kernels"].values()
    )
    assert report["key"]["device"] == "cpu" and report["key"]["torch"].startswith("2.")
    assert report["key"]["settings"]["deterministic_algorithms"] is True
    assert report["key"]["settings"]["env"]["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert report["canary"]["witnesses"] == 8
    assert report["wall_s"] < 60


def test_a_process_dependent_kernel_makes_it_fail() -> None:
    code, report = smoke("--self-test", "--no-canary")
    assert code == 1 and report["verdict"] == "fail"
    assert report["kernels"]["self_test_process_entropy"]["identical"] is False
    assert report["kernels"]["index_add_"]["identical"] is True


def test_locked_versions_are_preconditions(tmp_path: Path) -> None:
    expect = tmp_path / "expect.json"
    expect.write_text(json.dumps({"torch": "2.5.1"}))
    code, report = smoke("--expect", str(expect), "--no-canary")
    assert code == 4 and report["verdict"] == "precondition"
    import torch

    assert report["preconditions"] == [
        {
            "name": "torch",
            "ok": False,
            "detail": f"torch {torch.__version__.split('+')[0]}, the lock says 2.5.1",
        }
    ]
    assert report["kernels"] == {}


def test_a_process_that_dies_is_a_failure_not_a_traceback() -> None:
    from builder.smoke import runner

    report = runner.run("builder.no_such_payload", True, {}, False, True)
    assert report.exit_code == runner.FAIL and report.as_dict()["verdict"] == "fail"
    assert report.errors == {
        "process": "the deterministic 1 process exited 1: "
        f"{sys.executable}: No module named builder.no_such_payload"
    }
    assert report.kernels == {}
