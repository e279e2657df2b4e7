"""The command line as users run it: real processes, exit codes, no tracebacks."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from builder.build import buildrecord
from builder.lock import lockfile
from builder.spec.file import locate
from tests.cli import reprobuild
from tests.conftest import LocalIndex
from tests.records import make_record

EXAMPLE = Path(__file__).parents[3] / "images" / "example"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """No engine here (DOCKER_HOST names none) and the shipped knowledge base unless given."""
    environment = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock", **(env or {})}
    environment.pop("REPROBUILD_KNOWLEDGE", None)
    if env and "REPROBUILD_KNOWLEDGE" in env:
        environment["REPROBUILD_KNOWLEDGE"] = env["REPROBUILD_KNOWLEDGE"]
    return reprobuild(*args, env=environment)


def test_resolve_example_json() -> None:
    result = run("-C", str(EXAMPLE), "resolve", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["torch"]["label"] == "2.5.1+cu124" and data["min_driver"] == "525.60.13"


def test_resolve_explain_lists_candidates() -> None:
    result = run("-C", str(EXAMPLE), "resolve", "--explain")
    assert result.returncode == 0
    assert result.stdout.startswith(
        "reprobuild/example-train: torch 2.5.1+cu124 (PyPI default) for Python 3.11\n"
    )
    assert "install    torch==2.5.1 from PyPI" in result.stdout
    assert "Candidates, in order of preference" in result.stdout
    assert "2.5.0+cu118" in result.stdout


def test_bad_spec_exits_2_with_every_problem(tmp_path: Path) -> None:
    (tmp_path / "reprobuild.toml").write_text('name = "x"\npyton = "3.11"\ntorch = "2.5.1"\n')
    result = run("-C", str(tmp_path), "resolve")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"error: {tmp_path}/reprobuild.toml: 2 problems in the spec:\n"
        "  - unknown key 'pyton': did you mean 'python'?\n"
        "  - 'python' is required, e.g. python = \"3.11\".\n"
    )


def test_impossible_combination_exits_3(tmp_path: Path) -> None:
    (tmp_path / "reprobuild.toml").write_text(
        'name = "x"\npython = "3.11"\ntorch = "2.5.1"\n[target]\ngpus = ["B200"]\n'
    )
    result = run("-C", str(tmp_path), "resolve")
    assert result.returncode == 3
    assert "no kernels for B200 (sm_100)" in result.stderr
    assert (
        "torch >= 2.7.0 with CUDA 12.8 (2.7.0+cu128) has kernels for B200 (sm_100)."
        in result.stderr
    )


def test_a_torch_version_that_is_not_a_release_exits_3_naming_the_releases(
    tmp_path: Path,
) -> None:
    (tmp_path / "reprobuild.toml").write_text('name = "x"\npython = "3.11"\ntorch = "2.5.9"\n')
    result = run("-C", str(tmp_path), "resolve")
    assert (result.returncode, result.stdout) == (3, "")
    assert result.stderr == (
        "error: torch 2.5.9 is not a release: the 2.5 releases are 2.5.0 and 2.5.1. Pin one of "
        'them, or write torch = "2.5.*" for the newest 2.5 build that fits.\n'
    )


def test_a_name_with_a_registry_port_resolves(tmp_path: Path) -> None:
    (tmp_path / "reprobuild.toml").write_text(
        'name = "registry.lab.example:5000/lab/train"\npython = "3.11"\ntorch = "2.5.1"\n'
    )
    result = run("-C", str(tmp_path), "resolve")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(
        "registry.lab.example:5000/lab/train: torch 2.5.1+cu124 (PyPI default) for Python 3.11\n"
    )


def test_knowledge_show_json_has_sources() -> None:
    result = run("knowledge", "show", "torch==2.5.1", "--json")
    rows = json.loads(result.stdout)
    assert [(row["variant"], row["platform"]) for row in rows] == [
        ("cpu", "linux/amd64"),
        ("cu118", "linux/amd64"),
        ("cu121", "linux/amd64"),
        ("cu124", "linux/amd64"),
        ("cpu", "linux/arm64"),
        ("cu124", "linux/arm64"),
    ]
    assert all(row["source"] and row["read"] for row in rows)


def test_knowledge_show_table_and_gpus() -> None:
    table = run("knowledge", "show", "2.5.*")
    assert table.returncode == 0 and "2.5.1+cu124 *" in table.stdout
    gpus = run("knowledge", "gpus")
    assert "RTX 4090" in gpus.stdout and "sm_89" in gpus.stdout


@pytest.mark.parametrize(
    ("requirement", "fix"),
    [
        ("torch==9.9", "if it came out after 2.15.0, run `reprobuild knowledge refresh`"),
        ("2.5.9", "`reprobuild knowledge show` without a requirement lists every release"),
        ("<2.0", "`reprobuild knowledge show` without a requirement lists every release"),
    ],
)
def test_knowledge_show_unknown_release(requirement: str, fix: str) -> None:
    result = run("knowledge", "show", requirement)
    assert result.returncode == 1
    assert result.stderr == (
        f"error: no torch release matching {requirement!r} is in the knowledge base (it knows "
        f"2.0.0 to 2.15.0): {fix}.\n"
    )


def test_knowledge_show_of_what_is_not_a_requirement_is_a_usage_error() -> None:
    result = run("knowledge", "show", "torch>>2")
    assert result.returncode == 2
    assert result.stderr == (
        "error: 'torch>>2' is not a torch requirement; write e.g. torch==2.5.1, 2.5.* or '>=2.7'.\n"
    )


def test_doctor_without_gpu_or_engine_reports_each_in_one_line() -> None:
    result = run("doctor", "--no-spec")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("warn docker engine") for line in lines)
    assert any(
        "no Docker engine answers at unix:///nonexistent/docker.sock" in line for line in lines
    )
    if "no NVIDIA driver" not in result.stdout:
        pytest.skip("this host has an NVIDIA driver")
    assert any(line.startswith("warn nvidia driver   no NVIDIA driver") for line in lines)


def test_smoke_without_an_engine_or_with_bad_options(tmp_path: Path) -> None:
    no_engine = run("smoke", "lab/train:v1", "--cpu")
    assert no_engine.returncode == 1
    assert no_engine.stderr.splitlines()[-1].startswith(
        "error: no Docker engine answers at unix:///nonexistent/docker.sock"
    )
    bad_gpus = run("smoke", "lab/train:v1", "--gpus", "0")
    assert bad_gpus.returncode == 2
    assert "Invalid value for '--gpus': '0': give all, or a number of GPUs such as 1." in (
        bad_gpus.stderr
    )
    no_record = run("-C", str(tmp_path), "smoke")
    assert no_record.returncode == 1
    assert no_record.stderr.strip() == (
        f"error: {tmp_path / 'reprobuild.build.json'} does not exist: run `reprobuild build` first."
    )


def test_run_needs_a_build_and_a_command(tmp_path: Path) -> None:
    no_record = run("-C", str(tmp_path), "run", "--", "python", "train.py")
    assert no_record.returncode == 1
    assert no_record.stderr.strip() == (
        f"error: {tmp_path / 'reprobuild.build.json'} does not exist: run `reprobuild build` first."
    )
    no_command = run("-C", str(tmp_path), "run")
    assert no_command.returncode == 2 and "Missing argument 'COMMAND...'" in no_command.stderr
    bad_gpus = run("-C", str(tmp_path), "run", "--gpus", "many", "--", "true")
    assert bad_gpus.returncode == 2 and "'many': give all, or a number of GPUs" in bad_gpus.stderr
    typo = run("-C", str(tmp_path), "run", "--gpu", "all", "--", "python", "train.py")
    assert typo.returncode == 2
    assert typo.stderr.splitlines()[-1] == "Error: No such option '--gpu'. Did you mean '--gpus'?"
    flag = run("-C", str(tmp_path), "run", "--rm", "--", "python", "train.py")
    assert flag.returncode == 2
    assert flag.stderr.splitlines()[-1] == "Error: No such option '--rm'."


def test_run_without_an_engine_names_it_and_leaves_nothing(tmp_path: Path) -> None:
    socket = tmp_path / "docker.sock"
    missing = run(
        "-C", str(tmp_path), "run", "--image", "a:b", "--", "true",
        env={"DOCKER_HOST": f"unix://{socket}"},
    )  # fmt: skip
    assert missing.returncode == 1
    assert missing.stderr == (
        f"error: no Docker engine answers at unix://{socket} ({socket}: No such file or "
        "directory). Start one: on Debian `apt-get install docker.io` then `dockerd &` (or "
        "`systemctl start docker`); or set DOCKER_HOST to a running engine.\n"
    )
    remote = run("-C", str(tmp_path), "run", "--", "true", env={"DOCKER_HOST": "ssh://gpu-box"})
    assert remote.returncode == 1
    assert remote.stderr == (
        "error: DOCKER_HOST=ssh://gpu-box: `reprobuild run` reaches the engine through a unix:// "
        "socket or tcp://HOST:PORT, and mounts this machine's folders by path, so it needs the "
        "engine on this machine. Unset DOCKER_HOST for unix:///var/run/docker.sock, or point it "
        "at this machine's engine.\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_build_sif_needs_apptainer_and_a_push(tmp_path: Path) -> None:
    # apptainer cannot be installed on this machine: a stand-in on PATH shows the order of checks.
    bare = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"}
    missing = run("-C", str(tmp_path), "build", "--format", "sif", env=bare)
    assert missing.returncode == 1
    assert missing.stderr.startswith(
        "error: --format sif needs apptainer, which is not installed here. Build and push"
    )
    stand_in = tmp_path / "bin" / "apptainer"
    stand_in.parent.mkdir()
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    unpushed = run(
        "-C", str(tmp_path), "build", "--format", "sif", env={"PATH": f"{stand_in.parent}:/bin"}
    )
    assert unpushed.returncode == 1
    assert unpushed.stderr.startswith(
        "error: --format sif builds the SIF from the pushed image, so that it holds exactly the "
        "bits that were built and smoke-tested: add --push REF"
    )


def test_doctor_ignores_a_pyproject_without_a_reprobuild_table(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "other"\n')
    result = run("-C", str(tmp_path), "doctor", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["image"] is None


def test_doctor_with_spec_on_a_host_without_gpu_exits_1() -> None:
    result = run("-C", str(EXAMPLE), "doctor", "--json")
    report = json.loads(result.stdout)
    if report["gpus"]:
        pytest.skip("this host has an NVIDIA GPU")
    assert result.returncode == 1
    assert report["runs_here"] is False
    assert (
        report["image"] == "reprobuild/example-train (torch 2.5.1+cu124, Python 3.11, linux/amd64)"
    )


def test_refresh_writes_elsewhere_and_is_loadable(local_index: LocalIndex, tmp_path: Path) -> None:
    local_index.add_wheel(
        "pypi",
        "torch-2.16.0-cp311-cp311-manylinux_2_28_x86_64.whl",
        [
            "cuda-toolkit[cudart]==13.2.2; platform_system == 'Linux'",
            "nvidia-cudnn-cu13==9.26.0.51; platform_system == 'Linux'",
        ],
        "sm_75 sm_80 sm_86 sm_90 sm_100 sm_120",
    )
    output = tmp_path / "kb"
    result = run(
        "knowledge",
        "refresh",
        "--pypi-url",
        f"{local_index.url}/pypi",
        "--pytorch-url",
        "http://127.0.0.1:9/whl",
        "--variant",
        "cu118",
        "--output",
        str(output),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote {output}/torch.json: 1 added, 0 changed, 0 unchanged,")
    assert "kept as shipped, index did not answer: http://127.0.0.1:9/whl/cu118" in result.stdout
    shown = run(
        "knowledge", "show", "torch==2.16.0", "--json", env={"REPROBUILD_KNOWLEDGE": str(output)}
    )
    assert [(r["cuda"], r["cudnn"]) for r in json.loads(shown.stdout)] == [("13.2", "9.26.0.51")]


def test_refresh_offline_keeps_the_shipped_data(tmp_path: Path) -> None:
    result = run(
        "knowledge",
        "refresh",
        "--pypi-url",
        "http://127.0.0.1:9/simple",
        "--pytorch-url",
        "http://127.0.0.1:9/whl",
        "--output",
        str(tmp_path / "kb"),
    )
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith("The knowledge base ")
    assert result.stderr.splitlines()[-1].endswith(" was kept unchanged.")
    assert "error: offline: no package index answered" in result.stderr
    assert not (tmp_path / "kb").exists()


@pytest.mark.parametrize("command", [[], ["resolve"], ["doctor"], ["knowledge", "refresh"]])
def test_help_works(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.returncode == 0 and "Usage:" in result.stdout


def test_failed_lock_leaves_the_old_lock_untouched(tmp_path: Path) -> None:
    spec_text = 'name = "x"\npython = "3.11"\ntorch = "2.5.1"\n'
    (tmp_path / "reprobuild.toml").write_text(spec_text)
    previous = "# an earlier lock\n"
    (tmp_path / "reprobuild.lock").write_text(previous)
    result = run(
        "-C", str(tmp_path), "lock", "--upgrade", "--index-url", "http://127.0.0.1:9/simple"
    )
    assert result.returncode == 1
    assert "error: the package index (127.0.0.1:9) did not answer" in result.stderr
    assert (tmp_path / "reprobuild.lock").read_text() == previous
    assert {p.name for p in tmp_path.iterdir()} == {"reprobuild.toml", "reprobuild.lock"}


def test_lock_check_on_a_missing_lock(tmp_path: Path) -> None:
    (tmp_path / "reprobuild.toml").write_text('name = "x"\npython = "3.11"\ntorch = "2.5.1"\n')
    result = run("-C", str(tmp_path), "lock", "--check")
    assert result.returncode == 1
    assert (
        result.stderr
        == f"error: no lock at {tmp_path}/reprobuild.lock: run `reprobuild lock` first.\n"
    )


def test_host_target_without_gpu_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "reprobuild.toml").write_text(
        'name = "x"\npython = "3.11"\ntorch = "2.5.1"\n[target]\nhost = true\n'
    )
    result = run("-C", str(tmp_path), "resolve")
    if result.returncode == 0:
        pytest.skip("this host has an NVIDIA GPU")
    assert result.returncode == 1
    assert result.stderr.startswith(
        "error: the spec sets target.host = true, but this machine cannot be read: no NVIDIA driver"
    )


EXAMPLE_LOCKED = Path(__file__).parents[3] / "images" / "example"


def test_render_writes_the_context_from_the_lock(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    for name in ("reprobuild.toml", "reprobuild.lock"):
        (project / name).write_text((EXAMPLE_LOCKED / name).read_text())
    output = tmp_path / "context"
    result = run("-C", str(project), "render", "-o", str(output))
    assert result.returncode == 0, result.stderr
    size = sum((project / name).stat().st_size for name in ("reprobuild.toml", "reprobuild.lock"))
    assert (
        result.stdout
        == f"wrote {output}: Dockerfile, reprobuild.def (standalone (`reprobuild build --push "
        "REF` gives one from the built image)), .dockerignore, 3 Python layers\n"
        f"code: 2 files, {size / 1e3:.1f} kB\n"
    )
    dockerfile = (output / "Dockerfile").read_text()
    assert (
        "FROM python@sha256:b1add8a6f2aca6bcfcf0b9c9b522352f7ce0d62a3d556a2f2f32511aa0cca250"
        " AS system\n" in dockerfile
    )
    install = json.loads((output / "reprobuild" / "install" / "layers.json").read_text())
    assert [(layer["name"], len(layer["wheels"])) for layer in install["layers"]] == [
        ("cuda", 12),
        ("torch", 2),
        ("closure", 10),
    ]
    assert sorted(p.name for p in (output / "code" / "workspace").iterdir()) == [
        "reprobuild.lock",
        "reprobuild.toml",
    ]


PUSHED = "127.0.0.1:5000/lab/train@sha256:" + "ab" * 32


def _record(project: Path, lock_digest: str) -> None:
    buildrecord.write(
        project, make_record(lock_digest, pushed=PUSHED, image="lab/train:0123456789ab")
    )


def test_render_bootstraps_apptainer_from_the_pushed_build_of_this_lock(tmp_path: Path) -> None:
    for name in ("reprobuild.toml", "reprobuild.lock"):
        (tmp_path / name).write_text((EXAMPLE_LOCKED / name).read_text())
    definition = tmp_path / ".reprobuild" / "context" / "reprobuild.def"
    _record(tmp_path, lockfile.file_digest(tmp_path / "reprobuild.lock"))
    result = run("-C", str(tmp_path), "render")
    assert result.returncode == 0, result.stderr
    assert f"reprobuild.def (from the built image {PUSHED})" in result.stdout
    assert definition.read_text().startswith(f"Bootstrap: docker\nFrom: {PUSHED}\n")
    assert "%post" not in definition.read_text()
    standalone = run("-C", str(tmp_path), "render", "--standalone")
    assert standalone.returncode == 0, standalone.stderr
    assert definition.read_text().startswith("Bootstrap: docker\nFrom: python@sha256:b1add8a6")
    assert "%post" in definition.read_text()
    both = run("-C", str(tmp_path), "render", "--standalone", "--from-image", PUSHED)
    assert both.returncode == 2 and "exclude each other" in both.stderr
    _record(tmp_path, "sha256:" + "00" * 32)  # the record of another lock is not this build
    run("-C", str(tmp_path), "render")
    assert definition.read_text().startswith("Bootstrap: docker\nFrom: python@sha256:b1add8a6")


def test_render_refuses_a_stale_lock(tmp_path: Path) -> None:
    spec_text = (EXAMPLE_LOCKED / "reprobuild.toml").read_text()
    (tmp_path / "reprobuild.toml").write_text(spec_text.replace("tqdm==4.67.1", "tqdm==4.67.0"))
    (tmp_path / "reprobuild.lock").write_text((EXAMPLE_LOCKED / "reprobuild.lock").read_text())
    result = run("-C", str(tmp_path), "render")
    assert result.returncode == 1
    assert "the spec changed since" in result.stderr and "run `reprobuild lock`" in result.stderr
    assert not (tmp_path / ".reprobuild").exists()


def test_fetch_without_a_lock_says_what_to_run(tmp_path: Path) -> None:
    (tmp_path / "reprobuild.toml").write_text('name = "x"\npython = "3.11"\ntorch = "2.5.1"\n')
    result = run("-C", str(tmp_path), "fetch", "--quiet")
    assert result.returncode == 1
    assert (
        result.stderr
        == f"error: no lock at {tmp_path}/reprobuild.lock: run `reprobuild lock` first.\n"
    )


def _export_project(tmp_path: Path, pushed: bool = True) -> Path:
    for name in ("reprobuild.toml", "reprobuild.lock"):
        (tmp_path / name).write_text((EXAMPLE_LOCKED / name).read_text())
    _record(tmp_path, lockfile.file_digest(tmp_path / "reprobuild.lock"))
    if not pushed:
        record = buildrecord.read(tmp_path)
        buildrecord.write(tmp_path, dataclasses.replace(record, pushed=None))
    return tmp_path


def test_export_slurm_prints_the_script(tmp_path: Path) -> None:
    project = _export_project(tmp_path)
    result = run("-C", str(project), "export", "slurm", "--nodes", "2", "--", "train.py", "a b")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert f"IMAGE=docker://{PUSHED}" in lines
    assert "#SBATCH --nodes=2" in lines
    assert "        train.py 'a b'" in lines
    assert lines[-1] == 'exit "$status"'
    assert not (project / "job.sh").exists()


def test_export_kubernetes_writes_the_file_given_with_o(tmp_path: Path) -> None:
    import yaml

    project = _export_project(tmp_path)
    output = tmp_path / "job.yaml"
    options = ["--nodes", "2", "-o", str(output)]
    result = run("-C", str(project), "export", "kubernetes", *options, "--", "-m", "lab.train")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == f"note: wrote {output}; apply it with kubectl apply -f {output}\n"
    service, job = yaml.safe_load_all(output.read_text())
    assert service["kind"] == "Service" and job["kind"] == "Job"
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == PUSHED


def test_export_refuses_an_unpushed_build(tmp_path: Path) -> None:
    project = _export_project(tmp_path, pushed=False)
    for target in ("slurm", "kubernetes"):
        result = run("-C", str(project), "export", target, "--", "train.py")
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr == (
            "error: the last build, lab/train:0123456789ab, was not pushed, and a cluster cannot "
            "pull an image from this machine's engine: run `reprobuild build --push "
            "REGISTRY/NAME:TAG` with a registry the cluster's nodes can pull from, then export "
            "again.\n"
        )


def test_export_usage_errors(tmp_path: Path) -> None:
    project = _export_project(tmp_path)
    zero = run("-C", str(project), "export", "kubernetes", "--nodes", "0", "--", "train.py")
    assert zero.returncode == 2
    assert "Invalid value for '--nodes': 0 is not in the range x>=1." in zero.stderr
    no_command = run("-C", str(project), "export", "slurm")
    assert no_command.returncode == 2 and "Missing argument 'COMMAND...'" in no_command.stderr
    typo = run("-C", str(project), "export", "slurm", "--node", "2", "--", "train.py")
    assert typo.returncode == 2
    assert typo.stderr.splitlines()[-1] == "Error: No such option '--node'. Did you mean '--nodes'?"
    bad_time = run("-C", str(project), "export", "slurm", "--time", "4h", "--", "train.py")
    assert bad_time.returncode == 2 and "Invalid value for '--time': '4h'" in bad_time.stderr
    namespace = run("-C", str(project), "export", "kubernetes", "--namespace", "ML", "--", "t.py")
    assert namespace.returncode == 2 and "'ML': a namespace is a DNS-1123 label" in namespace.stderr
    launcher = run("-C", str(project), "export", "slurm", "--", "python", "train.py")
    assert launcher.returncode == 2
    assert launcher.stderr.startswith("error: the command starts with python, but the job starts")
    for target in ("slurm", "kubernetes"):
        shown = run("export", target, "--help")
        assert shown.returncode == 0 and f"reprobuild export {target} --nodes 2" in shown.stdout


@pytest.mark.parametrize(
    ("arguments", "last_line"),
    [
        (["slurm", "--bogus", "--", "train.py"], "Error: No such option '--bogus'."),
        (
            ["kubernetes", "--nodes", "2", "--bogus", "--", "t.py"],
            "Error: No such option '--bogus'.",
        ),
        (
            ["slurm", "--", "-m"],
            "error: -m needs the module torchrun runs: -- -m package.train --epochs 3.",
        ),
        (
            ["kubernetes", "--", "torchrun", "t.py"],
            "error: the command starts with torchrun, but "
            "the job starts torchrun itself: give what torchrun runs, a script and its arguments "
            "(-- train.py --epochs 3) or a module (-- -m package.train --epochs 3).",
        ),
        (["kubernetes", "--namespace"], "Error: Option '--namespace' requires an argument."),
        (["cluster", "--", "t.py"], "Error: No such command 'cluster'."),
        (
            ["slurm", "--gpus-per-node", "x", "--", "t.py"],
            "Error: Invalid value for '--gpus-per-node': 'x' is not a valid integer range.",
        ),
    ],
)
def test_every_export_usage_error_exits_2(
    tmp_path: Path, arguments: list[str], last_line: str
) -> None:
    result = run("-C", str(_export_project(tmp_path)), "export", *arguments)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines()[-1] == last_line


def test_export_passes_a_command_given_without_dashes_through(tmp_path: Path) -> None:
    result = run("-C", str(_export_project(tmp_path)), "export", "slurm", "-m", "lab.train")
    assert result.returncode == 0, result.stderr
    assert "        -m lab.train" in result.stdout.splitlines()


@pytest.mark.parametrize(
    ("verb", "option", "value", "example"),
    [
        ("lock", "--index-url", "notaurl", "https://pypi.org/simple"),
        ("lock", "--debian-mirror", "deb.debian.org/debian", "http://deb.debian.org/debian"),
        ("lock", "--debian-security-mirror", "ftp://x/y", "http://deb.debian.org/debian"),
        ("build", "--debian-mirror", "http://", "http://deb.debian.org/debian"),
    ],
)
def test_an_index_or_archive_that_is_not_an_address_is_a_usage_error(
    verb: str, option: str, value: str, example: str
) -> None:
    result = run("-C", str(EXAMPLE), verb, option, value)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"Error: Invalid value for '{option}': {value!r} is not an http:// or https:// address; "
        f"write e.g. {example}."
    )


def test_verify_of_a_file_that_does_not_exist_is_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "reprobuild.manifest.json"
    result = run("verify", str(missing))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        f"error: {missing} does not exist: give the paper's reprobuild.manifest.json or an image "
        "as name@sha256:<digest>.\n"
    )


GRACE_SPEC = (
    'name = "lab/gh"\npython = "3.11"\ntorch = "2.11.*"\n{extra}'
    '[target]\ngpus = ["GH200", "H100"]\ndriver = "580.65.06"\n'
)


def test_resolve_prints_one_block_per_platform(tmp_path: Path) -> None:
    extra = 'platforms = ["linux/amd64", "linux/arm64"]\n'
    (tmp_path / "reprobuild.toml").write_text(GRACE_SPEC.format(extra=extra))
    result = run("-C", str(tmp_path), "resolve")
    assert result.returncode == 0, result.stderr
    amd64, arm64 = result.stdout.split("\n\n")
    assert amd64.splitlines()[:3] == [
        "lab/gh: torch 2.11.0+cu130 (PyPI default) for Python 3.11",
        "  platform   linux/amd64",
        "  install    torch==2.11.0 from PyPI",
    ]
    assert amd64.splitlines()[-1] == (
        "  note: GH200 (sm_90) runs linux/arm64 images only: left out of the linux/amd64 target"
    )
    assert arm64.splitlines()[1] == "  platform   linux/arm64"
    assert "  kernels    sm_80 sm_90 sm_100 sm_110 sm_120" in arm64.splitlines()
    documents = json.loads(run("-C", str(tmp_path), "resolve", "--json").stdout)
    assert [(d["platform"], d["torch"]["label"]) for d in documents] == [
        ("linux/amd64", "2.11.0+cu130"),
        ("linux/arm64", "2.11.0+cu130"),
    ]


def test_resolve_of_amd64_alone_names_no_platform() -> None:
    result = run("-C", str(EXAMPLE), "resolve")
    assert result.returncode == 0 and "platform" not in result.stdout
    data = json.loads(run("-C", str(EXAMPLE), "resolve", "--json").stdout)
    assert isinstance(data, dict) and data["platform"] == "linux/amd64"


def test_a_grace_gpu_resolves_for_arm64(tmp_path: Path) -> None:
    grace_alone = GRACE_SPEC.format(extra="").replace('["GH200", "H100"]', '["GH200"]')
    (tmp_path / "reprobuild.toml").write_text(grace_alone)
    note = "note: GH200 is a Grace Hopper superchip (Arm CPU): the image is built for linux/arm64\n"
    resolved = run("-C", str(tmp_path), "resolve")
    assert resolved.returncode == 0 and resolved.stderr == note
    assert resolved.stdout.splitlines()[1] == "  platform   linux/arm64"


def test_knowledge_gpus_shows_the_platform_of_grace_superchips() -> None:
    lines = run("knowledge", "gpus").stdout.splitlines()
    grace = next(line for line in lines if " GH200 " in line)
    assert "linux/arm64" in grace
    assert "any" in next(line for line in lines if " H100 " in line)


def grace_project_with_a_current_lock(tmp_path: Path) -> Path:
    """The example with a GH200 target (no `platforms`: linux/arm64 implied) and a lock that is
    current by the spec's hash, as one made with another knowledge base would be."""
    project = tmp_path / "grace"
    project.mkdir()
    spec = (EXAMPLE / "reprobuild.toml").read_text().replace('["A100", "H100"]', '["GH200"]')
    (project / "reprobuild.toml").write_text(spec)
    (project / "train.py").write_text((EXAMPLE / "train.py").read_text())
    spec_path, table, _ = locate(project)
    lock = lockfile.read(EXAMPLE / "reprobuild.lock")
    current = dataclasses.replace(lock, spec_hash=lockfile.spec_hash_at(spec_path, table))
    (project / "reprobuild.lock").write_text(lockfile.dumps(current))
    return project


GRACE_REFUSAL = (
    "was made for linux/amd64, and the spec builds for linux/arm64: run `reprobuild lock`"
)


# `lock` and `build` lock again instead (that needs the index and an engine: tests/integration).
@pytest.mark.parametrize("verb", [("lock", "--check"), ("render",), ("fetch",)])
def test_a_lock_of_other_platforms_than_the_spec_is_refused_by_the_verbs_that_read_it(
    tmp_path: Path, verb: tuple[str, ...]
) -> None:
    project = grace_project_with_a_current_lock(tmp_path)
    locked = lockfile.read_current(project).text  # current by the spec's hash
    result = run("-C", str(project), *verb)
    assert result.returncode == 1, result.stdout + result.stderr
    assert GRACE_REFUSAL in " ".join(result.stderr.split()), result.stderr
    assert result.stdout == ""
    assert (project / "reprobuild.lock").read_text() == locked
    assert not (project / ".reprobuild" / "context").exists()  # no Dockerfile rendered
    assert not (project / ".reprobuild" / "wheels").exists()
