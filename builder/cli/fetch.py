"""`reprobuild fetch`: the lock's wheels in a wheelhouse on this host, each verified."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from builder.cli.options import Options

if TYPE_CHECKING:
    from builder.lock.model import Lock
    from builder.render.wheelhouse import FetchReport


@click.command("fetch")
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Wheelhouse directory (default: .reprobuild/wheels in the project).",
)
@click.option("--quiet", is_flag=True, help="No progress display.")
@click.pass_obj
def fetch_command(options: Options, output: Path | None, quiet: bool) -> None:
    """Download the lock's wheels (of every platform it pins) into a wheelhouse, each verified
    against its sha256."""
    from builder.lock.stage import current_lock
    from builder.render import wheelhouse

    current = current_lock(options.project, options.knowledge)
    lock, project = current.lock.with_every_wheel(), current.project
    destination = output or project / ".reprobuild" / "wheels"
    if quiet:
        report = wheelhouse.fetch(lock, project, destination, lambda *_: None)
    else:
        report = _fetch_with_progress(lock, project, destination)
    megabytes = report.bytes_fetched / 1e6
    click.echo(
        f"{destination}: {len(report.fetched)} fetched ({megabytes:.1f} MB), "
        f"{len(report.cached)} already present, all verified against reprobuild.lock"
    )


def _fetch_with_progress(lock: Lock, project: Path, destination: Path) -> FetchReport:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from builder.render import wheelhouse

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
    )
    with Progress(*columns, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def advance(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total or None)
            bar.update(tasks[name], completed=done)

        return wheelhouse.fetch(lock, project, destination, advance)
