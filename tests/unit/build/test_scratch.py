"""Scratch files and folders: held by the process that made them, swept once it is gone however
it ended (builder/scratch.py; its users are the wheel cache and the Python layers' workdir)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from builder import scratch

MAKE = """
import sys, time
from pathlib import Path
from builder import scratch
parent = Path(sys.argv[1])
with scratch.folder(parent, "layers-") as folder, scratch.file(parent, ".fetch-") as file:
    (folder / "tree").mkdir()
    (folder / "tree" / "big").write_bytes(b"x" * 1000)
    file.write_bytes(b"half a wheel")
    print(folder, file, flush=True)
    time.sleep(120)
"""


def test_what_a_killed_process_left_is_swept_and_nothing_held_is(tmp_path: Path) -> None:
    maker = subprocess.Popen(
        [sys.executable, "-c", MAKE, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[3],
    )
    try:
        assert maker.stdout is not None
        folder, file = map(Path, maker.stdout.readline().split())
        assert scratch.sweep(tmp_path) == []  # held by a live process
        assert folder.is_dir() and file.is_file()
        os.kill(maker.pid, signal.SIGKILL)
        maker.wait()
        assert scratch.sweep(tmp_path, ".fetch-") == [file.name]
        assert scratch.sweep(tmp_path) == [folder.name]
        assert list(tmp_path.iterdir()) == []
    finally:
        maker.kill()
        maker.wait()
        if maker.stdout is not None:
            maker.stdout.close()


def test_a_block_removes_its_own_scratch_and_keeps_a_file_renamed_into_place(
    tmp_path: Path,
) -> None:
    with scratch.folder(tmp_path / "tmp", "layers-") as folder:
        (folder / "a").write_text("a")
    assert list((tmp_path / "tmp").iterdir()) == []
    with scratch.file(tmp_path, ".fetch-") as staging:
        staging.write_text("whole")
        staging.replace(tmp_path / "wheel.whl")
    assert [path.name for path in tmp_path.iterdir() if path.is_file()] == ["wheel.whl"]


def test_a_folder_that_cannot_be_swept_is_no_error(tmp_path: Path) -> None:
    assert scratch.sweep(tmp_path / "absent") == []
