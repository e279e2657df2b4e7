"""Shared by the benchmark scripts: the installed command, and wall time of one run in ms.

Importing it points the benchmarks, and the commands they start, at the engine scripts/infra
started (never the user's: a benchmark builds and removes images).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.infra import BASE as TEST_BASE  # the Debian base with Python scripts/infra provides
from tests.infra import DEBIAN_MIRROR, ENGINE, REGISTRY

__all__ = ["DEBIAN_MIRROR", "REGISTRY", "TEST_BASE", "reprobuild", "timed", "wall_ms"]

os.environ["DOCKER_HOST"] = ENGINE


def reprobuild(project: Path, *args: str) -> list[str]:
    """The console script users run (no runpy), or `python -m builder` where none is installed."""
    installed = shutil.which("reprobuild", path=str(Path(sys.executable).parent))
    runner = [installed] if installed else [sys.executable, "-m", "builder"]
    return [*runner, "-C", str(project), *args]


def wall_ms(argv: list[str], *, quiet: bool = False) -> float:
    """One run's wall time; stdout (and with quiet, stderr) discarded."""
    start = time.perf_counter()
    stderr = subprocess.DEVNULL if quiet else None
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=stderr)
    return (time.perf_counter() - start) * 1000


def timed(argv: list[str], **kwargs: Any) -> tuple[float, str]:
    """One run's wall time in seconds and its stdout; stderr kept for a failure's message."""
    start = time.perf_counter()
    result = subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)
    return time.perf_counter() - start, result.stdout
