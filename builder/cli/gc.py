"""`reprobuild gc`: remove the images earlier locks of the project left in the engine."""

from __future__ import annotations

import sys

import click

from builder.cli.options import Options, progress_note
from builder.errors import FAILURE


@click.command("gc")
@click.option(
    "--keep",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    metavar="N",
    help="Keep the images of the N newest earlier locks too.",
)
@click.option("--dry-run", is_flag=True, help="List the images with their sizes; remove nothing.")
@click.pass_obj
def gc_command(options: Options, keep: int, dry_run: bool) -> None:
    """Remove the images (final and dependencies) that earlier locks of this project left in the
    engine, by ID and without force.

    Never removes the current lock's images (reprobuild.lock, which must match the spec), an image a
    container uses (running or stopped) or one built on it, nor an image reprobuild did not
    build (no dev.reprobuild.lock label), whatever its name. Reports the bytes freed: the layers
    no other image holds. Exits 1 when the engine refused to remove an image.
    """
    from builder.build.gc import plan_gc, remove
    from builder.cli.present import gc_lines, gc_result_lines
    from builder.engine.sdk import Engine
    from builder.lock import lockfile

    current = lockfile.read_current(options.project)
    with Engine.connect() as engine:
        plan = plan_gc(engine, name=current.lock.resolution["name"], lock=current.digest, keep=keep)
        click.echo("\n".join(gc_lines(plan, dry_run)))
        if dry_run or not plan.removals:
            return
        result = remove(engine, plan, lambda entry: progress_note(f"removed {entry.reference}"))
    click.echo("\n".join(gc_result_lines(result)))
    if result.refused:
        sys.exit(FAILURE)
