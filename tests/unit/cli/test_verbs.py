"""The group loads each verb from its own module when asked: every verb module must be listed."""

from __future__ import annotations

import importlib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from builder.cli.main import VERBS, cli

CLI = Path(__file__).parents[3] / "builder" / "cli"


def test_every_command_defined_in_the_cli_is_a_verb_or_a_verbs_subcommand() -> None:
    found = set()
    for path in sorted(CLI.glob("*.py")):
        module = importlib.import_module(f"builder.cli.{path.stem}")
        commands = {
            name: value for name, value in vars(module).items() if isinstance(value, click.Command)
        }
        inside = {
            id(sub)
            for group in commands.values()
            if isinstance(group, click.Group)
            for sub in group.commands.values()
        }
        found |= {(path.stem, name) for name, value in commands.items() if id(value) not in inside}
    found.discard(("main", "cli"))
    assert found == set(VERBS.values())


def test_each_verb_answers_to_its_name() -> None:
    context = click.Context(cli)
    for name in VERBS:
        command = cli.get_command(context, name)
        assert command is not None and command.name == name
    assert cli.get_command(context, "nosuch") is None
    assert cli.list_commands(context) == sorted(VERBS)


def test_a_mistyped_verb_gets_a_suggestion() -> None:
    result = CliRunner().invoke(cli, ["buil"])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == "Error: No such command 'buil'. Did you mean 'build'?"


def test_the_verbs_are_listed_only_in_verbs() -> None:
    with pytest.raises(TypeError, match="add the verb x to VERBS"):
        cli.commands["x"] = cli.commands["run"]
