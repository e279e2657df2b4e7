"""`reprobuild smoke`: the determinism proof inside an image, on this host's GPUs."""

from __future__ import annotations

import json
import sys

import click

from builder.cli.options import Options, gpus_option, note


@click.command("smoke")
@click.argument("image", required=False)
@gpus_option("GPUs to give the container")
@click.option("--cpu", is_flag=True, help="CPU mode: no GPU needed; proves the plumbing only.")
@click.option(
    "--no-canary", is_flag=True, help="Skip the canary (the check's power stays unshown)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def smoke_command(
    options: Options, image: str | None, gpus: str, cpu: bool, no_canary: bool, as_json: bool
) -> None:
    """Prove inside IMAGE that deterministic kernels give bit-identical tensors on this host.

    IMAGE defaults to the project's last build (reprobuild.build.json); one the engine lacks is
    pulled. Exits with the payload's status: 0 pass, 1 fingerprints differ, 3 the canary showed
    no power on this GPU, 4 a precondition failed (GPU, driver, arch, locked versions).
    """
    from builder.build import buildrecord
    from builder.check.smoke import report_text, run_noted
    from builder.engine.sdk import Engine

    named = image or buildrecord.read(options.project)
    with Engine.connect() as engine:
        chosen = buildrecord.image_to_run(engine, options.project, named)
        result = run_noted(
            engine, chosen, gpus=None if cpu else gpus, note=note, canary=not no_canary
        )
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        click.echo(f"image {result.image} ({result.image_id})\n{report_text(result.report)}")
    if result.exit_code:
        sys.exit(result.exit_code)
