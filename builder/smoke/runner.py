"""Run the suite in fresh processes and judge: identical fingerprints, and a canary with power.

The parent starts children with this interpreter (`python -m <this package> --child ...`), all
at once: two in deterministic mode, whose fingerprints must match kernel for kernel, and one
canary that runs each witness twice without deterministic settings; at least one must differ
there, or the report says the check's power is unproven on this device.

With `--ranks N` (N >= 2), each of those three roles also gets a process group of N ranks
(group.py), started with them: the two deterministic groups' fingerprints must match like the
processes', every rank must agree with rank 0 and run with the suite's settings, and the canary
group's witness joins the canary.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from . import group

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
    seconds: dict[str, float] = field(default_factory=dict)  # per kernel, first process
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
            "seconds": self.seconds,
            "wall_s": round(self.wall_s, 2),
        }


EXPECT_VARIABLE = "REPROBUILD_SMOKE_EXPECT"
HOOK_MODE_VARIABLE = "REPROBUILD_DETERMINISTIC"  # the image hook's switch (0: off)


# Each process and the mode it runs the suite in.
ROLES = {"deterministic 1": "deterministic", "deterministic 2": "deterministic", "canary": "canary"}


class ChildFailed(Exception):
    """A fresh process died instead of answering: reported as an error, never a traceback."""


@dataclass
class _Child:
    role: str
    process: subprocess.Popen[str]

    def answer(self, deadline: float) -> dict[str, Any]:
        try:
            stdout, stderr = self.process.communicate(
                timeout=max(deadline - time.perf_counter(), 0)
            )
        except subprocess.TimeoutExpired:
            raise ChildFailed(
                f"the {self.role} process took more than {CHILD_TIMEOUT_S} s"
            ) from None
        lines = [line for line in stdout.splitlines() if line.startswith("{")]
        if self.process.returncode != 0 or not lines:
            last = (stderr.strip().splitlines() or ["(no output)"])[-1]
            raise ChildFailed(f"the {self.role} process exited {self.process.returncode}: {last}")
        answer: dict[str, Any] = json.loads(lines[-1])
        return answer

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


def _environment(expected: dict[str, Any]) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED", "0"),
        EXPECT_VARIABLE: json.dumps(expected),
        # The image's runtime hook would make the canary deterministic as it imports torch:
        # every process here applies its own settings instead.
        HOOK_MODE_VARIABLE: "0",
    }


def _start(
    package: str, role: str, *, cpu: bool, self_test: bool, ranks: int, env: dict[str, str]
) -> _Child:
    argv = [sys.executable, "-m", package, "--child", ROLES[role]]
    argv += ["--cpu"] if cpu else []
    argv += ["--self-test"] if self_test else []
    argv += ["--ranks", str(ranks)] if ranks > 1 else []
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    return _Child(role, process)


def run(
    package: str,
    cpu: bool,
    expected: dict[str, Any],
    self_test: bool,
    canary: bool,
    *,
    ranks: int = 1,
) -> Report:
    """The three processes (and with ranks >= 2, their three groups) run side by side: they
    share nothing but the device, and identical bits under a concurrent neighbour are a
    stronger promise than identical bits alone."""
    start = time.perf_counter()
    deadline = start + CHILD_TIMEOUT_S
    report = Report(mode="cpu" if cpu else "gpu")
    env = _environment(expected)
    roles = [role for role in ROLES if canary or role != "canary"]
    children: dict[str, _Child] = {}
    groups: dict[str, group.Group] = {}
    try:
        for role in roles:
            children[role] = _start(
                package, role, cpu=cpu, self_test=self_test, ranks=ranks, env=env
            )
        for role in roles if ranks > 1 else []:
            groups[role] = group.start(
                package, role, ROLES[role], ranks, cpu=cpu, self_test=self_test, env=env
            )
        _judge_all(report, children, groups, deadline)
    finally:
        for child in children.values():
            child.stop()
        for started in groups.values():
            started.stop()
    report.wall_s = time.perf_counter() - start
    return report


def _judge_all(
    report: Report, children: dict[str, _Child], groups: dict[str, group.Group], deadline: float
) -> None:
    witnesses: dict[str, list[str]] = {}
    try:
        _judge(report, children, deadline, witnesses)
    except ChildFailed as failure:
        report.errors["process"] = str(failure)
        return
    if any(not check["ok"] for check in report.preconditions):
        return
    answers: dict[str, list[dict[str, Any]]] = {}
    for role, started in groups.items():
        try:
            answers[role] = started.answers(deadline, CHILD_TIMEOUT_S)
        except group.GroupFailed as failure:
            report.errors[f"distributed {role}"] = str(failure)
    _add_groups(report, answers, witnesses)
    if "canary" in children:
        differed = sorted(name for name, runs in witnesses.items() if len(set(runs)) != 1)
        report.canary = {"witnesses": len(witnesses), "differed": len(differed), "names": differed}


def _judge(
    report: Report, children: dict[str, _Child], deadline: float, witnesses: dict[str, list[str]]
) -> None:
    first = children["deterministic 1"].answer(deadline)
    report.key = first["key"]
    report.preconditions = first["preconditions"]
    if any(not check["ok"] for check in report.preconditions):
        return
    second = children["deterministic 2"].answer(deadline)
    report.seconds = first["seconds"]
    for name in first["fingerprints"]:
        report.kernels[name] = [
            first["fingerprints"][name],
            second["fingerprints"].get(name, "missing"),
        ]
    report.errors = {**first["errors"], **second["errors"]}
    report.skipped = {**first["skipped"], **second["skipped"]}
    if second["key"] != first["key"]:
        report.errors["key"] = "the two processes saw different fingerprint keys"
    if "canary" in children:
        witnesses.update(children["canary"].answer(deadline)["fingerprints"])


def _add_groups(
    report: Report, answers: dict[str, list[dict[str, Any]]], witnesses: dict[str, list[str]]
) -> None:
    """The groups that answered: the deterministic two as kernels (rank 0's fingerprints), the
    canary's witness beside the suite's."""
    for role in ("deterministic 1", "deterministic 2"):
        if role in answers:
            report.errors.update(group.problems(role, answers[role], report.key))
    first, second = answers.get("deterministic 1"), answers.get("deterministic 2")
    if first and second:
        for name, digest in first[0]["fingerprints"].items():
            report.kernels[name] = [digest, second[0]["fingerprints"].get(name, "missing")]
        report.seconds.update(first[0]["seconds"])
    if "canary" in answers:
        witnesses.update(answers["canary"][0]["fingerprints"])
