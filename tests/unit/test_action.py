"""The GitHub Action (action.yml) and the workflows: actionlint over them, the action's shape,
and its shell (tests/integration/test_action.py runs that shell against the real engine)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
EXAMPLES = sorted((ROOT / "docs" / "examples").glob("*.yml"))
SCRIPTS = Path(sys.executable).parent  # the test tools' executables: actionlint, shellcheck


def action() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "action.yml").read_text())
    return loaded


def run_steps() -> list[dict[str, Any]]:
    return [step for step in action()["runs"]["steps"] if "run" in step]


def tool(name: str) -> str:
    found = shutil.which(name, path=os.pathsep.join([str(SCRIPTS), os.environ["PATH"]]))
    if found is None:
        pytest.fail(
            f"{name} is not installed: `./scripts/setup` installs the test extra beside Python"
        )
    return found


def actionlint(*files: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    command = [tool("actionlint"), "-no-color", *map(str, files)]
    environment = {**os.environ, "PATH": os.pathsep.join([str(SCRIPTS), os.environ["PATH"]])}
    return subprocess.run(
        command, cwd=cwd, env=environment, capture_output=True, text=True, check=False
    )


def test_actionlint_passes_the_workflows_and_the_example() -> None:
    assert [path.name for path in WORKFLOWS] == ["action.yml", "ci.yml", "knowledge-refresh.yml"]
    assert [path.name for path in EXAMPLES] == ["reprobuild.yml"]
    result = actionlint(*WORKFLOWS, *EXAMPLES)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_actionlint_checks_the_inputs_a_workflow_gives_the_action(tmp_path: Path) -> None:
    """A workflow that misspells an input of `uses: ./` fails: actionlint read action.yml."""
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    shutil.copy(ROOT / "action.yml", tmp_path / "action.yml")
    workflow = (ROOT / ".github" / "workflows" / "action.yml").read_text()
    assert "          smoke: cpu\n" in workflow
    broken = tmp_path / ".github" / "workflows" / "action.yml"
    broken.write_text(workflow.replace("          smoke: cpu\n", "          smoek: cpu\n"))
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    result = actionlint(broken.relative_to(tmp_path), cwd=tmp_path)
    assert result.returncode == 1
    assert (
        '.github/workflows/action.yml:20:11: input "smoek" is not defined in action "reprobuild" '
        'defined at "./". available inputs are "install", "project", "publish", "push", '
        '"python-version", "registry-token", "registry-username", "smoke", "smoke-report" '
        "[action]\n"
    ) in result.stdout


def test_the_action_is_composite_and_uses_every_input() -> None:
    metadata = action()
    assert metadata["runs"]["using"] == "composite"
    assert set(metadata["inputs"]) == {
        "project",
        "push",
        "smoke",
        "smoke-report",
        "publish",
        "registry-username",
        "registry-token",
        "python-version",
        "install",
    }
    text = yaml.safe_dump(metadata["runs"])
    unused = [name for name in metadata["inputs"] if f"inputs.{name} }}}}" not in text]
    assert unused == []
    step_ids = {step.get("id") for step in metadata["runs"]["steps"]}
    for name, output in metadata["outputs"].items():
        match = re.fullmatch(r"\$\{\{ steps\.([\w-]+)\.outputs\.[\w-]+ \}\}", output["value"])
        assert match is not None and match.group(1) in step_ids, name


def test_no_expression_reaches_a_shell() -> None:
    """Inputs reach the shell through `env:` alone: `${{ }}` in a script is pasted into its
    code before bash reads it (script injection)."""
    steps = run_steps()
    assert len(steps) == 10
    assert [step["name"] for step in steps if "${{" in step["run"]] == []
    assert {step["shell"] for step in steps} == {"bash"}
    # tests/integration/test_action.py runs these steps; it judges these conditions alone.
    assert {step.get("if") for step in steps} == {None, "always()"}


def test_the_shell_of_each_step_passes_shellcheck() -> None:
    shellcheck = tool("shellcheck")
    for step in run_steps():
        result = subprocess.run(
            [shellcheck, "--shell=bash", "-"],
            input=step["run"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert (result.returncode, result.stdout) == (0, ""), step["name"]


def test_the_docs_list_every_input_and_output() -> None:
    metadata = action()
    page = (ROOT / "docs" / "github-action.md").read_text()
    rows = re.findall(r"^\| `([\w-]+)` \|", page, flags=re.MULTILINE)
    assert rows == [*metadata["inputs"], *metadata["outputs"]]
    assert (ROOT / "docs" / "examples" / "reprobuild.yml").read_text() in page
