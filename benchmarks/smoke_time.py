"""Wall time of the smoke suite, both fresh processes and the canary included.

Targets: <= 30 s on a GPU, <= 60 s in CPU mode. Usage:
    python benchmarks/smoke_time.py [--cpu]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

TARGETS_S = {"gpu": 30.0, "cpu": 60.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true")
    cpu = parser.parse_args().cpu
    argv = [sys.executable, "-m", "builder.smoke", "--json", *(["--cpu"] if cpu else [])]
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    report = json.loads(result.stdout)
    mode = report["mode"]
    target = TARGETS_S[mode]
    canary = report.get("canary", {})
    print(f"mode: {mode}  verdict: {report['verdict']}  kernels: {len(report['kernels'])}")
    print(f"canary: {canary.get('differed')} of {canary.get('witnesses')} witnesses differed")
    print(f"wall: {wall:.2f} s  / target ({target:.0f} s): {wall / target:.2f}")


if __name__ == "__main__":
    main()
