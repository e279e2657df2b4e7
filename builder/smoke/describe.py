"""The smoke report for people: one line per precondition and kernel, the canary, the verdict.

Used inside the image (`reprobuild-smoke`) and on the host (`reprobuild smoke IMAGE`), which reads
the payload's JSON report back.
"""

from __future__ import annotations

from typing import Any


def text(data: dict[str, Any]) -> str:
    """The report (as `Report.as_dict` gives it) for people."""
    key = data["key"]
    mode = data["mode"]
    where = key.get("gpu") or key.get("cpu") or "no visible device"
    group = key.get("distributed")
    over = f", {_group_text(group)}" if group else ""
    lines = [f"reprobuild-smoke: {mode} mode on {where}, torch {key.get('torch', '?')}{over}"]
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
                    if mode == "cpu"
                    else "no witness varied on this GPU"
                )
            )
    verdict = data["verdict"]
    differing = differing_kernels(data)
    count = len(data["kernels"])
    summary = {
        "pass": f"PASS: {count} fingerprints identical across 2 fresh processes"
        + (f" and 2 groups of {group['world_size']} ranks" if group else ""),
        "fail": (
            f"FAIL: differing {', '.join(differing) or '-'}; "
            f"errors {', '.join(data['errors']) or '-'}"
        ),
        "unproven": f"UNPROVEN: {count} fingerprints identical, but no canary witness differed",
        "precondition": "FAIL: a precondition is not met (above)",
    }[verdict]
    lines.append(f"{summary} ({data['wall_s']} s)")
    return "\n".join(lines)


def _group_text(group: dict[str, Any]) -> str:
    """The process groups' part of the key, e.g. "2 ranks over nccl 2.21.5"."""
    return f"{group['world_size']} ranks over {group['backend']} {group['backend_version']}"


def differing_kernels(report: dict[str, Any]) -> list[str]:
    """The kernels whose fingerprints differed between the two deterministic processes."""
    return [name for name, result in report["kernels"].items() if not result.get("identical")]
