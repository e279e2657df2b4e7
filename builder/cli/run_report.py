"""The `run` verb's terminal side: the command's output relayed as it comes, then the notes and
where the record is. Both parsers end here, the entry point's fast path for a plain `run`
(launch.py) and click's `run` (cli/run.py), so it keeps to the standard library like them.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing's own flag, without importing typing on `run`'s way to the start
if TYPE_CHECKING:
    from builder.run.run import RunPlan


def run_and_report(run_plan: RunPlan) -> int:
    """Run the plan in the engine at $DOCKER_HOST (or the local socket); the command's exit
    code."""
    from builder.engine.wire import Wire
    from builder.run import run

    outcome = run.execute(Wire(), run_plan, relay)
    for note in outcome.notes:
        sys.stderr.write(f"note: {note}\n")
    sys.stderr.write(f"note: exit {outcome.code}; record {outcome.record}\n")
    return outcome.code


def relay(data: bytes, to_stderr: bool) -> None:
    stream = sys.stderr.buffer if to_stderr else sys.stdout.buffer
    stream.write(data)
    stream.flush()
