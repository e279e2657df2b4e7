"""The command line as users run it, in a fresh process: exit code, output, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def reprobuild(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: int = 120,
    cwd: Path | None = None,
    prefix: tuple[str, ...] = (),  # a command that runs it, e.g. ("unshare", "--net")
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*prefix, sys.executable, "-m", "builder", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result
