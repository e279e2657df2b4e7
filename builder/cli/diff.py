"""`reprobuild diff`: why two images differ."""

from __future__ import annotations

import sys

import click

from builder.errors import FAILURE


@click.command("diff")
@click.argument("image_a")
@click.argument("image_b")
@click.option(
    "--max-files",
    type=click.IntRange(min=0),
    default=200,
    show_default=True,
    help="List at most this many differing files (0: all).",
)
def diff_command(image_a: str, image_b: str, max_files: int) -> None:
    """Explain why two images in the engine differ: config fields, layers, files.

    Exits 0 when both name the same image and 1 when they differ, like diff.
    """
    from builder.check.diff import diff_images
    from builder.cli.present import diff_text
    from builder.engine.sdk import Engine

    with Engine.connect() as engine:
        report = diff_images(engine, image_a, image_b)
    click.echo(diff_text(report, max_files))
    if not report.identical:
        sys.exit(FAILURE)
