"""The GitHub Action (action.yml) run for real: its `run:` steps, in order, with bash, with the
environment GitHub gives them, against the tests' engine and registry.

GitHub itself cannot run here, so `run_action` does its part: the inputs with their defaults,
each step's `env:` with the `${{ }}` forms the action uses substituted, a GITHUB_OUTPUT,
GITHUB_STEP_SUMMARY and GITHUB_PATH file per step, `if: always()`, and the action's outputs
read from its steps' outputs. The `uses:` step (actions/setup-python) is what it leaves out: the
Python is this one.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from builder import __version__, layout
from builder.build import buildrecord
from builder.engine.registry import RegistryClient
from builder.reference import ImageReference
from tests.gitrepo import git
from tests.infra import REGISTRY
from tests.integration.conftest import unnamed_since
from tests.integration.test_build import build_project, small_project

ROOT = Path(__file__).parents[2]
ACTION = ROOT / "action.yml"
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
GITHUB = {"actor": "octocat", "token": "ghs_not-a-real-token", "action_path": str(ROOT)}


@dataclass
class ActionRun:
    """What the action's steps did: each step's exit code, outputs and log; the summary."""

    exit_codes: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)  # step id -> outputs
    logs: dict[str, str] = field(default_factory=dict)
    summary: str = ""
    action_outputs: dict[str, str] = field(default_factory=dict)

    def log(self) -> str:
        return "".join(
            f"== {name}: {self.exit_codes[name]}\n{text}" for name, text in self.logs.items()
        )


def action() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(ACTION.read_text())
    return loaded


def substitute(text: str, inputs: dict[str, str], steps: dict[str, dict[str, str]]) -> str:
    """`text` with each `${{ }}` of the forms the action uses replaced as GitHub would; another
    form is an error here, so that the action cannot come to depend on one this runner fakes."""

    def value(match: re.Match[str]) -> str:
        expression = match.group(1)
        if expression.startswith("inputs."):
            return inputs[expression.removeprefix("inputs.")]
        if expression.startswith("github."):
            return GITHUB[expression.removeprefix("github.")]
        step = re.fullmatch(r"steps\.([\w-]+)\.outputs\.([\w-]+)", expression)
        if step is None:
            raise ValueError(f"the test runner does not know the expression {expression!r}")
        return steps.get(step.group(1), {}).get(step.group(2), "")

    return EXPRESSION.sub(value, text)


def read_outputs(path: Path) -> dict[str, str]:
    outputs = {}
    for line in path.read_text().splitlines():
        name, equals, text = line.partition("=")
        assert equals, f"{path}: {line!r} is not NAME=VALUE"
        outputs[name] = text
    return outputs


def run_action(given: dict[str, str], workspace: Path, temp: Path) -> ActionRun:
    """The action's run: steps as GitHub runs them, with `given` as its `with:`."""
    metadata = action()
    inputs = {
        name: substitute(str(spec.get("default", "")), {}, {})
        for name, spec in metadata["inputs"].items()
    }
    assert set(given) <= set(inputs), f"no such inputs: {set(given) - set(inputs)}"
    inputs.update(given)
    result = ActionRun()
    failed = False
    added_path: list[str] = []
    for step in metadata["runs"]["steps"]:
        if "uses" in step:
            continue
        assert step.get("if") in (None, "always()"), f"the test runner cannot judge {step['if']}"
        if failed and step.get("if") != "always()":
            continue
        name = step.get("id", step["name"])
        files = {
            kind: temp / f"{len(result.logs)}.{kind}" for kind in ("output", "summary", "path")
        }
        for path in files.values():
            path.touch()
        environment = {
            **os.environ,
            "PATH": os.pathsep.join([*added_path, os.environ["PATH"]]),
            "GITHUB_OUTPUT": str(files["output"]),
            "GITHUB_STEP_SUMMARY": str(files["summary"]),
            "GITHUB_PATH": str(files["path"]),
            "GITHUB_ACTION_PATH": GITHUB["action_path"],
            "RUNNER_TEMP": str(temp),
            **{
                key: substitute(str(text), inputs, result.outputs)
                for key, text in step.get("env", {}).items()
            },
        }
        script = temp / f"{len(result.logs)}.sh"
        script.write_text(step["run"])
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=workspace,
            env=environment,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        result.exit_codes[name] = done.returncode
        result.logs[name] = done.stdout + done.stderr
        result.outputs[name] = read_outputs(files["output"])
        result.summary += files["summary"].read_text()
        added_path = [*files["path"].read_text().split(), *added_path]
        failed = failed or done.returncode != 0
    result.action_outputs = {
        name: substitute(spec["value"], inputs, result.outputs)
        for name, spec in metadata["outputs"].items()
    }
    return result


def on_path() -> str:
    """This Python's scripts folder: where `reprobuild` is installed, first on PATH."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])


def test_the_action_builds_pushes_and_publishes_the_digest(
    tmp_path: Path, engine_client: Any, test_base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """install "false": the `reprobuild` of this checkout (the network test below installs it);
    smoke "none" with a report: the stand-in torch of the small project cannot run the smoke
    test (the CPU smoke test runs on the real torch image in test_smoke.py)."""
    monkeypatch.setenv("PATH", on_path())
    before = set(engine_client.client.api.images(quiet=True, all=True))
    workspace = tmp_path / "workspace"
    project = small_project(workspace / "project")
    git(workspace, "init", "-q")
    git(workspace, "add", "-A")
    git(workspace, "commit", "-qm", "the training project")
    # The image the action builds is this one: a clean build of the lock gives one image ID.
    expected, _ = build_project(engine_client, project, tmp_path / "cache")
    report = tmp_path / "smoke.json"
    report.write_text(
        json.dumps(
            {
                "image_id": expected.image_id,
                "verdict": "pass",
                "mode": "cpu",
                "key": {"cpu": "test"},
                "kernels": {"matmul_fp32": {"runs": ["0" * 64, "0" * 64]}},
            }
        )
    )
    temp = tmp_path / "runner-temp"
    temp.mkdir()
    tag = f"{REGISTRY}/test/action:ci"
    try:
        run = run_action(
            {
                "project": "project",
                "push": tag,
                "smoke": "none",
                "smoke-report": str(report),
                "publish": "true",
                "install": "false",
                "registry-token": "local-registry-password",
            },
            workspace,
            temp,
        )
        assert set(run.exit_codes.values()) == {0}, run.log()
        record = buildrecord.read(project)
        digest = record.manifest_digest
        assert digest is not None and record.image_id == expected.image_id
        image = f"{REGISTRY}/test/action@{digest}"
        assert run.action_outputs == {
            "image": image,
            "digest": digest,
            "image-id": expected.image_id,
            "lock-digest": expected.lock,
            "smoke": "none",
            "manifest": f"project/{layout.MANIFEST_FILE}",
        }
        with RegistryClient() as client:
            assert client.resolve(ImageReference.parse(tag)).digest == digest
        manifest = json.loads((project / layout.MANIFEST_FILE).read_text())
        assert manifest["image"]["reference"] == image
        assert run.summary == (
            "### reprobuild\n\n| | |\n|---|---|\n"
            f"| image | `{image}` |\n| digest | `{digest}` |\n"
            f"| image ID | `{expected.image_id}` |\n| lock | `{expected.lock}` |\n"
            f"| smoke test | none |\n| manifest | `project/{layout.MANIFEST_FILE}` |\n"
        )
        # The registry login lived in the runner's temp folder until the last step.
        config = run.outputs["login"]["docker-config"]
        assert config == str(temp / "reprobuild-docker-config")
        assert not Path(config).exists()
        assert GITHUB["token"] not in run.log()
        assert "local-registry-password" not in run.log()
    finally:
        engine_client.remove_image(expected.image_id)  # by ID: the pushed tag goes with it
        engine_client.remove_image(expected.dependencies or "")
        for image_id in unnamed_since(engine_client, before):
            engine_client.remove_image(image_id)


def test_a_failed_step_stops_the_action_and_the_summary_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spec changed after locking: `lock --check` fails, nothing is built, and the steps
    that always run (the summary, forgetting the login) still do."""
    monkeypatch.setenv("PATH", on_path())
    project = small_project(tmp_path / "project")
    with (project / "reprobuild.toml").open("a") as spec:
        spec.write('packages = ["numpy==2.1.3"]\n')
    temp = tmp_path / "runner-temp"
    temp.mkdir()
    run = run_action({"project": "project", "install": "false"}, tmp_path, temp)
    assert run.exit_codes == {
        "Check the inputs": 0,
        "Install reprobuild": 0,
        "login": 0,
        "Check the lock": 1,
        "Summary": 0,
        "Forget the registry login": 0,
    }, run.log()
    assert run.logs["Check the lock"].endswith("run `reprobuild lock` to update the lock.\n")
    assert run.summary == (
        "### reprobuild\n\nNo image: the build did not finish (see the log of the action's "
        "steps).\n"
    )
    assert run.action_outputs["digest"] == ""


def login_step(push: str, token: str, temp: Path) -> subprocess.CompletedProcess[str]:
    """The login step alone, as the runner runs it: HOME is `temp`, so the runner's own Docker
    config is `temp/.docker/config.json`."""
    login = next(step for step in action()["runs"]["steps"] if step.get("id") == "login")
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": str(temp),
        "RUNNER_TEMP": str(temp),
        "GITHUB_OUTPUT": str(temp / "output"),
        "INPUT_PUSH": push,
        "INPUT_REGISTRY_USERNAME": "octocat",
        "INPUT_REGISTRY_TOKEN": token,
        "JOB_TOKEN": GITHUB["token"],
    }
    return subprocess.run(
        ["bash", "-eo", "pipefail", "-c", login["run"]],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )


def test_the_login_writes_only_the_push_registry_for_the_token(tmp_path: Path) -> None:
    cases = {
        "ghcr.io/lab/model:v1": "ghcr.io",
        f"{REGISTRY}/lab/model:v1": REGISTRY,
        "lab/model:v1": "https://index.docker.io/v1/",
        "model:v1": "https://index.docker.io/v1/",
    }
    for number, (push, key) in enumerate(cases.items()):
        temp = tmp_path / str(number)
        temp.mkdir()
        done = login_step(push, "s3cr3t token", temp)
        assert "s3cr3t" not in done.stdout + done.stderr
        config = temp / "reprobuild-docker-config" / "config.json"
        assert read_outputs(temp / "output") == {"docker-config": str(config.parent)}
        assert oct(config.stat().st_mode & 0o777) == "0o600"
        auth = base64.b64encode(b"octocat:s3cr3t token").decode()
        assert json.loads(config.read_text()) == {"auths": {key: {"auth": auth}}}


def test_the_jobs_token_goes_to_ghcr_alone(tmp_path: Path) -> None:
    """Without registry-token, ghcr.io gets the job's token and any other registry none: the
    runner's own login is used there."""
    ghcr, elsewhere = tmp_path / "ghcr", tmp_path / "elsewhere"
    for folder in (ghcr, elsewhere):
        folder.mkdir()
    login_step("ghcr.io/lab/model:v1", "", ghcr)
    config = json.loads((ghcr / "reprobuild-docker-config" / "config.json").read_text())
    auth = base64.b64encode(f"octocat:{GITHUB['token']}".encode()).decode()
    assert config == {"auths": {"ghcr.io": {"auth": auth}}}
    done = login_step("quay.io/lab/model:v1", "", elsewhere)
    assert done.stdout == (
        "no login: registry-token is empty and quay.io is not ghcr.io; the runner's Docker "
        "login is used\n"
    )
    assert not (elsewhere / "reprobuild-docker-config").exists()
    assert not (elsewhere / "output").exists()


def test_the_login_keeps_the_runners_own_logins(tmp_path: Path) -> None:
    own = tmp_path / ".docker"
    own.mkdir()
    (own / "config.json").write_text(
        json.dumps(
            {
                "auths": {"quay.io": {"auth": "cXVheTpxdWF5"}},
                "credHelpers": {"ghcr.io": "gh", "gcr.io": "gcloud"},
            }
        )
    )
    login_step("ghcr.io/lab/model:v1", "s3cr3t", tmp_path)
    config = json.loads((tmp_path / "reprobuild-docker-config" / "config.json").read_text())
    auth = base64.b64encode(b"octocat:s3cr3t").decode()
    assert config == {
        "auths": {"quay.io": {"auth": "cXVheTpxdWF5"}, "ghcr.io": {"auth": auth}},
        "credHelpers": {"gcr.io": "gcloud"},
    }


@pytest.mark.network
def test_the_install_step_installs_the_actions_own_reprobuild(tmp_path: Path) -> None:
    """The real install: a virtual environment from the action's checkout, dependencies from
    PyPI, put on PATH for the later steps."""
    temp = tmp_path / "runner-temp"
    temp.mkdir()
    metadata = action()
    install = next(
        step for step in metadata["runs"]["steps"] if step["name"] == "Install reprobuild"
    )
    github_path = temp / "path"
    done = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", install["run"]],
        env={
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", str(tmp_path)),
            "RUNNER_TEMP": str(temp),
            "GITHUB_PATH": str(github_path),
            "GITHUB_ACTION_PATH": str(ROOT),
            "INPUT_INSTALL": "true",
        },
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == f"reprobuild, version {__version__}"
    assert github_path.read_text() == f"{temp / 'reprobuild-venv' / 'bin'}\n"
