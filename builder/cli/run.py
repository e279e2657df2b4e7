"""`reprobuild run`, when the entry point hands it to click (help, a typo, no `--`, ...): the
same run as the entry point's own parse (launch.py), held to it by a unit test."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from builder.cli import run_report
from builder.cli.options import Options, gpus_option, training_command


@click.command(
    "run",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@gpus_option("GPUs to give the container", default=None)
@click.option(
    "--image",
    metavar="REF",
    help="Run this image (pulled by digest if the engine lacks it) instead of the last build.",
)
@click.option(
    "--outputs",
    type=click.Path(file_okay=False, path_type=Path),
    help="Host folder mounted writable at /outputs (default: runs/<run>/outputs).",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def run_command(
    options: Options,
    gpus: str | None,
    image: str | None,
    outputs: Path | None,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND inside the built image and record the run under runs/.

    The image runs by ID; the project is mounted read-only at /workspace (the working
    directory) and the outputs folder writable at /outputs; the command runs as your user.
    Ctrl-C and SIGTERM reach the command. Exits with the command's exit code.

        reprobuild run --gpus all -- python train.py --epochs 3
    """
    from builder.run.run import RunPlan

    plan = RunPlan(
        options.project, image or None, list(training_command(command)), outputs=outputs, gpus=gpus
    )
    sys.exit(run_report.run_and_report(plan))
