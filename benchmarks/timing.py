"""Shared by the benchmark scripts: wall time of one command, in milliseconds."""

from __future__ import annotations

import subprocess
import time


def wall_ms(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - start) * 1000
