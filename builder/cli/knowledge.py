"""`reprobuild knowledge show|gpus|refresh`: the GPU compatibility knowledge base."""

from __future__ import annotations

import json
from pathlib import Path

import click

from builder.cli.options import Options, console


@click.group("knowledge")
def knowledge_group() -> None:
    """Show or refresh the GPU compatibility knowledge base."""


@knowledge_group.command("show")
@click.argument("requirement", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the rows as stored, with sources.")
@click.pass_obj
def knowledge_show(options: Options, requirement: str | None, as_json: bool) -> None:
    """Print the torch builds matching REQUIREMENT (e.g. torch==2.5.1, 2.5.*, '>=2.7')."""
    from builder.knowledge.query import matching

    knowledge = options.knowledge()
    builds = matching(knowledge, requirement)
    if as_json:
        click.echo(json.dumps([build.to_dict() for build in builds], indent=2))
        return
    from builder.cli.present import builds_table

    console().print(builds_table(builds, knowledge))


@knowledge_group.command("gpus")
@click.pass_obj
def knowledge_gpus(options: Options) -> None:
    """List the GPU names accepted in target.gpus and their compute capabilities."""
    from builder.cli.present import gpus_table

    console().print(gpus_table(options.knowledge()))


@knowledge_group.command("refresh")
@click.option(
    "--pypi-url",
    default="https://pypi.org/simple",
    show_default=True,
    help="PEP 503 simple index holding the PyPI-default torch wheels.",
)
@click.option(
    "--pytorch-url",
    default="https://download.pytorch.org/whl",
    show_default=True,
    help="Base of the PyTorch variant indexes (<base>/cu124, <base>/cpu, ...).",
)
@click.option(
    "--variant",
    "variants",
    multiple=True,
    help="Variant index to read (repeatable). Default: every variant already known.",
)
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the knowledge base here instead of where it was loaded from.",
)
@click.pass_obj
def knowledge_refresh(
    options: Options,
    pypi_url: str,
    pytorch_url: str,
    variants: tuple[str, ...],
    output: Path | None,
) -> None:
    """Regenerate the torch rows and their companion pairs (torchvision, torchaudio, triton)
    from package-index metadata (stable order, diffable)."""
    from builder.cli.present import refresh_lines
    from builder.knowledge import refresh

    knowledge = options.knowledge()
    indexes = refresh.sources(pypi_url, pytorch_url, variants or refresh.known_variants(knowledge))
    click.echo(
        f"reading {pypi_url} and {len(indexes) - 1} variant indexes under {pytorch_url} ...",
        err=True,
    )
    written, report = refresh.refresh_knowledge(knowledge, indexes, output)
    for line in refresh_lines(report, str(written)):
        click.echo(line)
