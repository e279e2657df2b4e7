"""Integration fixtures: the real engine and registry that scripts/infra starts.

These tests do not skip when the infrastructure is missing: they fail and say how to start it,
so a CI run cannot pass without having exercised the engine and the registry.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from builder.build import buildrecord
from builder.build.buildrecord import BuildRecord
from builder.cli.main import cli
from builder.engine.sdk import Engine
from builder.errors import ReprobuildError
from tests.gitrepo import git
from tests.infra import BASE, DEBIAN_MIRROR, MINBASE, STATE, registry_has

TRAINING_SCRIPT = Path(__file__).parents[2] / "images" / "example" / "train.py"


@pytest.fixture(scope="session")
def engine_client() -> Iterator[Engine]:
    try:
        engine = Engine.connect()
    except ReprobuildError as error:
        pytest.fail(f"{error}\nRun `scripts/infra up` (the test command does) first.")
    with engine:
        yield engine


def _in_registry(reference: str) -> str:
    if not registry_has(reference):
        pytest.fail(f"{reference} is not in the local registry: run `scripts/infra up` first.")
    return reference


@pytest.fixture(scope="session")
def test_base(engine_client: Any) -> str:
    return _in_registry(BASE)


@pytest.fixture(scope="session")
def python_less_base(engine_client: Any) -> str:
    return _in_registry(MINBASE)


@dataclass(frozen=True)
class Built:
    project: Path
    record: BuildRecord


SPEC = f"""name = "lab/torch-e2e"
python = "3.11"
torch = "2.5.1"
cuda = "auto"
base = "{BASE}"
packages = ["numpy==2.1.3"]

[target]
driver = "535.104.05"
gpus = ["A100", "H100"]
"""


@pytest.fixture(scope="session")
def torch_image(tmp_path_factory: pytest.TempPathFactory, engine_client: Any) -> Iterator[Built]:
    """The PyPI CUDA build of torch 2.5.1, locked and built once for the session (minutes)."""
    project = tmp_path_factory.mktemp("torch-e2e")
    project.chmod(0o755)  # the runs' user reads it (pytest makes its folders for root alone)
    (project / "reprobuild.toml").write_text(SPEC)
    (project / "train.py").write_text("import torch\nprint(torch.ones(2).sum().item())\n")
    shutil.copy(TRAINING_SCRIPT, project / "fit.py")  # train.py is the tests' own
    # A checkout whose commit is the image's code, so that its runs can be published.
    for verb in (["lock"], ["build", "--plain"]):
        arguments = ["-C", str(project), *verb, "--debian-mirror", DEBIAN_MIRROR]
        result = CliRunner().invoke(cli, arguments)
        assert result.exit_code == 0, f"{result.output}\n{result.exception}"
        if verb == ["lock"]:
            git(project, "init", "-q")
            git(project, "add", "-A")
            git(project, "commit", "-qm", "the training project")
    record = buildrecord.read(project)
    yield Built(project, record)
    # By ID: every tag and pushed name goes with it (the torch layers alone are gigabytes), so
    # that repeated runs do not fill the disk. The build leaves nothing else.
    engine_client.remove_image(record.image_id)
    if record.dependencies:
        engine_client.remove_image(record.dependencies)


def unnamed_since(engine_client: Any, before: set[str]) -> list[str]:
    """The untagged images the engine holds now and did not hold in `before`: what builds made
    in between and left without a name (a template override's other stages)."""
    dangling = engine_client.client.api.images(filters={"dangling": True}, quiet=True)
    return [image_id for image_id in dangling if image_id not in before]


SLURM_CONF = STATE / "slurm" / "slurm.conf"  # where scripts/infra writes it


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[dict[str, str]]:
    """The throw-away two-node Slurm of scripts/infra (loopback only), up for the session; the
    environment its clients need (SLURM_CONF; DOCKER_HOST, the tests' engine, is already set)."""
    infra = Path(__file__).parents[2] / "scripts" / "infra"
    started = subprocess.run([infra, "slurm", "up"], capture_output=True, text=True, check=False)
    if started.returncode != 0:
        pytest.fail(f"`scripts/infra slurm up` failed:\n{started.stdout}{started.stderr}")
    try:
        yield {**os.environ, "SLURM_CONF": str(SLURM_CONF)}
    finally:
        subprocess.run([infra, "slurm", "down"], capture_output=True, check=False)
