"""`python -m builder.smoke [--json] [--cpu] [--expect FILE] [--self-test] [--no-canary]`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from . import runner

EXIT_HELP = (
    "exit status: 0 identical fingerprints and (on a GPU) a canary that differed; 1 fingerprints "
    "differ or a kernel failed; 3 identical but no canary witness differed, so the check's power "
    "is unproven on this GPU; 4 a precondition failed"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reprobuild-smoke",
        description="Prove that deterministic kernels give bit-identical tensors here.",
        epilog=EXIT_HELP,
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--cpu", action="store_true", help="run the same plumbing on the CPU")
    parser.add_argument(
        "--expect", type=Path, help="JSON with the locked torch, cuda and cudnn versions to check"
    )
    parser.add_argument(
        "--self-test", action="store_true", help="add a kernel that differs per process (must fail)"
    )
    parser.add_argument("--no-canary", action="store_true", help="skip the canary run")
    parser.add_argument("--child", choices=("deterministic", "canary"), help=argparse.SUPPRESS)
    return parser


def text(report: runner.Report) -> str:
    data = report.as_dict()
    key = data["key"]
    where = key.get("gpu") or key.get("cpu") or report.mode
    lines = [f"reprobuild-smoke: {report.mode} mode on {where}, torch {key.get('torch', '?')}"]
    lines += [
        f"  {'ok  ' if c['ok'] else 'FAIL'} {c['name']:<8} {c['detail']}"
        for c in data["preconditions"]
    ]
    for name, result in data["kernels"].items():
        state = "identical" if result["identical"] else "DIFFERS  "
        lines.append(f"  {state} {name:<32} {result['runs'][0][:16]}")
    lines += [f"  ERROR     {name:<32} {message}" for name, message in data["errors"].items()]
    lines += [f"  skipped   {name:<32} {message}" for name, message in data["skipped"].items()]
    canary = data["canary"]
    if canary:
        differed = f"{canary['differed']} of {canary['witnesses']}"
        lines.append(f"canary: {differed} witnesses differed without deterministic settings")
        if not canary["differed"]:
            lines.append(
                "  the check's power is unproven here: "
                + (
                    "CPU kernels do not race, so it is proven only on a GPU"
                    if report.mode == "cpu"
                    else "no witness varied on this GPU"
                )
            )
    verdict = data["verdict"]
    count = len(data["kernels"])
    summary = {
        "pass": f"PASS: {count} fingerprints identical across 2 fresh processes",
        "fail": (
            f"FAIL: differing {', '.join(report.differing) or '-'}; "
            f"errors {', '.join(report.errors) or '-'}"
        ),
        "unproven": f"UNPROVEN: {count} fingerprints identical, but no canary witness differed",
        "precondition": "FAIL: a precondition is not met (above)",
    }[verdict]
    lines.append(f"{summary} ({data['wall_s']} s)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    options = _parser().parse_args(argv)
    if options.child:
        from . import child

        child.main(options.child, options.cpu, options.self_test)
        return 0
    expected: dict[str, Any] = json.loads(options.expect.read_text()) if options.expect else {}
    report = runner.run(
        __package__ or "builder.smoke",
        options.cpu,
        expected,
        options.self_test,
        not options.no_canary,
    )
    print(json.dumps(report.as_dict(), indent=2) if options.json else text(report))
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
