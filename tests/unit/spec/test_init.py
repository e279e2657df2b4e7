"""`reprobuild init` on repositories shaped like common ones (tests/data/repos/): what it infers,
the exact text it writes, its refusals and errors, and that what it writes loads and resolves."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from builder import knowledge
from builder.cli.main import cli
from builder.compat import ComputeCapability
from builder.errors import InitError
from builder.knowledge import AMD64
from builder.spec.check import load_spec
from builder.spec.discover import InitRequest, discover, host_gpu_name, image_name
from builder.spec.scaffold import init_project, table_span
from tests.cli import reprobuild

KB = knowledge.load()
REPOS = Path(__file__).parents[2] / "data" / "repos"
EXPECTED = REPOS / "expected"
NEWEST = KB.releases_of_torch(AMD64)[-1]
SERIES = f"{NEWEST.major}.{NEWEST.minor}.*"


def repo(tmp_path: Path, name: str) -> Path:
    """A copy of a fixture repository, under its own name (the image name may come from it)."""
    copy = tmp_path / name
    shutil.copytree(REPOS / name, copy)
    return copy


def run(*args: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ}
    environment.pop("REPROBUILD_KNOWLEDGE", None)
    return reprobuild(*args, env=environment)


# What is inferred, and from where.


def test_a_requirements_repository_points_the_spec_at_its_file(tmp_path: Path) -> None:
    found = discover(repo(tmp_path, "requirements-repo"), InitRequest(), KB)
    assert found.requirements == "requirements.txt"
    assert found.read == ("requirements.txt", "requirements/base.txt", ".python-version")
    assert (found.torch.text, found.torch.why) == (
        ">=2.1,<2.6",
        "requirements.txt line 3: torch>=2.1,<2.6",
    )
    assert (found.python.text, found.python.why) == ("3.10", ".python-version line 1: 3.10.13")
    assert [item.text for item in found.family] == ['torchvision>=0.16 ; python_version >= "3.9"']
    assert [str(item.origin) for item in found.family] == ["requirements/base.txt line 2"]
    assert [item.text for item in found.package_lines] == [
        "numpy==1.26.4",
        'torchvision>=0.16 ; python_version >= "3.9"',
        "tqdm",
        "accelerate[deepspeed]>=0.30",
        'pynvml; sys_platform == "linux"',
        'colorama ; sys_platform == "win32"',
    ]
    assert found.unused == ("requirements-dev.txt",)
    assert found.cuda is None and found.target is None and found.conda_only == ()


def test_a_group_with_an_editable_install_copies_the_packages_and_notes_the_line(
    tmp_path: Path,
) -> None:
    found = discover(repo(tmp_path, "requirements-repo"), InitRequest(groups=("dev",)), KB)
    assert found.requirements is None
    assert found.packages.describe == "requirements.txt and requirements-dev.txt"
    assert found.package_lines[-1].text == "pytest==8.3.3"
    assert [(a.text, str(a.origin), a.portable) for a in found.packages.asides] == [
        ("--extra-index-url https://pypi.example.org/simple", "requirements.txt line 7", True),
        ("-e .", "requirements-dev.txt line 2", False),
    ]
    assert found.unused == ()


def test_a_pyproject_takes_its_dependencies_and_the_groups_named(tmp_path: Path) -> None:
    project = repo(tmp_path, "pyproject-repo")
    plain = discover(project, InitRequest(), KB)
    assert (plain.name.text, plain.name.why) == (
        "vision-trainer",
        "pyproject.toml [project].name: Vision_Trainer",
    )
    assert (plain.torch.text, plain.torch.why) == ("2.5.1", "pyproject.toml line 10: torch==2.5.1")
    # requires-python >=3.9,<3.13 and torch 2.5.1's wheels (3.9 to 3.13): the newest of both
    assert plain.python.text == "3.12"
    assert [item.text for item in plain.package_lines] == [
        "torchvision==0.20.1",
        "numpy>=1.26",
        "pillow",
    ]
    train = discover(project, InitRequest(groups=("train",)), KB)  # includes the group data
    assert [(i.text, str(i.origin)) for i in train.package_lines[3:]] == [
        ("einops>=0.8", "pyproject.toml line 21"),
        ("datasets==3.0.1", "pyproject.toml line 22"),
    ]
    extra = discover(project, InitRequest(groups=("all",)), KB)  # vision-trainer[logging]
    assert [item.text for item in extra.package_lines[3:]] == ["wandb>=0.17", "rich"]


def test_an_unknown_group_names_the_ones_there_are(tmp_path: Path) -> None:
    with pytest.raises(InitError) as caught:
        discover(repo(tmp_path, "pyproject-repo"), InitRequest(groups=("gpu",)), KB)
    assert str(caught.value) == (
        "--group gpu: pyproject.toml has no dependency group, extra or requirements file of "
        "that name (it has all, data, dev, logging, train); name one of those, or leave --group "
        "out."
    )


def test_a_conda_environment_gives_python_torch_cuda_and_names_conda_only_packages(
    tmp_path: Path,
) -> None:
    found = discover(repo(tmp_path, "conda-repo"), InitRequest(), KB)
    assert (found.python.text, found.python.why) == ("3.10", "environment.yml line 7: python=3.10")
    assert (found.torch.text, found.torch.why) == ("2.1.0", "environment.yml line 8: pytorch=2.1.0")
    assert found.cuda is not None
    assert (found.cuda.text, found.cuda.why) == (
        "12.1",
        "environment.yml line 9: pytorch-cuda=12.1",
    )
    assert [item.text for item in found.package_lines] == [
        "albumentations==1.4.18",
        "opencv-python-headless>=4.8",
        "torchvision==0.16.*",  # conda's fuzzy =0.16
    ]
    assert [(p.name, str(p.origin)) for p in found.conda_only] == [
        ("ffmpeg", "environment.yml line 11"),
        ("libjpeg-turbo", "environment.yml line 12"),
    ]


def test_a_setup_cfg_gives_install_requires_and_requires_python(tmp_path: Path) -> None:
    found = discover(repo(tmp_path, "setupcfg-repo"), InitRequest(), KB)
    assert (found.name.text, found.torch.text) == ("speech-lab", "~=2.4.0")
    assert [(i.text, str(i.origin)) for i in found.package_lines] == [
        ("torchaudio~=2.4.0", "setup.cfg line 9"),
        ("soundfile>=0.12", "setup.cfg line 10"),  # its comment dropped
    ]
    assert found.python.text == "3.12"  # >=3.10; torch 2.4's newest wheels are for 3.12
    with_extra = discover(repo(tmp_path / "x", "setupcfg-repo"), InitRequest(("notebooks",)), KB)
    assert with_extra.package_lines[-1].text == "jupyterlab>=4"


def test_an_empty_repository_gets_the_newest_torch_series_and_the_default_python(
    tmp_path: Path,
) -> None:
    found = discover(tmp_path, InitRequest(), KB)
    assert (found.torch.text, found.torch.why) == (
        SERIES,
        "the newest torch release series the knowledge base has; no file names torch",
    )
    assert (found.python.text, found.python.why) == (
        "3.11",
        "the default Python: no file names a version",
    )
    assert found.read == () and found.package_lines == ()


def test_an_unpinned_torch_says_which_line_leaves_it_so(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("numpy\ntorch\n")
    found = discover(tmp_path, InitRequest(), KB)
    assert (found.torch.text, found.torch.why) == (
        SERIES,
        "the newest torch release series the knowledge base has; requirements.txt line 2 "
        "leaves torch unpinned",
    )


@pytest.mark.parametrize(
    ("lines", "torch"),
    [
        ("torch==2.5.1+cu121\n", "2.5.1+cu121"),
        ("torch==2.4.*\n", "2.4.*"),
        ("torch<2.6\ntorch>=2.1\n", ">=2.1,<2.6"),  # two lines: both bounds
        (
            'torch==2.3.1; sys_platform == "darwin"\ntorch==2.5.1; sys_platform == "linux"\n',
            "2.5.1",
        ),
    ],
)
def test_torch_pins_become_the_spec_s_torch(tmp_path: Path, lines: str, torch: str) -> None:
    (tmp_path / "requirements.txt").write_text(lines)
    assert discover(tmp_path, InitRequest(), KB).torch.text == torch


def test_image_names_from_project_names() -> None:
    assert image_name("Vision_Trainer") == "vision-trainer"
    assert image_name("my.project  v2") == "my-project-v2"
    assert image_name("___") == "project"


def test_nvml_gpu_names_map_to_the_knowledge_base_s() -> None:
    # NVML's names as drivers report them; no GPU here, so the names are given as NVML would.
    hopper, ampere = ComputeCapability(9, 0), ComputeCapability(8, 0)
    assert host_gpu_name("NVIDIA H100 80GB HBM3", hopper, KB) == "H100"
    assert host_gpu_name("NVIDIA A100-SXM4-80GB", ampere, KB) == "A100"
    assert host_gpu_name("NVIDIA Future X1", hopper, KB) == "sm_90"
    assert host_gpu_name("NVIDIA H100 80GB HBM3", ampere, KB) == "sm_80"  # capability decides


def test_gpus_and_driver_become_the_target(tmp_path: Path) -> None:
    found = discover(
        tmp_path, InitRequest(gpus=("a100", "A100 80GB", "sm_90"), driver="535.104.05"), KB
    )
    assert found.target is not None and found.target.driver is not None
    assert found.target.driver.text == "535.104.05"
    assert [(gpu.text, gpu.why) for gpu in found.target.gpus] == [
        ("A100", "--gpus a100"),
        ("sm_90", "--gpus sm_90"),
    ]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (
            InitRequest(gpus=("A10O",)),
            '--gpus \'A10O\' is neither a compute capability ("sm_80", "8.6") nor a GPU the '
            "knowledge base knows; did you mean 'A10' or 'A10G' or 'A100'? `reprobuild "
            "knowledge gpus` lists the names.",
        ),
        (
            InitRequest(driver="535"),
            "--driver '535' is not an NVIDIA driver version; give one such as 535.104.05 "
            "(`nvidia-smi` shows the host's).",
        ),
        (
            InitRequest(host=True, gpus=("A100",)),
            "--host reads the driver and GPUs from this machine; leave out --gpus and --driver, "
            "or leave out --host.",
        ),
    ],
)
def test_a_target_that_is_not_one_is_refused(
    tmp_path: Path, request_: InitRequest, message: str
) -> None:
    with pytest.raises(InitError) as caught:
        discover(tmp_path, request_, KB)
    assert str(caught.value) == message


# Malformed inputs: one paragraph naming the file and line.


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "requirements.txt",
            "numpy\ntorch >= 2.1 <2.6\n",
            "requirements.txt line 2: 'torch >= 2.1 <2.6' is not a PEP 508 requirement "
            "(Expected comma (within version specifier), semicolon (after version specifier) or "
            "end); fix or remove the line, then run `reprobuild init` again.",
        ),
        (
            "requirements.txt",
            "-r missing.txt\n",
            "requirements.txt line 1: -r names missing.txt, which does not exist (looked for "
            "{project}/missing.txt); fix the include, then run `reprobuild init` again.",
        ),
        (
            "pyproject.toml",
            '[project]\nname = "x"\ndependencies = [\n  "torch"\n  "numpy",\n]\n',
            "pyproject.toml is not valid TOML: Unclosed array (at line 5, column 3); fix it, then "
            "run `reprobuild init` again.",
        ),
        (
            "environment.yml",
            "dependencies:\n  - python=3.10\n  - pip:\n    - numpy\n   - bad\n",
            "environment.yml line 5 is not valid YAML (expected <block end>, but found "
            "'<block sequence start>'); fix it, then run `reprobuild init` again.",
        ),
    ],
)
def test_a_malformed_file_is_named_with_its_line(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(InitError) as caught:
        discover(tmp_path, InitRequest(), KB)
    assert str(caught.value) == message.format(project=tmp_path)
    assert caught.value.exit_code == 2


# What is written.


@pytest.mark.parametrize("name", ["requirements-repo", "pyproject-repo", "conda-repo"])
def test_the_written_spec_is_the_expected_text_and_loads(tmp_path: Path, name: str) -> None:
    project = repo(tmp_path, name)
    outcome = init_project(project, InitRequest(), KB)
    written = (project / "reprobuild.toml").read_text()
    assert written == (EXPECTED / f"{name}.toml").read_text()
    assert outcome.written and outcome.text == written
    spec = load_spec(project, KB).spec
    assert spec.name == {"pyproject-repo": "vision-trainer"}.get(name, name)


def test_the_summary_says_what_was_inferred_and_what_to_run_next(tmp_path: Path) -> None:
    project = repo(tmp_path, "requirements-repo")
    outcome = init_project(project, InitRequest(), KB)
    assert outcome.summary == (
        f"wrote {project}/reprobuild.toml",
        "  read:          requirements.txt, requirements/base.txt, .python-version",
        "  name:          requirements-repo (the folder's name: requirements-repo)",
        "  torch:         >=2.1,<2.6 (requirements.txt line 3: torch>=2.1,<2.6)",
        "  python:        3.10 (.python-version line 1: 3.10.13)",
        "  cuda:          auto",
        "  packages:      requirements = 'requirements.txt', read by the lock as written",
        '  companions:    torchvision>=0.16 ; python_version >= "3.9" (requirements/base.txt '
        "line 2)",
        "  not a package: --extra-index-url https://pypi.example.org/simple (requirements.txt "
        "line 7)",
        "  not read:      requirements-dev.txt (--group dev adds it)",
        "  target:        none: the image runs on any driver at or above its torch build's floor",
        "next: reprobuild resolve --explain, then reprobuild lock",
    )


def test_a_target_is_written_as_a_table_that_loads(tmp_path: Path) -> None:
    request = InitRequest(gpus=("A100", "H100"), driver="535.104.05")
    outcome = init_project(tmp_path, request, KB)
    assert outcome.text.endswith(
        "# [target]: from --gpus and --driver\n"
        "[target]\n"
        "# --driver 535.104.05\n"
        'driver = "535.104.05"\n'
        "gpus = [\n"
        '    "A100",  # --gpus A100\n'
        '    "H100",  # --gpus H100\n'
        "]\n"
    )
    target = load_spec(tmp_path, KB).spec.target
    assert str(target.driver) == "535.104.05"
    assert [gpu.capability.sm for gpu in target.gpus] == ["sm_80", "sm_90"]


def test_an_existing_spec_is_not_overwritten_without_force(tmp_path: Path) -> None:
    (tmp_path / "reprobuild.toml").write_text("# mine\n")
    with pytest.raises(InitError) as caught:
        init_project(tmp_path, InitRequest(), KB)
    assert str(caught.value) == (
        f"{tmp_path}/reprobuild.toml already exists; `reprobuild init --force` replaces it, "
        "`reprobuild init --dry-run` prints what it would write."
    )
    assert (tmp_path / "reprobuild.toml").read_text() == "# mine\n"
    dry = init_project(tmp_path, InitRequest(), KB, dry_run=True)
    assert not dry.written and dry.summary[0] == f"would write {tmp_path}/reprobuild.toml"
    assert (tmp_path / "reprobuild.toml").read_text() == "# mine\n"
    init_project(tmp_path, InitRequest(), KB, force=True)
    assert (tmp_path / "reprobuild.toml").read_text() == dry.text


def test_pyproject_gets_the_table_appended_and_keeps_its_bytes(tmp_path: Path) -> None:
    project = repo(tmp_path, "pyproject-repo")
    original = (project / "pyproject.toml").read_text()
    outcome = init_project(project, InitRequest(), KB, pyproject=True)
    after = (project / "pyproject.toml").read_text()
    assert after == original + "\n" + outcome.text
    assert outcome.text.startswith("[tool.reprobuild]\n# The reprobuild spec, written by")
    assert "# [tool.reprobuild.target]\n" in outcome.text
    assert not (project / "reprobuild.toml").exists()
    assert load_spec(project, KB).path == project / "pyproject.toml"
    with pytest.raises(InitError) as caught:
        init_project(project, InitRequest(), KB, pyproject=True)
    assert str(caught.value) == (
        f"{project}/pyproject.toml already has a [tool.reprobuild] spec; `reprobuild init "
        "--pyproject --force` replaces it, `reprobuild init --dry-run` prints what it would write."
    )


def test_pyproject_force_replaces_only_the_table_s_lines(tmp_path: Path) -> None:
    project = repo(tmp_path, "pyproject-repo")
    before = (project / "pyproject.toml").read_text()
    old_table = '[tool.reprobuild]\nname = "old"\n\n[tool.reprobuild.target]\ndriver = "1.2"\n'
    after_table = "\n# the next table's own comment\n[tool.other]\nx = 1\n"
    (project / "pyproject.toml").write_text(before + "\n" + old_table + after_table)
    outcome = init_project(project, InitRequest(groups=("train",)), KB, pyproject=True, force=True)
    assert (project / "pyproject.toml").read_text() == (before + "\n" + outcome.text + after_table)
    assert load_spec(project, KB).spec.packages[-1] == "datasets==3.0.1"


def test_table_span_ends_before_the_next_table_and_its_comments() -> None:
    lines = [
        "[project]\n",
        "[tool.reprobuild]\n",
        'name = "x"\n',
        "[tool.reprobuild.target]\n",
        "\n",
        "# about tool.x\n",
        "[ tool . x ]\n",
    ]
    assert table_span(lines) == (1, 4)
    assert table_span(lines[:3]) == (1, 3)
    assert table_span(["[tool]\n", "reprobuild = {}\n"]) is None


# The command line.


def test_init_verb_dry_run_prints_the_file_and_writes_nothing(tmp_path: Path) -> None:
    project = repo(tmp_path, "conda-repo")
    result = CliRunner().invoke(cli, ["-C", str(project), "init", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert result.stdout == (EXPECTED / "conda-repo.toml").read_text()
    assert result.stderr.splitlines()[0] == f"would write {project}/reprobuild.toml"
    assert not (project / "reprobuild.toml").exists()


def test_init_then_resolve_through_the_command(tmp_path: Path) -> None:
    project = repo(tmp_path, "requirements-repo")
    first = run("-C", str(project), "init")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[-1] == (
        "next: reprobuild resolve --explain, then reprobuild lock"
    )
    resolved = run("-C", str(project), "resolve")
    assert resolved.returncode == 0, resolved.stderr
    assert resolved.stdout.startswith(
        "requirements-repo: torch 2.5.1+cu124 (PyPI default) for Python 3.10\n"
    )
    again = run("-C", str(project), "init")
    assert again.returncode == 2 and again.stdout == ""
    assert again.stderr == (
        f"error: {project}/reprobuild.toml already exists; `reprobuild init --force` replaces "
        "it, `reprobuild init --dry-run` prints what it would write.\n"
    )


@pytest.mark.parametrize("name", ["pyproject-repo", "conda-repo", "setupcfg-repo"])
def test_each_fixture_resolves_after_init(tmp_path: Path, name: str) -> None:
    project = repo(tmp_path, name)
    init_project(project, InitRequest(), KB)
    result = run("-C", str(project), "resolve", "--json")
    assert result.returncode == 0, result.stderr


def test_host_without_nvml_is_one_clear_error(tmp_path: Path) -> None:
    if _nvml_loads():
        pytest.skip("this machine has NVML; test_host_target_reads_this_machine covers it")
    result = run("-C", str(tmp_path), "init", "--host")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (
        "error: --host reads this machine's driver and GPUs through NVML, which cannot here: no "
        "NVIDIA driver: the NVML library (libnvidia-ml.so.1) is not installed. Install the "
        "NVIDIA driver on a GPU machine; on a machine without a GPU this is expected. Run "
        "`reprobuild init --host` on the GPU machine, or give --gpus and --driver.\n"
    )
    assert not (tmp_path / "reprobuild.toml").exists()


@pytest.mark.gpu
def test_host_target_reads_this_machine(tmp_path: Path) -> None:
    from builder.engine.host import probe_nvidia

    host = probe_nvidia()
    outcome = init_project(tmp_path, InitRequest(host=True), KB)
    target = load_spec(tmp_path, KB).spec.target
    assert target.driver == host.driver
    assert {gpu.capability for gpu in target.gpus} == {gpu.capability for gpu in host.gpus}
    assert "# [target]: this host's, read through NVML\n[target]\n" in outcome.text


def _nvml_loads() -> bool:
    import ctypes

    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


# Review findings: each case as a repository would hold it.


def _files(project: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    return project


MARKED_TORCH = 'torch==2.0.1; python_version < "3.11"\ntorch==2.3.0; python_version >= "3.11"\n'


def test_torch_markers_are_evaluated_for_the_python_a_file_pins(tmp_path: Path) -> None:
    project = _files(tmp_path, {".python-version": "3.10\n", "requirements.txt": MARKED_TORCH})
    found = discover(project, InitRequest(), KB)
    assert (found.python.text, found.torch.text, found.requirements) == (
        "3.10",
        "2.0.1",
        "requirements.txt",
    )
    assert found.torch.why == 'requirements.txt line 1: torch==2.0.1; python_version < "3.11"'


@pytest.mark.parametrize(
    ("python", "torch"),
    [
        ("  - python=3.10\n", "2.0.1"),  # no patch named: 3.10.0
        ("  - python=3.10.4\n", "2.1.0"),
    ],
)
def test_python_full_version_markers_use_the_patch_the_file_names(
    tmp_path: Path, python: str, torch: str
) -> None:
    environment = (
        "dependencies:\n"
        f"{python}"
        "  - pip:\n"
        '    - torch==2.0.1; python_full_version < "3.10.1"\n'
        '    - torch==2.1.0; python_full_version >= "3.10.1"\n'
    )
    found = discover(_files(tmp_path, {"environment.yml": environment}), InitRequest(), KB)
    assert (found.python.text, found.torch.text) == ("3.10", torch)


def test_a_python_derived_from_torch_evaluates_torch_s_markers_for_itself(tmp_path: Path) -> None:
    pyproject = (
        '[project]\nname = "x"\nrequires-python = ">=3.8,<3.11"\ndependencies = [\n'
        "  \"torch==2.0.1; python_version < '3.11'\",\n"
        "  \"torch==2.3.0; python_version >= '3.11'\",\n]\n"
    )
    found = discover(_files(tmp_path, {"pyproject.toml": pyproject}), InitRequest(), KB)
    assert (found.python.text, found.python.why) == (
        "3.10",
        "the newest Python that pyproject.toml's requires-python '>=3.8,<3.11' admits and torch "
        "2.0.1 has wheels for",
    )
    assert found.torch.text == "2.0.1"


def test_a_requires_python_that_admits_none_of_torch_s_pythons_says_so(tmp_path: Path) -> None:
    pyproject = (
        '[project]\nname = "x"\nrequires-python = ">=3.14"\ndependencies = ["torch==2.5.1"]\n'
    )
    found = discover(_files(tmp_path, {"pyproject.toml": pyproject}), InitRequest(), KB)
    assert (found.python.text, found.python.why) == (
        "3.11",
        "the default Python, as pyproject.toml's requires-python '>=3.14' admits no Python that "
        "torch 2.5.1 has wheels for",
    )


def test_an_invalid_requires_python_is_named_with_its_file(tmp_path: Path) -> None:
    setup_cfg = (
        "[metadata]\nname = x\n[options]\npython_requires = >=3.6.*\n"
        "install_requires =\n    torch\n"
    )
    with pytest.raises(InitError) as caught:
        discover(_files(tmp_path, {"setup.cfg": setup_cfg}), InitRequest(), KB)
    assert str(caught.value) == (
        "setup.cfg: python_requires = '>=3.6.*' is not a PEP 440 version specifier; write one "
        "such as '>=3.10', then run `reprobuild init` again."
    )


def test_a_cuda_index_line_becomes_the_spec_s_cuda_and_resolves_to_its_build(
    tmp_path: Path,
) -> None:
    index = "--extra-index-url https://download.pytorch.org/whl/cu118"
    project = _files(tmp_path / "proj", {"requirements.txt": f"torch==2.1.0\n{index}\n"})
    found = discover(project, InitRequest(), KB)
    assert found.cuda is not None and found.cpu_only is None
    assert (found.cuda.text, found.cuda.why) == (
        "11.8",
        f"requirements.txt line 2: {index} (PyTorch's cu118 index)",
    )
    assert (found.torch.text, found.requirements) == ("2.1.0", "requirements.txt")
    outcome = init_project(project, InitRequest(), KB)
    assert (
        f"# requirements.txt line 2: {index} (PyTorch's cu118\n# index)\n"
        'cuda = "11.8"\n# the packages of requirements.txt,' in outcome.text
    )
    resolved = run("-C", str(project), "resolve")
    assert resolved.returncode == 0, resolved.stderr
    assert resolved.stdout.startswith("proj: torch 2.1.0+cu118 ")


def test_an_unpinned_torch_from_a_cuda_index_is_the_newest_series_with_that_build(
    tmp_path: Path,
) -> None:
    index = "-i https://download.pytorch.org/whl/cu118"
    found = discover(_files(tmp_path, {"requirements.txt": f"torch\n{index}\n"}), InitRequest(), KB)
    assert (found.torch.text, found.torch.why) == (
        "2.7.*",
        "the newest torch release series the knowledge base has a cu118 build of; "
        "requirements.txt line 1 leaves torch unpinned",
    )
    assert found.cuda is not None and found.cuda.text == "11.8"


def test_a_cpu_index_line_writes_cpu_only(tmp_path: Path) -> None:
    index = "--index-url=https://download.pytorch.org/whl/cpu"
    project = _files(tmp_path, {"requirements.txt": f"{index}\ntorch>=2.4,<2.6\n"})
    outcome = init_project(project, InitRequest(), KB)
    assert outcome.findings.cuda is None
    assert (
        f'torch = ">=2.4,<2.6"\n# requirements.txt line 1: {index} (PyTorch\'s cpu index):\n'
        "# an image without CUDA\ncpu_only = true\n" in outcome.text
    )
    assert outcome.summary[5] == (
        f"  cuda:          none: cpu_only = true (requirements.txt line 1: {index} (PyTorch's "
        "cpu index): an image without CUDA)"
    )
    assert "target" not in outcome.text  # a CPU image runs on no GPU: no [target] example
    spec = load_spec(project, KB).spec
    assert spec.cpu_only and spec.torch_text == ">=2.4,<2.6"


def test_a_torch_pinned_to_its_cpu_build_writes_cpu_only(tmp_path: Path) -> None:
    project = _files(tmp_path, {"requirements.txt": "torch==2.5.1+cpu\n"})
    outcome = init_project(project, InitRequest(), KB)
    assert (
        'torch = "2.5.1+cpu"\n# torch\'s +cpu build (requirements.txt line 1: torch==2.5.1+cpu): '
        "an image without CUDA\ncpu_only = true\n" in outcome.text
    )
    spec = load_spec(project, KB).spec
    assert spec.cpu_only and spec.torch_variant == "cpu"
    with pytest.raises(InitError) as caught:
        init_project(project, InitRequest(gpus=("A100",)), KB, force=True)
    assert str(caught.value) == (
        "--host, --gpus and --driver name where a GPU image runs, but torch is a CPU build "
        "(torch's +cpu build (requirements.txt line 1: torch==2.5.1+cpu): an image without "
        "CUDA); leave them out, or name a CUDA build of torch."
    )


def test_a_pytorch_index_reprobuild_cannot_build_from_copies_the_packages(tmp_path: Path) -> None:
    index = "--extra-index-url https://download.pytorch.org/whl/rocm6.1"
    project = _files(tmp_path, {"requirements.txt": f"torch==2.4.1\nnumpy\n{index}\n"})
    found = discover(project, InitRequest(), KB)
    assert found.requirements is None and found.cuda is None and found.cpu_only is None
    assert [(a.text, a.reason, a.portable) for a in found.packages.asides] == [
        (
            index,
            "PyTorch's rocm6.1 index: reprobuild makes CUDA and CPU images only, so the packages "
            "are copied and torch is one of its builds",
            False,
        )
    ]
    assert [item.text for item in found.package_lines] == ["numpy"]


def test_an_environment_pip_section_index_line_sets_cuda(tmp_path: Path) -> None:
    environment = (
        "dependencies:\n  - python=3.10\n  - pip:\n    - torch==2.1.0\n"
        "    - --extra-index-url https://download.pytorch.org/whl/cu118\n"
    )
    found = discover(_files(tmp_path, {"environment.yml": environment}), InitRequest(), KB)
    assert found.cuda is not None and found.cuda.text == "11.8"


def test_an_include_in_an_environment_pip_section_is_followed(tmp_path: Path) -> None:
    environment = "dependencies:\n  - python=3.10\n  - pip:\n    - -r deps/train.txt\n    - tqdm\n"
    project = _files(
        tmp_path, {"environment.yml": environment, "deps/train.txt": "torch==2.4.1\nnumpy\n"}
    )
    found = discover(project, InitRequest(), KB)
    assert (found.torch.text, found.torch.why) == ("2.4.1", "deps/train.txt line 1: torch==2.4.1")
    assert [(i.text, str(i.origin)) for i in found.package_lines] == [
        ("numpy", "deps/train.txt line 2"),
        ("tqdm", "environment.yml line 5"),
    ]
    assert found.packages.asides == ()
    assert found.read == ("environment.yml", "deps/train.txt")


def test_an_unpinned_torch_is_found_on_its_own_line_not_in_another_name(tmp_path: Path) -> None:
    pyproject = '[project]\nname = "torch-trainer"\ndependencies = [\n  "torch",\n]\n'
    found = discover(_files(tmp_path, {"pyproject.toml": pyproject}), InitRequest(), KB)
    assert found.torch.why == (
        "the newest torch release series the knowledge base has; pyproject.toml line 4 leaves "
        "torch unpinned"
    )


def test_pyproject_force_still_refuses_when_reprobuild_toml_wins(tmp_path: Path) -> None:
    project = repo(tmp_path, "pyproject-repo")
    (project / "reprobuild.toml").write_text("# mine\n")
    before = (project / "pyproject.toml").read_text()
    for dry_run in (False, True):
        with pytest.raises(InitError) as caught:
            init_project(project, InitRequest(), KB, pyproject=True, force=True, dry_run=dry_run)
        assert str(caught.value) == (
            f"{project}/reprobuild.toml exists and wins over a [tool.reprobuild] table, so the "
            "table would have no effect (--force does not change that); remove "
            f"{project}/reprobuild.toml first, or leave out --pyproject (with --force to replace "
            "it)."
        )
    assert (project / "pyproject.toml").read_text() == before


def test_pyproject_with_an_inline_tool_table_is_refused_with_the_way_out(tmp_path: Path) -> None:
    pyproject = (
        'tool = {ruff = {line-length = 100}}\n[project]\nname = "x"\ndependencies = ["torch"]\n'
    )
    project = _files(tmp_path, {"pyproject.toml": pyproject})
    with pytest.raises(InitError) as caught:
        init_project(project, InitRequest(), KB, pyproject=True)
    assert str(caught.value) == (
        f"{project}/pyproject.toml declares its tool table inline (tool = {{...}}), so a "
        "[tool.reprobuild] table cannot be appended to it (Cannot declare ('tool', "
        "'reprobuild') twice (at line 6, column 17)); leave out --pyproject to write "
        "reprobuild.toml instead."
    )
    assert (project / "pyproject.toml").read_text() == pyproject


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_missing_project_folder_is_a_usage_error(tmp_path: Path, dry_run: bool) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(InitError) as caught:
        init_project(missing, InitRequest(), KB, dry_run=dry_run)
    assert str(caught.value) == (
        f"the project folder {missing} does not exist; run `reprobuild init` in the repository's "
        "folder, or name that folder with `reprobuild -C FOLDER init`."
    )
    assert caught.value.exit_code == 2 and not missing.exists()


def test_init_in_a_missing_folder_exits_2_through_the_command(tmp_path: Path) -> None:
    result = run("-C", str(tmp_path / "missing"), "init", "--dry-run")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"error: the project folder {tmp_path}/missing does not exist; run `reprobuild init` in "
        "the repository's folder, or name that folder with `reprobuild -C FOLDER init`.\n"
    )


def test_a_grace_gpu_says_the_image_is_arm64_and_warns_without_a_build(tmp_path: Path) -> None:
    project = repo(tmp_path, "requirements-repo")  # torch>=2.1,<2.6: no CUDA build on arm64
    outcome = init_project(project, InitRequest(gpus=("GH200",), driver="580.65.06"), KB)
    assert outcome.summary[-3:] == (
        "  target:        GH200, driver >= 580.65.06 (from --gpus and --driver)",
        "  platform:      linux/arm64 (a target GPU is a Grace superchip, whose CPU is Arm); "
        "warning: torch >=2.1,<2.6 has no CUDA build with known GPU kernels for linux/arm64, so "
        "`reprobuild resolve` refuses it: torch 2.7.0 (2.7.0+cu128) is the first release with one",
        "next: reprobuild resolve --explain, then reprobuild lock",
    )
    bare = tmp_path / "bare"
    bare.mkdir()
    newest = init_project(bare, InitRequest(gpus=("GH200",), driver="580.65.06"), KB)
    assert newest.summary[-2] == (
        "  platform:      linux/arm64 (a target GPU is a Grace superchip, whose CPU is Arm)"
    )
    (tmp_path / "x").mkdir()
    plain = init_project(tmp_path / "x", InitRequest(gpus=("H100",)), KB)
    assert not any(line.startswith("  platform:") for line in plain.summary)
