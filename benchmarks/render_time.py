"""Wall time of `reprobuild render` from an existing lock, against the 100 ms target plus the
interpreter's own start (measured here as `python -c pass`).

Measured as installed: the package's bytecode compiled (pip does it at install time; an
environment with PYTHONDONTWRITEBYTECODE never writes it, so it is compiled here first) and the
compiled templates cached by an earlier render (the first run's time is printed too).
    python benchmarks/render_time.py [--runs N]
"""

from __future__ import annotations

import argparse
import compileall
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from timing import reprobuild, wall_ms

TARGET_MS = 100.0
EXAMPLE = Path(__file__).resolve().parents[1] / "images" / "example"
PACKAGE = Path(__file__).resolve().parents[1] / "builder"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory(prefix="reprobuild-render-") as folder:
        project = Path(folder) / "project"
        project.mkdir()
        for name in ("reprobuild.toml", "reprobuild.lock"):
            shutil.copyfile(EXAMPLE / name, project / name)
        render = reprobuild(project, "render")
        bare = [sys.executable, "-c", "pass"]
        compileall.compile_dir(str(PACKAGE), quiet=1)
        first = wall_ms(render)
        interpreter = statistics.median(wall_ms(bare) for _ in range(runs))
        median = statistics.median(wall_ms(render) for _ in range(runs))
    own = median - interpreter
    verdict = "met" if own <= TARGET_MS else "MISSED"
    print(f"render median {median:.1f} ms, interpreter start {interpreter:.1f} ms")
    print(f"first render (templates compiled, then cached): {first:.1f} ms")
    print(f"render itself {own:.1f} ms")
    print(f"render itself / target ({TARGET_MS:.0f} ms): {own / TARGET_MS:.2f}  ({verdict})")


if __name__ == "__main__":
    main()
