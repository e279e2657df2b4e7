"""One build of a project at a time: the lock file in the project's work folder, held by real
processes (the kernel's flock, released however its holder ends)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from builder.build import projectlock

HOLD = """
import sys, time
from pathlib import Path
from builder.build import projectlock
with projectlock.hold(Path(sys.argv[1]), print):
    print("held", flush=True)
    time.sleep(120)
"""


def holder(project: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(project)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[3],
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "held\n"
    return process


def test_the_holder_writes_its_pid_and_empties_the_file_when_done(tmp_path: Path) -> None:
    notes: list[str] = []
    lock_file = tmp_path / projectlock.LOCK_FILE
    with projectlock.hold(tmp_path, notes.append):
        assert lock_file.read_text() == f"{os.getpid()}\n"
    assert lock_file.read_text() == "" and notes == []
    with projectlock.hold(tmp_path, notes.append):  # taken again at once: nothing stale
        pass
    assert notes == []


def test_a_second_build_waits_names_the_first_and_goes_on_once_it_is_killed(
    tmp_path: Path,
) -> None:
    first = holder(tmp_path)
    notes: list[str] = []
    held = threading.Event()

    def second() -> None:
        with projectlock.hold(tmp_path, notes.append):
            held.set()

    thread = threading.Thread(target=second)
    thread.start()
    try:
        assert not held.wait(1.0)  # waits while the first holds the lock
        assert notes == [
            f"waiting for another build of this project (pid {first.pid}) to finish: it holds "
            f"the build lock {tmp_path / projectlock.LOCK_FILE}"
        ]
        os.kill(first.pid, signal.SIGKILL)
        assert held.wait(10)  # the kernel let go of the killed holder's lock
    finally:
        first.kill()
        first.wait()
        assert first.stdout is not None
        first.stdout.close()
        thread.join(10)


def test_a_missing_project_folder_is_left_to_the_spec_error(tmp_path: Path) -> None:
    with projectlock.hold(tmp_path / "absent", print):
        pass
    assert not (tmp_path / "absent").exists()
