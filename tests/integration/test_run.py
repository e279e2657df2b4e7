"""`reprobuild run` against the real engine, on the bootstrapped test base (any image runs; the
determinism of what runs is the smoke test's business)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from builder import layout
from tests import cli
from tests.infra import ENGINE, REGISTRY
from tests.records import make_record


def reprobuild(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli.reprobuild("-C", str(project), *args)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "train.py").write_text("print('training')\n")
    git = ["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "train.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "first"], check=True)
    return folder


def only_record(project: Path) -> dict[str, Any]:
    (record,) = (project / "runs").glob("*/run.json")
    loaded: dict[str, Any] = json.loads(record.read_text())
    return loaded


def test_a_run_streams_returns_the_exit_code_and_writes_its_record(
    project: Path, engine_client: Any, test_base: str
) -> None:
    (project / "notes.txt").write_text("not committed\n")
    script = "cat train.py; echo to-stderr >&2; id -u; pwd; touch /outputs/model.pt; exit 7"
    result = reprobuild(project, "run", "--image", test_base, "--", "sh", "-c", script)
    assert result.returncode == 7
    user = os.getuid() or layout.UID
    assert result.stdout == f"print('training')\n{user}\n/workspace\n"
    assert result.stderr.startswith("to-stderr\n")
    record = only_record(project)
    commit = subprocess.run(
        ["git", "-C", str(project), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert record["exit_code"] == 7 and record["command"] == ["sh", "-c", script]
    assert (record["git_commit"], record["git_dirty"]) == (commit, True)
    assert record["image"] == test_base
    assert record["image_id"] == engine_client.client.images.get(test_base).id
    assert record["started"] <= record["ended"] and record["gpus_requested"] is None
    model = Path(record["outputs"]["folder"]) / "model.pt"
    # Started as root on a project root owns, the image's own user ran it and root got its files.
    assert model.is_file() and model.stat().st_uid == os.getuid()
    assert record["outputs"]["entries"] == [
        {"path": "model.pt", "size": 0, "sha256": hashlib.sha256(b"").hexdigest()}
    ]
    assert (Path(record["outputs"]["folder"]).parent / "stderr.log").read_text() == "to-stderr\n"
    assert f"exit 7; record {project / 'runs'}" in result.stderr
    leftovers = engine_client.client.containers.list(all=True, filters={"ancestor": test_base})
    assert leftovers == []


def test_the_project_is_read_only_inside(project: Path, test_base: str) -> None:
    result = reprobuild(project, "run", "--image", test_base, "--", "touch", "/workspace/x")
    assert result.returncode == 1
    assert "Read-only file system" in result.stderr
    assert not (project / "x").exists()


def test_sigterm_reaches_the_command(project: Path, test_base: str) -> None:
    script = 'trap "echo got TERM; exit 42" TERM; echo ready; while :; do sleep 0.1; done'
    argv = [sys.executable, "-m", "builder", "-C", str(project), "run", "--image", test_base]
    process = subprocess.Popen(
        [*argv, "--", "sh", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "ready\n"
    process.send_signal(signal.SIGTERM)
    stdout, _ = process.communicate(timeout=60)
    assert process.returncode == 42
    assert stdout == "got TERM\n"
    assert only_record(project)["exit_code"] == 42


def test_a_closed_stdout_stops_the_output_not_the_command(project: Path, test_base: str) -> None:
    # `reprobuild run ... | head -1`: the reader leaves after one line; 50 000 lines follow.
    script = "seq 1 50000; echo finished >&2; touch /tmp/done; exit 3"
    argv = [sys.executable, "-m", "builder", "-C", str(project), "run", "--image", test_base]
    process = subprocess.Popen(
        [*argv, "--", "sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline() == b"1\n"
    process.stdout.close()
    stderr = process.stderr.read().decode()
    process.stderr.close()
    assert process.wait(timeout=120) == 3  # the command's own exit: it ran to its end
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr
    record = only_record(project)
    folder = next((project / "runs").iterdir())
    assert stderr.splitlines() == [
        "finished",
        "note: stdout closed while the command ran (a reader such as `head` left): its output "
        f"stopped there, the command ran to its end; the whole output is in {folder}/stdout.log",
        f"note: exit 3; record {folder}/run.json",
    ]
    assert record["exit_code"] == 3
    expected = "".join(f"{line}\n" for line in range(1, 50001)).encode()
    assert (folder / "stdout.log").read_bytes() == expected


def test_a_command_the_image_lacks_starts_nothing_and_leaves_nothing(
    project: Path, engine_client: Any, test_base: str
) -> None:
    result = reprobuild(project, "run", "--image", test_base, "--", "trian.py")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (
        f"error: {test_base} has no trian.py on its PATH: check the command's spelling, or give "
        f"its full path inside the image (`docker run --rm {test_base} which trian.py`).\n"
    )
    assert not (project / "runs").exists()
    assert engine_client.client.containers.list(all=True, filters={"ancestor": test_base}) == []


def test_a_failed_start_with_outputs_elsewhere_leaves_no_run_folder(
    project: Path, tmp_path: Path, test_base: str
) -> None:
    outputs = tmp_path / "outputs"
    result = reprobuild(
        project, "run", "--image", test_base, "--outputs", str(outputs), "--", "trian.py"
    )
    assert result.returncode == 1 and "has no trian.py on its PATH" in result.stderr
    assert not (project / "runs").exists()
    assert outputs.is_dir()  # the user's folder stays


def test_outputs_inside_the_project_do_not_make_it_dirty(project: Path, test_base: str) -> None:
    result = reprobuild(
        project, "run", "--image", test_base, "--outputs", str(project / "out"), "--",
        "sh", "-c", "echo weights > /outputs/model.pt",
    )  # fmt: skip
    assert result.returncode == 0
    assert (project / "out" / "model.pt").read_text() == "weights\n"
    assert only_record(project)["git_dirty"] is False


def test_gpus_on_an_engine_without_the_nvidia_runtime(
    project: Path, engine_client: Any, test_base: str
) -> None:
    if "nvidia" in engine_client.client.info().get("Runtimes", {}):
        pytest.skip("this engine has the NVIDIA runtime")
    result = reprobuild(project, "run", "--gpus", "all", "--image", test_base, "--", "true")
    assert result.returncode == 1
    assert result.stderr == (
        f"error: the Docker engine at {ENGINE} cannot give a container a GPU "
        '(could not select device driver "" with capabilities: [[gpu]]): it has no NVIDIA '
        "container runtime. Install the NVIDIA Container Toolkit (`nvidia-container-toolkit`), "
        "run `nvidia-ctk runtime configure --runtime=docker` and restart dockerd; or use --cpu "
        "for the CPU mode.\n"
    )
    assert not (project / "runs").exists()
    assert engine_client.client.containers.list(all=True, filters={"ancestor": test_base}) == []


def test_a_run_click_parses_runs_the_same(project: Path, test_base: str) -> None:
    """No `--`: the entry point leaves the parsing to click, and the run is the same."""
    result = reprobuild(project, "run", "--image", test_base, "sh", "-c", "echo $HOME; exit 5")
    assert (result.returncode, result.stdout) == (5, "/tmp\n")
    record = only_record(project)
    assert (record["exit_code"], record["command"]) == (5, ["sh", "-c", "echo $HOME; exit 5"])


def test_facts_that_cannot_be_read_leave_a_note_not_a_lost_run(
    project: Path, test_base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from builder.engine.wire import Wire
    from builder.run import run, runrecord

    def broken_driver(project: str, outputs: str | None, data: Any) -> runrecord.HostFacts:
        raise ValueError("driver version '555.x' is not a version")

    monkeypatch.setattr(runrecord, "gather", broken_driver)  # an NVML answer no host here gives
    printed: list[bytes] = []
    plan = run.RunPlan(project, test_base, ["sh", "-c", "echo done; exit 3"])
    outcome = run.execute(Wire(), plan, lambda data, _: printed.append(data))
    assert (outcome.code, b"".join(printed)) == (3, b"done\n")
    assert outcome.notes == [
        "the host's git state, GPUs and read-only data could not be read (ValueError: driver "
        "version '555.x' is not a version); the record has none"
    ]
    record = only_record(project)
    assert (record["exit_code"], record["git_commit"], record["gpus"]) == (3, None, [])


def test_an_image_the_registry_does_not_have(project: Path, engine_client: Any) -> None:
    result = reprobuild(project, "run", "--image", f"{REGISTRY}/nothing:here", "--", "true")
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: the engine could not pull {REGISTRY}/nothing:here")
    assert not (project / "runs").exists()


def _write_record(project: Path, image_id: str, pushed: str | None) -> None:
    from builder.build import buildrecord

    record = make_record(
        "sha256:" + "0" * 64, pushed=pushed, image_id=image_id, image="lab/train:0123456789ab"
    )
    buildrecord.write(project, record)


GONE = "sha256:" + "de" * 32


def test_a_last_build_gone_from_the_engine_and_never_pushed(project: Path, test_base: str) -> None:
    _write_record(project, GONE, None)
    result = reprobuild(project, "run", "--", "true")
    assert result.returncode == 1
    assert result.stderr == (
        f"error: the last build's image lab/train:0123456789ab ({GONE}) is no longer in the engine "
        "and was not pushed: run `reprobuild build` again.\n"
    )
    assert not (project / "runs").exists()


def test_a_last_build_pulled_back_must_have_the_recorded_id(
    project: Path, engine_client: Any, test_base: str
) -> None:
    from builder.engine.registry import RegistryClient
    from builder.reference import ImageReference

    with RegistryClient(attempts=1) as registry:
        digest = registry.resolve(ImageReference.parse(test_base)).digest
    pushed = f"{test_base.rsplit(':', 1)[0]}@{digest}"
    _write_record(project, GONE, pushed)
    result = reprobuild(project, "smoke", "--cpu")
    assert result.returncode == 1
    found = engine_client.client.images.get(test_base).id
    assert result.stderr.splitlines()[-1] == (
        f"error: {pushed} is {found} in the registry, but {project / 'reprobuild.build.json'} "
        f"recorded {GONE}: the record was edited or belongs to another build. Run "
        "`reprobuild build` again."
    )


def test_data_env_and_shared_memory_reach_the_command(
    project: Path, test_base: str, tmp_path: Path, secret_pass: None
) -> None:
    data = tmp_path / "corpus"
    data.mkdir()
    (data / "a.txt").write_text("alpha\n")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env_file = tmp_path / "vars.env"
    env_file.write_text("# tracker\nWANDB_MODE=offline\nHF_TOKEN=hf_abcdef123456\n")
    script = (
        "cat /data/corpus/a.txt; echo made > /data/scratch/new.txt; touch /data/corpus/b || true;"
        " echo $WANDB_MODE $LR ${#HF_TOKEN} ${#PASS}; df -k /dev/shm | tail -1 | awk '{print $2}'"
    )
    result = reprobuild(
        project, "run", "--image", test_base,
        "--data", f"corpus={data}", "--data", f"scratch={scratch}:rw",
        "--env-file", str(env_file), "-e", "LR=0.1", "-e", "PASS", "--secret", "PASS",
        "--shm-size", "256m",
        "--", "sh", "-c", script,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "alpha\noffline 0.1 15 6\n262144\n"
    assert "Read-only file system" in result.stderr
    assert (scratch / "new.txt").stat().st_uid == os.getuid()
    record = only_record(project)
    assert record["env"] == {"WANDB_MODE": "offline", "HF_TOKEN": None, "LR": "0.1", "PASS": None}
    assert record["shm_size"] == 256 * 2**20
    assert {name: entry["mode"] for name, entry in record["data"].items()} == {
        "corpus": "ro",
        "scratch": "rw",
    }
    assert record["data"]["scratch"]["files"] == 0  # digested before the command wrote to it
    written = [path for path in (project / "runs").rglob("*") if path.is_file()]
    assert not [path for path in written if b"hf_abcdef123456" in path.read_bytes()]


@pytest.fixture
def secret_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PASS", "hunter")


def test_a_write_to_the_project_gets_a_hint(project: Path, test_base: str) -> None:
    result = reprobuild(project, "run", "--image", test_base, "--", "sh", "-c", "echo > out.txt")
    assert result.returncode == 2
    assert "note: the project is read-only at /workspace: write to $REPROBUILD_OUTPUTS " in (
        result.stderr
    )


def test_bad_run_inputs_are_named(project: Path, test_base: str, tmp_path: Path) -> None:
    missing = reprobuild(project, "run", "--data", f"x={tmp_path}/nope", "--", "true")
    assert (missing.returncode, missing.stderr) == (
        2,
        f"error: --data x={tmp_path}/nope: {tmp_path}/nope does not exist. Give an existing "
        "folder or file.\n",
    )
    unset = reprobuild(project, "run", "-e", "SURELY_NOT_SET_42", "--", "true")
    assert unset.returncode == 2 and "SURELY_NOT_SET_42 is not set in this environment" in (
        unset.stderr
    )
    size = reprobuild(project, "run", "--shm-size", "lots", "--", "true")
    assert "--shm-size 'lots': give a size of at least 1m" in size.stderr
    assert not (project / "runs").exists()


def test_a_project_of_another_owner_runs_as_that_owner(project: Path, test_base: str) -> None:
    if os.getuid() != 0:
        pytest.skip("only root starts a run for another owner's project")
    for path in [project, *project.rglob("*")]:
        os.lchown(path, 4242, 4242)
    result = reprobuild(
        project, "run", "--image", test_base, "--", "sh", "-c", "id -u > /outputs/u"
    )
    assert result.returncode == 0, result.stderr
    (written,) = (project / "runs").glob("*/outputs/u")
    assert written.read_text() == "4242\n" and written.stat().st_uid == 4242


def test_a_project_the_command_user_cannot_read_is_refused(project: Path, test_base: str) -> None:
    if os.getuid() != 0:
        pytest.skip("only a run started as root runs the command as another user")
    project.chmod(0o700)
    result = reprobuild(project, "run", "--image", test_base, "--", "true")
    assert result.returncode == 2
    assert result.stderr == (
        f"error: {project} cannot be read by uid 1000, the user the command runs as (started as "
        "root, `reprobuild run` runs the command as the project's owner, or as the image's "
        f"non-root user when root owns the project). Make it readable (chmod o+rX {project}), "
        "or run reprobuild as the user who owns it.\n"
    )
    assert not (project / "runs").exists()


def test_links_in_the_outputs_are_recorded_as_links(project: Path, test_base: str) -> None:
    script = "echo w > /outputs/ckpt-10.pt && ln -s /outputs/ckpt-10.pt /outputs/latest.pt"
    result = reprobuild(project, "run", "--image", test_base, "--", "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    entries = only_record(project)["outputs"]["entries"]
    link = b"symlink:/outputs/ckpt-10.pt"
    assert entries == [
        {"path": "ckpt-10.pt", "size": 2, "sha256": hashlib.sha256(b"w\n").hexdigest()},
        {"path": "latest.pt", "size": len(link), "sha256": hashlib.sha256(link).hexdigest()},
    ]


def test_data_that_cannot_be_digested_costs_the_run_no_record(
    project: Path, test_base: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "elsewhere").symlink_to("/etc/hostname")
    result = reprobuild(project, "run", "--image", test_base, "--data", f"d={data}", "--", "true")
    assert result.returncode == 0
    assert (
        f"note: data 'd': {data}/elsewhere is a symlink to /etc/hostname, outside the folder"
        in (result.stderr)
    )
    record = only_record(project)
    assert record["data"] == {} and record["git_commit"] is not None


def test_files_that_were_there_keep_their_owner(
    project: Path, test_base: str, tmp_path: Path
) -> None:
    if os.getuid() != 0:
        pytest.skip("only a run started as root gives files back")
    outputs = tmp_path / "out"
    outputs.mkdir()
    (outputs / "theirs.txt").write_text("kept\n")
    os.chown(outputs / "theirs.txt", layout.UID, layout.UID)  # another account's, on this host
    os.chown(outputs, layout.UID, layout.UID)
    script = "echo new > /outputs/mine.txt; echo more >> /outputs/theirs.txt"
    result = reprobuild(
        project, "run", "--image", test_base, "--outputs", str(outputs), "--", "sh", "-c", script
    )
    assert result.returncode == 0, result.stderr
    assert (outputs / "mine.txt").stat().st_uid == 0
    assert (outputs / "theirs.txt").stat().st_uid == layout.UID
