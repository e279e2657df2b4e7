"""On a real NVIDIA GPU: the suite matches across processes and the canary proves its power."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.gpu


def test_gpu_suite_is_deterministic_and_the_canary_differs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "builder.smoke", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    report = json.loads(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert report["verdict"] == "pass"
    assert all(kernel["identical"] for kernel in report["kernels"].values())
    assert report["canary"]["differed"] >= 1
    assert report["key"]["sm_count"] > 0 and report["key"]["driver"]
