"""`reprobuild run`, when the entry point hands it to click (help, a typo, no `--`, or any option
beyond --gpus, --image and --outputs): the same run as the entry point's own parse (launch.py),
held to it by a unit test."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from builder.cli import run_report
from builder.cli.options import CommandAfterDashes, Options, gpus_option
from builder.smoke.hook import DEFAULT_TRACE_INTERVAL

if TYPE_CHECKING:
    from builder.run.inputs import Environment


def container_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """What `run` gives the container besides the image and command: data, variables, shared
    memory (`replay` takes --data too, to point a recorded name at a moved folder)."""
    options = [
        click.option(
            "--data",
            "data",
            multiple=True,
            metavar="NAME=PATH[:rw]",
            help="Mount a host folder or file at /data/NAME, read-only (writable with :rw); its "
            "content digest is recorded. Repeatable.",
        ),
        click.option(
            "--env",
            "-e",
            "env",
            multiple=True,
            metavar="NAME[=VALUE]",
            help="Pass a variable (NAME alone: its value here). The values of secrets (names "
            "holding KEY, TOKEN, SECRET or PASSWORD, or given to --secret) are never written. "
            "Repeatable.",
        ),
        click.option(
            "--env-file",
            "env_files",
            multiple=True,
            type=click.Path(dir_okay=False),
            metavar="FILE",
            help="Pass the variables of a file of NAME=VALUE lines (docker's format). Repeatable.",
        ),
        click.option(
            "--secret",
            "secrets",
            multiple=True,
            metavar="NAME",
            help="Treat the variable NAME as a secret: passed, its value never written.",
        ),
        click.option(
            "--shm-size",
            metavar="SIZE",
            help="Size of /dev/shm, where DataLoader workers hand batches over, e.g. 8g "
            "(default: half this machine's memory; the engine's own 64m kills workers).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def environment_of(
    env: tuple[str, ...], env_files: tuple[str, ...], secrets: tuple[str, ...]
) -> Environment | None:
    from builder.run import inputs

    if not (env or env_files or secrets):
        return None
    return inputs.environment(env, env_files, secrets)


@click.command(
    "run",
    cls=CommandAfterDashes,
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
@container_options
@click.option(
    "--trace",
    type=click.IntRange(min=1),
    is_flag=False,
    flag_value=DEFAULT_TRACE_INTERVAL,
    default=None,
    metavar="[N]",
    help="Record a chained hash of the parameters and optimizer state every N optimizer "
    f"steps in runs/<run>/trace.jsonl (N: {DEFAULT_TRACE_INTERVAL} when not given).",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def run_command(
    options: Options,
    gpus: str | None,
    image: str | None,
    outputs: Path | None,
    data: tuple[str, ...],
    env: tuple[str, ...],
    env_files: tuple[str, ...],
    secrets: tuple[str, ...],
    shm_size: str | None,
    trace: int | None,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND inside the built image and record the run under runs/.

    The image runs by ID; the project is mounted read-only at /workspace (the working
    directory), the outputs folder writable at /outputs, each --data at /data/NAME; the
    command runs as your user, its output streams and is saved beside the record. Ctrl-C and
    SIGTERM reach the command. Exits with the command's exit code.

    \b
        reprobuild run --gpus all --data train=~/data/shakespeare -e WANDB_MODE=offline \\
            --trace -- python train.py --epochs 3
    """
    from builder.run import inputs
    from builder.run.run import RunPlan

    plan = RunPlan(
        options.project,
        image or None,
        list(command),
        outputs=outputs,
        gpus=gpus,
        data=inputs.data_mounts(data),
        environment=environment_of(env, env_files, secrets),
        shm_size=None if shm_size is None else inputs.shm_bytes(shm_size),
        trace=trace,
    )
    sys.exit(run_report.run_and_report(plan))
