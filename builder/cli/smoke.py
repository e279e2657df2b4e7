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
@click.option(
    "--ranks",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    metavar="N",
    help="With N >= 2, also prove N processes of one torch.distributed group bit-identical "
    "(an all_reduce and DDP steps): NCCL, one GPU per rank; gloo with --cpu.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def smoke_command(
    options: Options,
    image: str | None,
    gpus: str,
    cpu: bool,
    no_canary: bool,
    ranks: int,
    as_json: bool,
) -> None:
    """Prove inside IMAGE that deterministic kernels give bit-identical tensors on this host.

    IMAGE defaults to the project's last build (reprobuild.build.json); one the engine lacks is
    pulled. Exits with the payload's status: 0 pass, 1 fingerprints differ, 3 the canary showed
    no power on this GPU, 4 a precondition failed (GPU, driver, arch, locked versions, GPUs
    for --ranks).
    """
    from builder.build import buildrecord
    from builder.check.smoke import check_ranks, report_text, run_noted
    from builder.engine.sdk import Engine

    given = None if cpu else gpus
    check_ranks(ranks, given)
    named = image or buildrecord.read(options.project)
    with Engine.connect() as engine:
        chosen = buildrecord.image_to_run(engine, options.project, named)
        result = run_noted(engine, chosen, gpus=given, note=note, canary=not no_canary, ranks=ranks)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        click.echo(f"image {result.image} ({result.image_id})\n{report_text(result.report)}")
    if result.exit_code:
        sys.exit(result.exit_code)
