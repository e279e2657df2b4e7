"""`reprobuild gc` as users run it where it cannot start: no lock, no engine, a bad --keep."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from builder.lock import lockfile
from builder.spec.file import locate
from tests.cli import reprobuild
from tests.locks import make_lock

SPEC = 'name = "lab/small"\npython = "3.11"\ntorch = "2.5.1"\ncpu_only = true\n'
NO_ENGINE = "unix:///nonexistent/docker.sock"


def gc(project: Path, *args: str) -> tuple[int, str, str]:
    environment = {**os.environ, "DOCKER_HOST": NO_ENGINE}
    result = reprobuild("-C", str(project), "gc", *args, env=environment)
    return result.returncode, result.stdout, result.stderr


def test_without_a_lock_it_says_to_make_one(tmp_path: Path) -> None:
    (tmp_path / "reprobuild.toml").write_text(SPEC)
    assert gc(tmp_path, "--dry-run") == (
        1,
        "",
        f"error: no lock at {tmp_path / 'reprobuild.lock'}: run `reprobuild lock` first.\n",
    )


def test_without_an_engine_it_names_the_engine_and_the_fix(tmp_path: Path) -> None:
    (tmp_path / "reprobuild.toml").write_text(SPEC)
    spec_path, table, _ = locate(tmp_path)
    lock = replace(make_lock(), spec_hash=lockfile.spec_hash_at(spec_path, table))
    (tmp_path / lockfile.LOCK_FILE).write_text(lockfile.dumps(lock))
    assert gc(tmp_path) == (
        1,
        "",
        f"error: no Docker engine answers at {NO_ENGINE} (/nonexistent/docker.sock: No such file "
        "or directory). Start one: on Debian `apt-get install docker.io` then `dockerd &` (or "
        "`systemctl start docker`); or set DOCKER_HOST to a running engine.\n",
    )


def test_keep_is_a_count(tmp_path: Path) -> None:
    code, out, err = gc(tmp_path, "--keep", "-1")
    assert (code, out) == (2, "")
    assert err.splitlines()[-1] == (
        "Error: Invalid value for '--keep': -1 is not in the range x>=0."
    )
