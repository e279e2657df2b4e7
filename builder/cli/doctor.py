"""`reprobuild doctor`: this host's driver, GPUs and engine, and whether the image runs here."""

from __future__ import annotations

import json
import sys

import click

from builder.cli.options import Options, console
from builder.errors import FAILURE


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--spec/--no-spec",
    "use_spec",
    default=True,
    help="Judge the project's resolved image against this host (default when a spec exists).",
)
@click.pass_obj
def doctor_command(options: Options, as_json: bool, use_spec: bool) -> None:
    """Read this host (NVIDIA driver, GPUs, Docker engine) and judge the resolved image."""
    from builder.check import doctor
    from builder.engine import host
    from builder.resolve.resolve import resolve_here
    from builder.spec.file import has_spec

    knowledge = options.knowledge()
    resolution = None
    if use_spec and has_spec(options.project):
        resolution = resolve_here(options.load_spec(knowledge).spec, knowledge)
    report = doctor.examine(
        host.probe_nvidia(sm_counts=True), host.probe_engine(), resolution, knowledge
    )
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        from builder.cli.present import doctor_lines

        shown = console()
        for line in doctor_lines(report):
            shown.print(line, soft_wrap=True)
    if report.runs_here is False:
        sys.exit(FAILURE)
