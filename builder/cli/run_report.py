"""The `run` verb's terminal side: the command's output relayed as it comes, then the notes and
where the record is. Both parsers end here, the entry point's fast path for a plain `run`
(launch.py) and click's `run` (cli/run.py), so it keeps to the standard library like them.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing's own flag, without importing typing on `run`'s way to the start
if TYPE_CHECKING:
    from typing import TextIO

    from builder.run.run import RunPlan


def run_and_report(run_plan: RunPlan) -> int:
    """Run the plan in the engine at $DOCKER_HOST (or the local socket); the command's exit
    code."""
    from builder.engine.wire import Wire
    from builder.run import run

    outcome = run.execute(Wire(), run_plan, relay)
    notes = list(outcome.notes)
    if CLOSED:
        names = " and ".join(sorted(CLOSED))
        log = "stdout.log" if "stdout" in CLOSED else "stderr.log"
        folder = str(outcome.record).rpartition("/")[0]
        notes.append(
            f"{names} closed while the command ran (a reader such as `head` left): its output "
            f"stopped there, the command ran to its end; the whole output is in {folder}/{log}"
        )
    for note in [*notes, f"exit {outcome.code}; record {outcome.record}"]:
        write("stderr", f"note: {note}\n".encode())
    return outcome.code


# The streams whose reader went away. The training goes on without them: a closed pipe must not
# cost a run its end or its record, and the logs in the run folder keep every byte.
CLOSED: set[str] = set()


def relay(data: bytes, to_stderr: bool) -> None:
    write("stderr" if to_stderr else "stdout", data)


def write(name: str, data: bytes) -> None:
    """Write to sys.stdout or sys.stderr and flush, or, once its reader is gone, nothing."""
    if name in CLOSED:
        return
    stream: TextIO = getattr(sys, name)
    try:
        stream.buffer.write(data)
        stream.flush()
    except BrokenPipeError:
        CLOSED.add(name)
        # The interpreter flushes the stream again at exit: writes now go nowhere.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
