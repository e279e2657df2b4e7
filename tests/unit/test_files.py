"""The one message for a write the file system refuses, and what passes through untouched (the
refusals themselves, on real full and read-only file systems, are in
tests/integration/test_full_disk.py)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from builder import files
from builder.errors import ExportError, WriteError


def refusal(number: int, filename: str | None = None) -> OSError:
    return OSError(number, os.strerror(number), filename)


@pytest.mark.parametrize(
    ("number", "said"),
    [
        (errno.ENOSPC, "no space left on device (ENOSPC). Free space on that filesystem"),
        (errno.EDQUOT, "disk quota exceeded (EDQUOT). Free space within your quota there"),
        (errno.EROFS, "read-only file system (EROFS). Mount {folder} read-write"),
        (errno.EACCES, "permission denied (EACCES). Make {folder} writable for this user"),
        (errno.EPERM, "operation not permitted (EPERM). Make {folder} writable for this user"),
    ],
)
def test_a_refusal_names_the_path_the_cause_and_the_fix(
    tmp_path: Path, number: int, said: str
) -> None:
    path = tmp_path / "runs" / "run.json"  # runs/ does not exist: its parent decides
    error = files.refused(path, refusal(number), "give --outputs another folder.")
    assert isinstance(error, WriteError)
    assert str(error) == (
        f"cannot write {path}: {said.format(folder=tmp_path)}, or give --outputs another folder."
    )


def test_without_another_way_out_the_fix_is_to_run_again(tmp_path: Path) -> None:
    error = files.refused(tmp_path, refusal(errno.ENOSPC), verb="write in")
    assert str(error) == (
        f"cannot write in {tmp_path}: no space left on device (ENOSPC). Free space on that "
        "filesystem, then run the command again."
    )


def test_another_failure_says_the_systems_reason_and_the_remedy(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "job.sh"
    with pytest.raises(ExportError) as raised:
        files.write_output(path, "x", "give -o a path in a folder that exists.", ExportError)
    assert str(raised.value) == (
        f"cannot write {path} (No such file or directory): give -o a path in a folder that exists."
    )


def test_writing_turns_a_refusal_into_the_message(tmp_path: Path) -> None:
    with pytest.raises(WriteError) as raised, files.writing(tmp_path / "wheel.whl", "x."):
        raise refusal(errno.EDQUOT)
    assert str(raised.value).startswith(f"cannot write {tmp_path / 'wheel.whl'}: disk quota")


def test_writing_lets_other_errors_and_other_files_refusals_pass(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError), files.writing(tmp_path):
        raise refusal(errno.ENOENT, str(tmp_path / "x"))
    elsewhere = refusal(errno.EACCES, "/etc/shadow")  # a file the block read
    with pytest.raises(PermissionError) as raised, files.writing(tmp_path, within=tmp_path):
        raise elsewhere
    assert raised.value is elsewhere
    inside = refusal(errno.EACCES, str(tmp_path / ".fetch-1"))
    with pytest.raises(WriteError), files.writing(tmp_path, within=tmp_path):
        raise inside


def test_a_write_that_fails_keeps_the_old_file_and_no_temporary_one(tmp_path: Path) -> None:
    path = tmp_path / "reprobuild.lock"
    path.write_text("old\n")
    with pytest.raises(TypeError):
        files.write_output(path, 1)  # type: ignore[arg-type]  # fails while it writes
    assert path.read_text() == "old\n"
    assert sorted(item.name for item in tmp_path.iterdir()) == ["reprobuild.lock"]
