"""The `reprobuild` group: the global options, every verb, and the one place errors become an
exit code (no traceback). Each verb lives in its own module, imported only when it runs (or when
help lists it), and imports what it needs inside the command, so that `reprobuild resolve` does
not pay for the other verbs, rich, requests, docker or NVML.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator, MutableMapping
from pathlib import Path

import click

from builder import __version__, layout
from builder.cli.options import Options
from builder.errors import INTERRUPTED, ReprobuildError

# Each verb: the module of builder.cli that holds it, and its click command there.
VERBS = {
    "build": ("build", "build_command"),
    "diff": ("diff", "diff_command"),
    "doctor": ("doctor", "doctor_command"),
    "export": ("export", "export_group"),
    "fetch": ("fetch", "fetch_command"),
    "gc": ("gc", "gc_command"),
    "init": ("init", "init_command"),
    "knowledge": ("knowledge", "knowledge_group"),
    "lock": ("lock", "lock_command"),
    "publish": ("publish", "publish_command"),
    "render": ("render", "render_command"),
    "replay": ("replay", "replay_command"),
    "resolve": ("resolve", "resolve_command"),
    "restore": ("restore", "restore_command"),
    "run": ("run", "run_command"),
    "smoke": ("smoke", "smoke_command"),
    "verify": ("verify", "verify_command"),
}


class LazyVerbs(MutableMapping[str, click.Command]):
    """The group's commands by name, each verb's module imported when its command is first
    asked for. Click reads its commands (and its "Did you mean" suggestions) from this mapping."""

    def __getitem__(self, name: str) -> click.Command:
        module, attribute = VERBS[name]
        command: click.Command = getattr(
            importlib.import_module(f"builder.cli.{module}"), attribute
        )
        return command

    def __iter__(self) -> Iterator[str]:
        return iter(VERBS)

    def __len__(self) -> int:
        return len(VERBS)

    def __setitem__(self, name: str, command: click.Command) -> None:
        raise TypeError(f"add the verb {name} to VERBS in builder/cli/main.py")

    def __delitem__(self, name: str) -> None:
        raise TypeError("the verbs are listed in VERBS in builder/cli/main.py")


@click.group(commands=LazyVerbs(), context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="reprobuild")
@click.option(
    "-C",
    "--project",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(),
    show_default=True,
    help="Project directory holding reprobuild.toml or pyproject.toml [tool.reprobuild].",
)
@click.option(
    "--knowledge",
    "knowledge_dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar=layout.KNOWLEDGE_VARIABLE,
    help="Use the knowledge base in this directory instead of the shipped one.",
)
@click.pass_context
def cli(context: click.Context, project: Path, knowledge_dir: Path | None) -> None:
    """Reproducible ML training images: resolve torch/CUDA/driver, lock every input, render."""
    context.obj = Options(project, knowledge_dir)


def run_cli() -> None:
    """Run the click CLI; turn our errors into one message and an exit code."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(INTERRUPTED)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except ReprobuildError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(INTERRUPTED)
