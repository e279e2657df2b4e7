"""`reprobuild resolve`: the torch build for the spec and its target, and why."""

from __future__ import annotations

import json

import click

from builder.cli.options import Options, console


@click.command("resolve")
@click.option(
    "--explain",
    is_flag=True,
    help="Also show every candidate and its verdict, and each companion package's pairing.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the resolution as JSON.")
@click.pass_obj
def resolve_command(options: Options, explain: bool, as_json: bool) -> None:
    """Choose the torch build (CUDA, cuDNN, NCCL, driver floor) for the project spec, and the
    torchvision/torchaudio/triton releases that pair with it: one for each of the spec's
    platforms (linux/amd64, linux/arm64)."""
    from builder.resolve.resolve import resolve_platforms

    knowledge = options.knowledge()
    resolutions = resolve_platforms(options.load_spec(knowledge).spec, knowledge)
    if as_json:
        from builder.cli.present import resolutions_json

        click.echo(json.dumps(resolutions_json(resolutions), indent=2))
        return
    from builder.cli.present import resolution_text, shows_platform

    for number, resolution in enumerate(resolutions):
        if number:
            click.echo()
        click.echo(resolution_text(resolution, shows_platform(resolutions)))
        if explain:
            from builder.cli.present import candidates_table, pairing_lines

            for line in pairing_lines(resolution):
                click.echo(line)
            console().print(candidates_table(resolution))
