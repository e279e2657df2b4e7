"""Wall time of `reprobuild resolve` for a GPU spec, interpreter start and imports included.

Prints the median of several runs and its ratio to the 150 ms target. Usage:
    python benchmarks/resolve_time.py [--runs N] [--project DIR]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from timing import reprobuild, wall_ms

TARGET_MS = 150.0
EXAMPLE = Path(__file__).resolve().parents[1] / "images" / "example"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--project", type=Path, default=EXAMPLE)
    options = parser.parse_args()
    argv = reprobuild(options.project, "resolve")
    wall_ms(argv)  # warm the OS file cache and bytecode cache once
    samples = sorted(wall_ms(argv) for _ in range(options.runs))
    median = statistics.median(samples)
    print(f"command: {' '.join(argv)}")
    spread = f"min {samples[0]:.1f} ms  median {median:.1f} ms  max {samples[-1]:.1f} ms"
    print(f"runs: {options.runs}  {spread}")
    verdict = "met" if median <= TARGET_MS else "MISSED"
    print(f"median / target ({TARGET_MS:.0f} ms): {median / TARGET_MS:.2f}  ({verdict})")


if __name__ == "__main__":
    main()
