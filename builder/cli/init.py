"""`reprobuild init`: write the project's spec from the files the repository already has."""

from __future__ import annotations

import click

from builder.cli.options import Options


def _names(
    _context: click.Context, _parameter: click.Parameter, value: str | None
) -> tuple[str, ...]:
    return tuple(name.strip() for name in (value or "").split(",") if name.strip())


@click.command("init")
@click.option(
    "--group",
    "groups",
    multiple=True,
    metavar="NAME",
    help="Also take this dependency group, optional-dependency extra or requirements-NAME.txt "
    "(repeatable).",
)
@click.option("--host", is_flag=True, help="Target this machine's driver and GPUs, read by NVML.")
@click.option(
    "--gpus",
    callback=_names,
    metavar="NAME,...",
    help="Target these GPUs: names (`reprobuild knowledge gpus`), sm_80 or 8.6, comma-separated.",
)
@click.option("--driver", metavar="VERSION", help="Target this oldest driver, e.g. 535.104.05.")
@click.option(
    "--pyproject",
    is_flag=True,
    help="Append the spec to pyproject.toml as [tool.reprobuild] instead of reprobuild.toml.",
)
@click.option("--force", is_flag=True, help="Replace a spec that exists.")
@click.option("--dry-run", is_flag=True, help="Print the spec it would write; write nothing.")
@click.pass_obj
def init_command(
    options: Options,
    groups: tuple[str, ...],
    host: bool,
    gpus: tuple[str, ...],
    driver: str | None,
    pyproject: bool,
    force: bool,
    dry_run: bool,
) -> None:
    """Write reprobuild.toml from the repository's requirements, pyproject.toml, setup.cfg or
    environment.yml, each value commented with the file and line it came from."""
    from builder.spec.discover import InitRequest
    from builder.spec.scaffold import init_project

    outcome = init_project(
        options.project,
        InitRequest(groups, host, gpus, driver),
        options.knowledge(),
        pyproject=pyproject,
        force=force,
        dry_run=dry_run,
    )
    if dry_run:
        click.echo(outcome.text, nl=False)
    for line in outcome.summary:
        click.echo(line, err=dry_run)
