"""Run the suite in fresh processes and judge: identical fingerprints, and a canary with power.

The parent starts children with this interpreter (`python -m <this package> --child ...`):
two in deterministic mode, whose fingerprints must match kernel for kernel, and one canary
that runs each witness twice without deterministic settings; at least one must differ there, or
the report says the check's power is unproven on this device.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

PASS, FAIL, UNPROVEN, PRECONDITION = 0, 1, 3, 4
CHILD_TIMEOUT_S = 600


@dataclass
class Report:
    mode: str
    key: dict[str, Any] = field(default_factory=dict)
    preconditions: list[dict[str, Any]] = field(default_factory=list)
    kernels: dict[str, list[str]] = field(default_factory=dict)  # name -> fingerprint per run
    errors: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # no deterministic implementation
    canary: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def differing(self) -> list[str]:
        return sorted(name for name, runs in self.kernels.items() if len(set(runs)) != 1)

    @property
    def exit_code(self) -> int:
        if any(not check["ok"] for check in self.preconditions):
            return PRECONDITION
        if self.differing or self.errors:
            return FAIL
        if self.mode == "gpu" and not self.canary.get("differed"):
            return UNPROVEN
        return PASS

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "verdict": {
                PASS: "pass",
                FAIL: "fail",
                UNPROVEN: "unproven",
                PRECONDITION: "precondition",
            }[self.exit_code],
            "key": self.key,
            "preconditions": self.preconditions,
            "kernels": {
                name: {"runs": runs, "identical": len(set(runs)) == 1}
                for name, runs in self.kernels.items()
            },
            "errors": self.errors,
            "skipped": self.skipped,
            "canary": self.canary,
            "wall_s": round(self.wall_s, 2),
        }


EXPECT_VARIABLE = "REPROBUILD_SMOKE_EXPECT"


def _child(
    package: str, role: str, cpu: bool, self_test: bool, expected: dict[str, Any]
) -> dict[str, Any]:
    argv = [sys.executable, "-m", package, "--child", role]
    argv += ["--cpu"] if cpu else []
    argv += ["--self-test"] if self_test else []
    env = {
        **os.environ,
        "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED", "0"),
        EXPECT_VARIABLE: json.dumps(expected),
    }
    result = subprocess.run(
        argv, capture_output=True, text=True, env=env, timeout=CHILD_TIMEOUT_S, check=False
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        tail = "\n".join(result.stderr.strip().splitlines()[-8:])
        raise RuntimeError(f"the {role} run exited {result.returncode}:\n{tail}")
    answer: dict[str, Any] = json.loads(lines[-1])
    return answer


def run(package: str, cpu: bool, expected: dict[str, Any], self_test: bool, canary: bool) -> Report:
    start = time.perf_counter()
    first = _child(package, "deterministic", cpu, self_test, expected)
    report = Report(mode="cpu" if cpu else "gpu", key=first["key"])
    report.preconditions = first["preconditions"]
    if any(not check["ok"] for check in report.preconditions):
        report.wall_s = time.perf_counter() - start
        return report
    second = _child(package, "deterministic", cpu, self_test, expected)
    for name in first["fingerprints"]:
        report.kernels[name] = [
            first["fingerprints"][name],
            second["fingerprints"].get(name, "missing"),
        ]
    report.errors = {**first["errors"], **second["errors"]}
    report.skipped = {**first["skipped"], **second["skipped"]}
    if second["key"] != first["key"]:
        report.errors["key"] = "the two processes saw different fingerprint keys"
    if canary:
        witnesses = _child(package, "canary", cpu, False, expected)["fingerprints"]
        differed = sorted(name for name, runs in witnesses.items() if len(set(runs)) != 1)
        report.canary = {"witnesses": len(witnesses), "differed": len(differed), "names": differed}
    report.wall_s = time.perf_counter() - start
    return report
