"""The entry point's own parser for a plain `reprobuild run`, held to click's results, and what
that path imports (its start is measured against a plain `docker run`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from builder import launch, layout
from builder.cli import run_report
from builder.cli.main import cli
from builder.run import args, run


def click_plan(arguments: list[str], monkeypatch: pytest.MonkeyPatch) -> run.RunPlan:
    """The plan the click CLI hands to the run stage for these arguments."""
    seen: list[run.RunPlan] = []

    def command(plan: run.RunPlan) -> int:  # stands in for the run itself: only parsing here
        seen.append(plan)
        return 0

    monkeypatch.setattr(run_report, "run_and_report", command)
    with pytest.raises(SystemExit) as exited:
        cli.main(args=arguments, standalone_mode=False)
    assert exited.value.code == 0
    (plan,) = seen
    return plan


def fields(plan: run.RunPlan) -> tuple[object, ...]:
    return plan.project, plan.image, plan.command, plan.outputs, plan.gpus


PLAIN = [
    ["run", "--", "python", "train.py", "--epochs", "3"],
    ["-C", "{project}", "run", "--gpus", "all", "--", "python", "train.py"],
    ["--project={project}", "run", "--image=lab/train@sha256:" + "a" * 64, "--", "true"],
    ["--project", "{project}", "--knowledge", "{project}", "run", "--gpus=2", "--", "x"],
    ["-C", "{project}", "run", "--outputs", "out", "--image", "a:b", "--", "sh", "-c", "--"],
    ["run", "--gpus", "1", "--gpus", "all", "--", "x"],  # the last one counts, as in click
    ["-C", "{project}/../{name}", "run", "--", "x"],
]


@pytest.mark.parametrize("shape", PLAIN)
def test_a_plain_run_parses_as_click_parses_it(
    shape: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    arguments = [part.format(project=project, name=project.name) for part in shape]
    monkeypatch.chdir(project)
    mine = launch.plain_run(arguments)
    assert mine is not None
    assert fields(mine) == fields(click_plan(arguments, monkeypatch))
    assert mine.project == str(project)  # absolute, resolved


NOT_PLAIN = [
    ["run", "python", "train.py"],  # no --: click takes the command as it does
    ["run", "--help"],
    ["-h"],
    ["--version"],
    ["resolve"],
    ["run", "--gpus", "0", "--", "x"],  # click refuses it, with its usage message
    ["run", "--gpus", "many", "--", "x"],
    ["run", "--gpu", "all", "--", "x"],  # a typo
    ["run", "--image", "", "--", "x"],  # empty: click reads the build record instead
    ["run", "--image"],
    ["run", "--"],
    ["run", "--", "--epochs", "3"],  # a command starting with an option: click's checks
    ["-Cproject", "run", "--", "x"],
    ["-C=project", "run", "--", "x"],
    ["run", "--project", "x", "--", "x"],  # a global option after the verb
    ["-C", "{file}", "run", "--", "x"],  # click: a folder, not a file
    ["run", "--outputs", "{file}", "--", "x"],
]


@pytest.mark.parametrize("shape", NOT_PLAIN)
def test_anything_else_goes_to_click(shape: list[str], tmp_path: Path) -> None:
    file = tmp_path / "a-file"
    file.write_text("")
    assert launch.plain_run([part.format(file=file) for part in shape]) is None


def test_a_knowledge_folder_from_the_environment_that_is_a_file_goes_to_click(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "a-file"
    file.write_text("")
    monkeypatch.setenv(layout.KNOWLEDGE_VARIABLE, str(file))
    assert launch.plain_run(["run", "--", "x"]) is None


@pytest.mark.parametrize("option", args.CLICK_RUN_OPTIONS)
def test_options_only_click_knows_go_to_click(option: str) -> None:
    assert launch.plain_run(["run", option, "x=y", "--", "python", "train.py"]) is None


def test_the_option_names_are_clicks() -> None:
    """An option added to click's `run` (or the group) must be taught to this parser too."""
    run_command = cli.commands["run"]
    run_options = {opt for param in run_command.params for opt in param.opts if opt[0] == "-"}
    assert run_options == {*args.RUN_OPTIONS, *args.CLICK_RUN_OPTIONS}
    group_options = {opt for param in cli.params for opt in param.opts}
    assert group_options == {*args.GLOBAL_OPTIONS, "--version"}


HEAVY = ("click", "docker", "requests", "rich", "dataclasses", "pathlib", "typing", "pynvml")


def test_the_way_to_the_start_imports_none_of_the_heavy_modules(tmp_path: Path) -> None:
    probe = (
        "import json, sys\n"
        "before = set(sys.modules)\n"
        "from builder import launch\n"
        f"plan = launch.plain_run(['-C', {str(tmp_path)!r}, 'run', '--image', 'a:b', '--', 'x'])\n"
        "from builder.engine import wire\nfrom builder.run import run\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    imported = set(json.loads(result.stdout))
    assert {"builder.launch", "builder.run.run", "builder.engine.wire"} <= imported
    assert imported.isdisjoint(HEAVY)
