"""Cost of the runtime hook's optimizer step trace (REPROBUILD_TRACE) on a small CPU training run.

Target: tracing at the default interval (DEFAULT_TRACE_INTERVAL in builder/smoke/hook.py) costs
<= 3% of the run's time.

Each run is a fresh interpreter that loads the hook as an image does (a .pth file in a site
directory) with REPROBUILD_REPORT set, and trains an MNIST-sized MLP (784-256-256-10, 0.27 M
parameters, SGD with momentum, batch 64) for --steps steps on the CPU. The baseline has no
REPROBUILD_TRACE; the others trace every N steps for each candidate N; a run without
REPROBUILD_REPORT shows what the report itself costs. torch gets one thread (REPROBUILD_THREADS,
--threads). The ways take turns (one warm-up run each first). Three times are taken of each run:
the process's wall time, the training loop's wall time, and the loop's CPU time (process time,
which other work on a shared machine disturbs least; with one torch thread it is the loop's
work). A way's cost is the median over rounds of its time against the baseline's in the same
round, less 1; the verdict is on the CPU time, the wall costs printed beside it.

Last, one trace entry's hashing is timed on its own, with the bytes it reads: an entry costs
about (parameter + optimizer state bytes) / (sha256 throughput), so the expected cost at
interval N, here or at another model size or step time (a GPU's), is entry time / (N x step
time); it is printed beside the measured costs.
    python benchmarks/trace_cost.py [--runs N] [--steps N] [--threads N] [--intervals 1,10,...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from builder.render import context, plan
from builder.smoke.hook import DEFAULT_TRACE_INTERVAL

TARGET = 0.03
BASELINE = "report, no trace"
MEASURES = ("wall", "loop", "cpu")  # process wall, training loop wall, training loop CPU time
TRAIN = """
import json, sys, time
import torch
torch.manual_seed(0)
model = torch.nn.Sequential(
    torch.nn.Linear(784, 256), torch.nn.ReLU(),
    torch.nn.Linear(256, 256), torch.nn.ReLU(),
    torch.nn.Linear(256, 10),
)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
inputs, labels = torch.randn(64, 784), torch.randint(0, 10, (64,))
steps = int(sys.argv[1])
start, cpu = time.perf_counter(), time.process_time()
for _ in range(steps):
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(model(inputs), labels).backward()
    optimizer.step()
times = {"loop": time.perf_counter() - start, "cpu": time.process_time() - cpu}
if sys.argv[2] == "entry":  # one trace entry's hashing, on its own
    import _reprobuild_determinism as hook
    start = time.perf_counter()
    for _ in range(50):
        hook.params_hash(optimizer), hook.state_hash(optimizer, torch)
    times["entry"] = (time.perf_counter() - start) / 50
    state = [value for values in optimizer.state.values() for value in values.values()]
    times["bytes"] = sum(t.numel() * t.element_size() for t in [*model.parameters(), *state])
print(json.dumps(times))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads; 0: torch's choice")
    parser.add_argument("--intervals", default="1,10,50,100,500")
    options = parser.parse_args()
    intervals = [int(text) for text in options.intervals.split(",")]
    ways: dict[str, dict[str, str] | None] = {"no report": None, BASELINE: {}}
    ways.update({f"trace every {n}": {"REPROBUILD_TRACE": str(n)} for n in intervals})
    with tempfile.TemporaryDirectory(prefix="reprobuild-trace-") as folder:
        root = Path(folder)
        site = root / "site-packages"
        site.mkdir()
        (site / plan.HOOK_MODULE).write_text(context.HOOK_SOURCE.read_text())
        (site / plan.HOOK_PTH).write_text(plan.HOOK_PTH_TEXT)
        script = root / "train.py"
        script.write_text(f"import site; site.addsitedir({str(site)!r})\n{TRAIN}")
        times = interleaved(ways, script, root, options)
        entry = train(script, root / "entry", {}, options, "entry")
    step = statistics.median(times[BASELINE]["loop"]) / options.steps
    entry_s, megabytes = entry["entry"], entry["bytes"] / 1e6
    threads = options.threads or "torch's choice of"
    print(
        f"{options.steps} steps of {step * 1000:.2f} ms (training loop, no trace), {threads} "
        f"torch threads, {len(os.sched_getaffinity(0))} cores; {options.runs} rounds, the ways "
        "taking turns; cost: median over rounds of time / the baseline's in that round, less 1"
    )
    print(
        f"one trace entry: {entry_s * 1000:.2f} ms hashing {megabytes:.2f} MB "
        f"({megabytes / entry_s / 1000:.2f} GB/s); expected cost at interval N: "
        f"{entry_s * 1000:.2f} ms / (N x {step * 1000:.2f} ms)"
    )
    header = ("wall s", "wall cost", "loop cost", "cpu cost", "expected")
    print(f"{'way':<18}", *(f"{text:>10}" for text in header))
    costs = {}
    for name, env in ways.items():
        cost = {m: paired_cost(times[name][m], times[BASELINE][m]) for m in MEASURES}
        costs[name] = cost["cpu"]
        interval = (env or {}).get("REPROBUILD_TRACE")
        expected = f"{entry_s / (int(interval) * step):+.1%}" if interval else ""
        print(
            f"{name:<18} {statistics.median(times[name]['wall']):>10.2f}",
            *(f"{cost[m]:>+10.1%}" for m in MEASURES),
            f"{expected:>10}",
        )
    meeting = [n for n in intervals if costs[f"trace every {n}"] <= TARGET]
    print(f"smallest interval within {TARGET:.0%} (cpu cost): {min(meeting, default=None)}")
    name = f"trace every {DEFAULT_TRACE_INTERVAL}"
    if name in costs:
        verdict = "met" if costs[name] <= TARGET else "MISSED"
        print(
            f"default interval {DEFAULT_TRACE_INTERVAL}: cpu cost {costs[name]:+.1%} "
            f"(target <= {TARGET:.0%}: {verdict})"
        )


def paired_cost(times: list[float], baseline: list[float]) -> float:
    """The median over rounds of the ratio to the baseline's time in the same round, less 1."""
    return statistics.median(a / b for a, b in zip(times, baseline, strict=True)) - 1


def interleaved(
    ways: dict[str, dict[str, str] | None],
    script: Path,
    root: Path,
    options: argparse.Namespace,
) -> dict[str, dict[str, list[float]]]:
    """Each way's times, one of each measure a round; the ways take turns, one warm-up run each."""
    times: dict[str, dict[str, list[float]]] = {
        name: {measure: [] for measure in MEASURES} for name in ways
    }
    for run in range(options.runs + 1):
        for index, (name, env) in enumerate(ways.items()):
            measured = train(script, root / f"{run}-{index}", env, options, "time")
            for measure in MEASURES if run else ():
                times[name][measure].append(measured[measure])
    return times


def train(
    script: Path, report: Path, env: dict[str, str] | None, options: argparse.Namespace, what: str
) -> dict[str, float]:
    """One fresh interpreter's times; env None: without REPROBUILD_REPORT."""
    environment = {name: value for name, value in os.environ.items() if "REPROBUILD_" not in name}
    if options.threads:
        environment["REPROBUILD_THREADS"] = str(options.threads)
    if env is not None:
        report.mkdir()
        environment.update(env, REPROBUILD_REPORT=str(report))
    argv = [sys.executable, "-W", "ignore", str(script), str(options.steps), what]
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, env=environment, check=True)
    measured: dict[str, float] = json.loads(result.stdout)
    measured["wall"] = time.perf_counter() - start
    return measured


if __name__ == "__main__":
    main()
