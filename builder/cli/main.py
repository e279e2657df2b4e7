"""The `reprobuild` group: the global options, every verb, and the one place errors become an
exit code (no traceback). Each verb lives in its own module, imported only when it runs (or when
help lists it), and imports what it needs inside the command, so that `reprobuild resolve` does
not pay for the other verbs, rich, requests, docker or NVML.
"""

from __future__ import annotations

import importlib
import sys
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
    "knowledge": ("knowledge", "knowledge_group"),
    "lock": ("lock", "lock_command"),
    "publish": ("publish", "publish_command"),
    "render": ("render", "render_command"),
    "resolve": ("resolve", "resolve_command"),
    "run": ("run", "run_command"),
    "smoke": ("smoke", "smoke_command"),
    "verify": ("verify", "verify_command"),
}


class Verbs(click.Group):
    """The group of `VERBS`, each module imported when its verb is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(VERBS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in VERBS:
            return None
        module, name = VERBS[cmd_name]
        command: click.Command = getattr(importlib.import_module(f"builder.cli.{module}"), name)
        return command


@click.group(cls=Verbs, context_settings={"help_option_names": ["-h", "--help"]})
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
