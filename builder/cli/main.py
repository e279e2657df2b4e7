"""The `reprobuild` group: the global options, every verb, and the one place errors become an
exit code (no traceback). Each verb lives in its own module and imports what it needs inside
the command, so that `reprobuild resolve` does not pay for rich, requests, docker or NVML.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from builder import __version__, layout
from builder.cli import (
    build,
    diff,
    doctor,
    export,
    fetch,
    knowledge,
    lock,
    publish,
    render,
    resolve,
    run,
    smoke,
    verify,
)
from builder.cli.options import Options
from builder.errors import INTERRUPTED, ReprobuildError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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


for _command in (
    resolve.resolve_command,
    lock.lock_command,
    render.render_command,
    fetch.fetch_command,
    doctor.doctor_command,
    knowledge.knowledge_group,
    diff.diff_command,
    build.build_command,
    smoke.smoke_command,
    run.run_command,
    publish.publish_command,
    verify.verify_command,
    export.export_group,
):
    cli.add_command(_command)


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
