"""`reprobuild replay`: a recorded or published run again, compared with the original."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from builder.cli import run_report
from builder.cli.options import Options, gpus_option, note

if TYPE_CHECKING:
    from builder.run.replay import Comparison, ReplayOutcome


@click.command("replay")
@click.argument("source", type=click.Path(exists=True, path_type=Path), metavar="RUN_DIR|MANIFEST")
@click.option(
    "--data",
    "data",
    multiple=True,
    metavar="NAME=PATH",
    help="Where a recorded data input is here (its digest is still checked). Repeatable.",
)
@click.option(
    "--env",
    "-e",
    "env",
    multiple=True,
    metavar="NAME=VALUE",
    help="Change or add a variable on purpose (e.g. OMP_NUM_THREADS=1, to see whether the "
    "result depends on it); the report names it. Repeatable.",
)
@gpus_option("GPUs to give the container", default=None, unset="as recorded by default")
@click.pass_obj
def replay_command(
    options: Options, source: Path, data: tuple[str, ...], env: tuple[str, ...], gpus: str | None
) -> None:
    """Replay a run: the recorded command in the recorded image (pulled by digest when
    missing), with the recorded data (every digest checked first), variables (secrets from
    this environment), threads, /dev/shm and trace; then compare exit code, output files,
    trace and fingerprint key. The replay is recorded under runs/ with its comparison
    (replay.json). Exits 0 identical, 1 differs, 4 when it cannot start as recorded.

    \b
        reprobuild replay reprobuild.manifest.json --data train=~/datasets/shakespeare
    """
    changed = changed_variables(env)
    code = replay_all(source, options.project, moved_data(data), gpus, changed)
    sys.exit(code)


def replay_all(
    source: Path,
    project: Path,
    moved: dict[str, str],
    gpus: str | None,
    changed: dict[str, str] | None = None,
) -> int:
    """Replay each run `source` holds, report each; 0 when all are identical, else 1."""
    from builder.engine.wire import Wire
    from builder.run import replay

    return replay.replay_all(
        Wire(),
        source,
        str(project),
        moved=moved,
        gpus=gpus,
        changed=changed,
        output=run_report.relay,
        note=note,
        done=report,
    )


def changed_variables(texts: tuple[str, ...]) -> dict[str, str]:
    """--env NAME=VALUE values (an empty value allowed), each a name `run` would take."""
    from builder.run import inputs

    changed = {}
    for text in texts:
        name, equals, value = text.partition("=")
        if not equals:
            raise click.BadParameter(f"{text!r}: give NAME=VALUE.", param_hint="--env")
        inputs.check_name(name, "--env")
        changed[name] = value
    return changed


def moved_data(texts: tuple[str, ...]) -> dict[str, str]:
    """--data NAME=PATH values: where each recorded input is here."""
    pairs = (_pair(text, "--data", "NAME=PATH") for text in texts)
    return {name: str(Path(path).expanduser()) for name, path in pairs}


def _pair(text: str, option: str, shape: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not (equals and name and value):
        raise click.BadParameter(f"{text!r}: give {shape}.", param_hint=option)
    return name, value


def report(outcome: ReplayOutcome) -> None:
    for text in outcome.run.notes:
        note(text)
    comparison = outcome.comparison
    verdict = "identical" if comparison.identical else "DIFFERS"
    lines = [f"replay of {outcome.origin}: {verdict}", *comparison_lines(comparison)]
    if outcome.changed:
        shown = ", ".join(f"{name}={value!r}" for name, value in outcome.changed.items())
        lines.append(f"  env        {shown} (not as recorded)")
    lines.append(f"  record     {outcome.run.record}")
    click.echo("\n".join(lines), err=True)


def comparison_lines(comparison: Comparison) -> list[str]:
    before, after = comparison.exit_codes
    lines = [f"  exit code  {before} -> {after}" + ("" if before == after else "  (differs)")]
    files = f"  outputs    {comparison.identical_files} identical"
    for label, paths in (
        ("differ", comparison.differing),
        ("missing", comparison.missing),
        ("extra", comparison.extra),
    ):
        if paths:
            shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
            files += f"; {label}: {shown}"
    lines.append(files)
    if comparison.trace_entries is not None:
        first = comparison.first_differing_step
        if first is None:
            lines.append(f"  trace      {comparison.trace_entries[0]} entries identical")
        else:
            lines.append(
                f"  trace      first differs at step {first['step']} (optimizer "
                f"{first['optimizer']}): {', '.join(first['differs'])}"
            )
    if comparison.key_differences:
        parts = "; ".join(
            f"{name} {before!r} -> {after!r}"
            for name, (before, after) in comparison.key_differences.items()
        )
        lines.append(
            f"  key        differs ({parts}): identical bits are promised only on an identical key"
        )
    else:
        lines.append("  key        same")
    return lines
