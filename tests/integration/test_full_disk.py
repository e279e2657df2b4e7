"""A full disk, a full inode table and a read-only project, each where reprobuild writes: the
wheel cache during a download, the cache and TMPDIR during normalisation, the project when the
lock and a run's record are written, the runs/ folder and a run's outputs folder.

Each full file system is a small tmpfs mounted for the test (and unmounted after it). Each time:
the command as users run it, exit 1, one paragraph that names the path, the cause and the fix,
no traceback; and nothing half-written (no partial lock, record or run.json, no temporary file,
no cache entry that claims a download or a layer that did not finish). The builds are the small
spec of test_build.py, under a name of their own, whose images are removed afterwards.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import subprocess
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from builder import layout
from builder.lock import lockfile
from tests import cli
from tests.conftest import LocalIndex
from tests.infra import BASE
from tests.integration.test_build import served_project

NAME = "reprobuild-test/full-disk"
TITLE = f"{layout.TITLE_LABEL}={NAME}"
TORCH = "torch-2.5.1-py3-none-any.whl"
MIB = 1 << 20

Mount = Callable[..., Path]


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Mount]:
    """mount(name, size, *options): a tmpfs of `size` (mount's units: 1m, 64k) at
    tmp_path/name; every one is unmounted after the test."""
    mounted: list[Path] = []

    def mount(name: str, size: str, *options: str) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        settings = ",".join([f"size={size}", "mode=0755", *options])
        subprocess.run(["mount", "-t", "tmpfs", "-o", settings, "tmpfs", str(folder)], check=True)
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", str(folder)], check=True)


def fill(folder: Path) -> None:
    """Write zeros into `folder` until its file system has no byte left."""
    with (folder / ".filler").open("wb", buffering=0) as handle:
        block = bytes(64 * 1024)
        try:
            while True:
                handle.write(block)
        except OSError as error:
            assert error.errno == errno.ENOSPC
    with (folder / ".filler-tail").open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0")
        except OSError as error:
            assert error.errno == errno.ENOSPC


def fill_inodes(folder: Path) -> None:
    """Make empty files in `folder` until its file system can make no more."""
    for index in range(100_000):
        try:
            (folder / f".inode-{index}").touch()
        except OSError as error:
            assert error.errno == errno.ENOSPC
            return
    raise AssertionError(f"{folder} never ran out of inodes")


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The error paragraph: one line, the last of stderr."""
    lines = result.stderr.splitlines()
    assert lines and lines[-1].startswith("error: "), result.stderr
    return lines[-1]


def temporary_files(folder: Path) -> list[str]:
    """What an interrupted write would leave: atomic writes' temp files, a download's staging
    file, scratch folders of normalisation."""
    patterns = (".*.tmp", ".fetch-*", "layers-*")
    return sorted(str(path) for pattern in patterns for path in folder.rglob(pattern))


# Builds: the small project, its stand-in torch a wheel of some size served over HTTP.


def project_with_wheels(folder: Path, index: LocalIndex, torch_size: int) -> Path:
    """A project ready to build, its torch `torch_size` bytes of random data, served by
    `index`."""
    block = random.Random(3).randbytes(min(torch_size, MIB))
    payload = block * (torch_size // MIB) + block[: torch_size % MIB]
    return served_project(folder, NAME, payload, index.root, index.url)


def build(project: Path, **env: Path) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, **{name: str(path) for name, path in env.items()}}
    return cli.reprobuild("-C", str(project), "build", "--plain", env=environment, timeout=300)


@pytest.fixture
def our_images(engine_client: Any) -> Iterator[None]:
    """Every image of this file's builds (they carry its name as their title) is removed after
    the test, by ID."""
    yield
    for image_id in engine_client.client.api.images(all=True, quiet=True, filters={"label": TITLE}):
        engine_client.remove_image(image_id)


def our_names(engine_client: Any) -> list[str]:
    return [
        tag
        for image in engine_client.client.api.images(name=NAME)
        for tag in image.get("RepoTags") or []
    ]


def test_a_full_wheel_cache_stops_the_download_and_keeps_no_part_of_it(
    tmp_path: Path, tmpfs: Mount, local_index: LocalIndex, engine_client: Any, test_base: str
) -> None:
    project = project_with_wheels(tmp_path / "project", local_index, torch_size=2 * MIB)
    cache = tmpfs("cache", "1m")
    result = build(project, XDG_CACHE_HOME=cache)
    assert result.returncode == 1
    wheels = cache / "reprobuild" / "wheels"
    assert error_line(result) == (
        f"error: cannot write {wheels / TORCH}: no space left on device (ENOSPC). Free space on "
        "that filesystem, or set XDG_CACHE_HOME to a folder on a filesystem with room (the wheel "
        "cache is under it)."
    )
    assert not (wheels / TORCH).exists()
    assert not (wheels / ".verified" / TORCH).exists()  # no stamp claims the wheel
    assert temporary_files(cache) == [] and temporary_files(project) == []
    assert not (project / layout.RECORD_FILE).exists()
    assert our_names(engine_client) == []


def assert_no_layer_made(cache: Path, project: Path, engine_client: Any) -> None:
    """A build stopped while the dependencies image was assembled: its scratch folder gone, no
    Python layer known by its key, no record, no name of the project in the engine."""
    work = cache / "reprobuild" / "tmp"
    assert list(work.iterdir()) == []
    assert temporary_files(cache) == [] and temporary_files(project) == []
    layers = cache / "reprobuild" / "layers"
    assert not layers.exists() or list(layers.iterdir()) == []
    assert not (project / layout.RECORD_FILE).exists()
    assert our_names(engine_client) == []


def work_full(cache: Path) -> str:
    return (
        f"error: cannot write in {cache}/reprobuild/tmp: no space left on device (ENOSPC). Free "
        "space on that filesystem, or set XDG_CACHE_HOME to a folder on a filesystem with room "
        "(the Python layers are made under it, as large as the installed packages)."
    )


@pytest.mark.usefixtures("test_base", "our_images")
def test_a_cache_too_small_for_the_exported_layers_stops_the_build_cleanly(
    tmp_path: Path, tmpfs: Mount, local_index: LocalIndex, engine_client: Any
) -> None:
    # The steps after the Python layers are read back from an export, every layer of it through
    # the cache (the base's too, some 200 MB): 5 MiB hold the wheels, not that.
    project = project_with_wheels(tmp_path / "project", local_index, torch_size=MIB)
    cache = tmpfs("cache", "5m")
    result = build(project, XDG_CACHE_HOME=cache)
    assert result.returncode == 1
    assert "dependencies: the steps after the Python layers" in result.stderr
    assert error_line(result) == work_full(cache)
    assert_no_layer_made(cache, project, engine_client)
    # With room, the same cache and project build.
    subprocess.run(["mount", "-o", "remount,size=1g", str(cache)], check=True)
    again = build(project, XDG_CACHE_HOME=cache)
    assert again.returncode == 0, again.stderr
    assert (project / layout.RECORD_FILE).is_file()


@pytest.mark.usefixtures("test_base", "our_images")
def test_a_cache_that_fills_while_a_python_layer_is_made_stops_the_build_cleanly(
    tmp_path: Path, tmpfs: Mount, local_index: LocalIndex, engine_client: Any
) -> None:
    # Room for the wheel and the export read back (the base layer, some 200 MB, then deleted),
    # not for the wheel and the tree it installs, made while the image is sent to the engine.
    project = project_with_wheels(tmp_path / "project", local_index, torch_size=360 * MIB)
    cache = tmpfs("cache", "640m")
    result = build(project, XDG_CACHE_HOME=cache)
    assert result.returncode == 1
    assert "dependencies: installing torch (1 wheel)" in result.stderr, result.stderr
    assert error_line(result) == work_full(cache)
    assert_no_layer_made(cache, project, engine_client)


NOISY_STEP = (
    "RUN head -c 2000000 /dev/urandom > /opt/noise && touch /opt/built-at\n"  # dated now
    "WORKDIR {{ code }}\n"
)


@pytest.mark.usefixtures("test_base", "our_images")
def test_a_full_tmpdir_stops_normalisation_and_leaves_no_layer_or_name(
    tmp_path: Path, tmpfs: Mount, local_index: LocalIndex, engine_client: Any
) -> None:
    project = project_with_wheels(tmp_path / "project", local_index, torch_size=0)
    override = project / "reprobuild-templates"
    override.mkdir()
    packaged = Path(__file__).parents[2] / "templates" / "Dockerfile.j2"
    text = packaged.read_text().replace("WORKDIR {{ code }}\n", NOISY_STEP)
    (override / "Dockerfile.j2").write_text(text)
    temporary = tmpfs("tmp", "1m")
    result = build(project, XDG_CACHE_HOME=tmp_path / "cache", TMPDIR=temporary)
    assert result.returncode == 1
    assert "normalising: rewriting" in result.stderr
    assert error_line(result) == (
        f"error: cannot write in {temporary}: no space left on device (ENOSPC). Free space on "
        "that filesystem, or set TMPDIR to a folder on a filesystem with room (layers that must "
        "be rewritten are written there, as large as the layers)."
    )
    assert list(temporary.iterdir()) == []
    assert temporary_files(project) == []
    assert not (project / layout.RECORD_FILE).exists()
    image_names = [name for name in our_names(engine_client) if ":deps-" not in name]
    assert image_names == []  # the dependencies image is complete; no name for the image


# The lock: uv resolves from a local index of stand-in wheels (torch and the CUDA libraries
# it names), the base is the local registry's.

CUDA_WHEELS = {
    "nvidia-cuda-runtime-cu12": "12.4.127",
    "nvidia-cudnn-cu12": "9.1.0.70",
    "nvidia-nccl-cu12": "2.21.5",
    "triton": "3.1.0",  # torch's own pin, which the lock pins beside torch
}
LOCK_SPEC = (
    f'name = "{NAME}"\npython = "3.11"\ntorch = "2.5.1"\nbase = "{BASE}"\n'
    '[target]\ndriver = "535.104.05"\ngpus = ["A100"]\n'
)


def index_wheel(root: Path, name: str, version: str, requires: list[str]) -> None:
    """One wheel in a PEP 503 index under `root`, with its hash and its metadata beside it."""
    folder = root / name
    folder.mkdir(parents=True)
    distribution = name.replace("-", "_")
    tag = "cp311-cp311" if name == "torch" else "py3-none"
    filename = f"{distribution}-{version}-{tag}-manylinux1_x86_64.whl"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {line}\n" for line in requires
    )
    with zipfile.ZipFile(folder / filename, "w") as archive:
        archive.writestr(f"{distribution}-{version}.dist-info/METADATA", metadata)
        if name == "torch":
            archive.writestr("torch/lib/libtorch_python.so", b"\x00sm_80 sm_90\x00")
    (folder / f"{filename}.metadata").write_text(metadata)
    digest = hashlib.sha256((folder / filename).read_bytes()).hexdigest()
    metadata_digest = hashlib.sha256(metadata.encode()).hexdigest()
    (folder / "index.html").write_text(
        f'<a href="{filename}#sha256={digest}" data-dist-info-metadata="sha256={metadata_digest}">'
        f"{filename}</a>\n"
    )


def test_a_full_project_keeps_its_lock_whole(
    tmp_path: Path, tmpfs: Mount, local_index: LocalIndex, test_base: str
) -> None:
    simple = local_index.root / "simple"
    for name, version in CUDA_WHEELS.items():
        index_wheel(simple, name, version, [])
    requires = [f"{name}=={version}" for name, version in CUDA_WHEELS.items()]
    index_wheel(simple, "torch", "2.5.1", requires)
    project = tmpfs("project", "256k")
    (project / "reprobuild.toml").write_text(LOCK_SPEC)
    lock = ["-C", str(project), "lock", "--index-url", f"{local_index.url}/simple"]
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    first = cli.reprobuild(*lock, env=env)
    assert first.returncode == 0, first.stderr
    written = (project / lockfile.LOCK_FILE).read_bytes()
    fill(project)
    again = cli.reprobuild(*lock, "--upgrade", env=env)
    assert again.returncode == 1
    assert "python: 5 wheels pinned with sha256" in again.stderr  # it failed at the write
    assert error_line(again) == (
        f"error: cannot write {project / lockfile.LOCK_FILE}: no space left on device (ENOSPC). "
        "Free space on that filesystem, then run the command again."
    )
    assert (project / lockfile.LOCK_FILE).read_bytes() == written
    assert temporary_files(project) == []


# Runs: the bootstrapped base runs the command; started as root on a project root owns, the
# image's own user runs it.

RUNS_FIX = (
    "or run from a copy of the project you can write to (each run's record goes in its runs/ "
    "folder)."
)


def run(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli.reprobuild("-C", str(project), "run", "--image", BASE, *args)


def project_on(folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "train.py").write_text("print('training')\n")
    return folder


def test_a_project_filled_by_the_run_gets_no_run_json_and_keeps_the_outputs(
    tmpfs: Mount, test_base: str
) -> None:
    project = project_on(tmpfs("project", "1m"))
    script = "cat /dev/zero > $REPROBUILD_OUTPUTS/filler 2>/dev/null; exit 0"
    result = run(project, "--", "sh", "-c", script)
    assert result.returncode == 1
    (folder,) = (project / "runs").iterdir()
    assert error_line(result) == (
        f"error: cannot write {folder}/run.json: no space left on device (ENOSPC). Free space on "
        f"that filesystem, {RUNS_FIX} The command ran (exit 0) but has no record; what it wrote "
        f"to /outputs is in {folder}/outputs."
    )
    assert sorted(path.name for path in folder.iterdir()) == ["outputs"]  # logs, report gone
    assert [path.name for path in (folder / "outputs").iterdir()] == ["filler"]
    assert temporary_files(project) == []


def test_a_log_that_cannot_be_saved_ends_the_run_without_a_record(
    tmpfs: Mount, test_base: str
) -> None:
    project = project_on(tmpfs("project", "1m"))
    script = "cat /dev/zero > $REPROBUILD_OUTPUTS/filler 2>/dev/null; seq 1 5000; exit 4"
    result = run(project, "--", "sh", "-c", script)
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == "5000"  # shown whole, though not saved
    (folder,) = (project / "runs").iterdir()
    assert error_line(result) == (
        f"error: cannot write {folder}/stdout.log: no space left on device (ENOSPC). Free space "
        f"on that filesystem, {RUNS_FIX} The command ran (exit 4) but has no record; what it "
        f"wrote to /outputs is in {folder}/outputs."
    )
    assert sorted(path.name for path in folder.iterdir()) == ["outputs"]


def test_a_project_without_room_for_runs_starts_nothing(tmpfs: Mount, test_base: str) -> None:
    project = project_on(tmpfs("project", "1m", "nr_inodes=8"))
    fill_inodes(project)
    result = run(project, "--", "echo", "never")
    assert result.returncode == 1 and result.stdout == ""
    assert error_line(result) == (
        f"error: cannot create {project}/runs: no space left on device (ENOSPC). Free space on "
        f"that filesystem, {RUNS_FIX}"
    )
    assert not (project / "runs").exists()


def test_an_outputs_folder_without_room_starts_nothing(
    tmp_path: Path, tmpfs: Mount, test_base: str
) -> None:
    project = project_on(tmp_path / "project")
    outputs = tmpfs("outputs", "1m", "nr_inodes=8")
    fill_inodes(outputs)
    result = run(project, "--outputs", str(outputs / "model"), "--", "echo", "never")
    assert result.returncode == 1 and result.stdout == ""
    assert error_line(result) == (
        f"error: cannot create {outputs}/model: no space left on device (ENOSPC). Free space on "
        "that filesystem, or give --outputs another folder."
    )
    assert not (project / "runs").exists()


def test_a_command_that_fills_its_outputs_folder_is_recorded_with_its_own_exit_code(
    tmp_path: Path, tmpfs: Mount, test_base: str
) -> None:
    project = project_on(tmp_path / "project")
    outputs = tmpfs("outputs", "256k")
    script = "cat /dev/zero > $REPROBUILD_OUTPUTS/filler"
    result = run(project, "--outputs", str(outputs), "--", "sh", "-c", script)
    assert result.returncode == 1  # cat's own failure
    assert "No space left on device" in result.stderr
    (record_path,) = (project / "runs").glob("*/run.json")
    record = json.loads(record_path.read_text())
    assert record["exit_code"] == 1
    (entry,) = record["outputs"]["entries"]
    assert entry["path"] == "filler" and 0 < entry["size"] <= 256 * 1024


def test_a_read_only_project_names_its_runs_folder(tmpfs: Mount, test_base: str) -> None:
    project = project_on(tmpfs("project", "1m"))
    subprocess.run(["mount", "-o", "remount,ro", str(project)], check=True)
    result = run(project, "--", "echo", "never")
    assert result.returncode == 1 and result.stdout == ""
    assert error_line(result) == (
        f"error: cannot create {project}/runs: read-only file system (EROFS). Mount {project} "
        f"read-write, {RUNS_FIX}"
    )
