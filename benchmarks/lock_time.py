"""Wall time of `reprobuild lock` for a torch 2.5.1 GPU spec with ten common packages.

Cold: an empty uv cache. Warm: the same cache again (`lock --upgrade` re-resolves everything).
The base is the test registry's bootstrapped Debian image (scripts/infra up), so the registry
round trips and the engine probe are part of the figure. Targets: warm <= 3 s, cold <= 15 s.
    python benchmarks/lock_time.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from timing import TEST_BASE, reprobuild, timed

TARGETS_S = {"cold": 15.0, "warm": 3.0}
SPEC = f"""name = "bench/train"
python = "3.11"
torch = "2.5.1"
base = "{TEST_BASE}"
packages = ["numpy", "pandas", "scipy", "matplotlib", "tqdm", "pyyaml", "requests", "pillow",
            "scikit-learn", "einops"]
[target]
driver = "535.104.05"
gpus = ["A100", "H100"]
"""


def lock_once(project: Path, cache: Path) -> float:
    command = reprobuild(project, "lock", "--upgrade")
    return timed(command, env={**os.environ, "UV_CACHE_DIR": str(cache)})[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory(prefix="reprobuild-bench-") as folder:
        project = Path(folder) / "project"
        project.mkdir()
        (project / "reprobuild.toml").write_text(SPEC)
        cold, warm = [], []
        for run in range(runs):
            cache = Path(folder) / f"cache-{run}"
            cold.append(lock_once(project, cache))
            warm.append(lock_once(project, cache))
    for name, samples in (("cold", cold), ("warm", warm)):
        median = statistics.median(samples)
        target = TARGETS_S[name]
        verdict = "met" if median <= target else "MISSED"
        runs_text = " ".join(f"{s:.2f}" for s in samples)
        print(f"{name}: median {median:.2f} s over {runs} runs ({runs_text})")
        print(f"{name} / target ({target:.0f} s): {median / target:.2f}  ({verdict})")


if __name__ == "__main__":
    main()
