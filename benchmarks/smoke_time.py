"""Wall time of the smoke suite, both fresh processes and the canary included.

Targets: <= 30 s on a GPU, <= 60 s in CPU mode. With `--ranks N` (N >= 2) the same run is then
timed again with N-rank process groups (`reprobuild-smoke --ranks N`), one after the other on
the same machine, and both walls are printed side by side. Usage:
    python benchmarks/smoke_time.py [--cpu] [--ranks N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

TARGETS_S = {"gpu": 30.0, "cpu": 60.0}


def timed_smoke(cpu: bool, ranks: int) -> tuple[float, dict[str, Any]]:
    """One payload run on this host (`python -m builder.smoke --json`): wall seconds, report."""
    argv = [sys.executable, "-m", "builder.smoke", "--json", *(["--cpu"] if cpu else [])]
    argv += ["--ranks", str(ranks)] if ranks > 1 else []
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    report: dict[str, Any] = json.loads(result.stdout)
    return wall, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true")
    parser.add_argument("--ranks", type=int, default=1, help="also time process groups of N")
    options = parser.parse_args()
    wall, report = timed_smoke(options.cpu, 1)
    mode = report["mode"]
    target = TARGETS_S[mode]
    canary = report.get("canary", {})
    print(f"mode: {mode}  verdict: {report['verdict']}  kernels: {len(report['kernels'])}")
    print(f"canary: {canary.get('differed')} of {canary.get('witnesses')} witnesses differed")
    print(f"wall: {wall:.2f} s  / target ({target:.0f} s): {wall / target:.2f}")
    if options.ranks > 1:
        grouped, group_report = timed_smoke(options.cpu, options.ranks)
        group = group_report["key"].get("distributed", {})
        print(
            f"--ranks {options.ranks} ({group.get('backend')}): verdict {group_report['verdict']}"
            f"  kernels: {len(group_report['kernels'])}"
        )
        print(
            f"wall: --ranks 1 {wall:.2f} s, --ranks {options.ranks} {grouped:.2f} s "
            f"({grouped / wall:.2f} x)  / target ({target:.0f} s): {grouped / target:.2f}"
        )


if __name__ == "__main__":
    main()
