"""`reprobuild publish`: the manifest a paper publishes, and REPRODUCE.md."""

from __future__ import annotations

from pathlib import Path

import click

from builder.cli.options import Options, gpus_option, note


@click.command("publish")
@click.option(
    "--to",
    "push_to",
    metavar="REF",
    help="Push the last build to REF (registry/name:tag) first; needed when it was never pushed.",
)
@gpus_option("GPUs the smoke test runs on")
@click.option(
    "--cpu", is_flag=True, help="Smoke-test in CPU mode (the manifest then says no GPU was used)."
)
@click.option(
    "--smoke-report",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Use this `reprobuild smoke --json` report of the build (e.g. from a GPU host) instead "
    "of running the smoke test here (excludes --cpu).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for reprobuild.manifest.json and REPRODUCE.md (default: the project).",
)
@click.option(
    "--run",
    "runs",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    metavar="RUN_DIR",
    help="Embed this run of the build (runs/<run>) so readers can replay it. Repeatable.",
)
@click.pass_obj
def publish_command(
    options: Options,
    push_to: str | None,
    gpus: str,
    cpu: bool,
    smoke_report: Path | None,
    output: Path | None,
    runs: tuple[Path, ...],
) -> None:
    """Write the manifest a paper publishes: the pushed image by digest, its lock, its smoke
    report and fingerprint key, the commands to pull, verify and run it, a CITATION.cff entry
    and a README badge (reprobuild.manifest.json and REPRODUCE.md). With --run, the training
    runs readers replay with `reprobuild replay reprobuild.manifest.json`.

        reprobuild publish --to registry.example.org/lab/model:paper --run runs/20261206T...
    """
    from builder.build import buildrecord
    from builder.engine.sdk import Engine
    from builder.lock import lockfile
    from builder.publish import publish

    if smoke_report is not None and cpu:
        raise click.UsageError("--smoke-report and --cpu exclude each other: choose one.")
    current = lockfile.read_current(options.project)
    record = buildrecord.read(current.project)
    with Engine.connect() as engine:
        document = publish.prepare(
            engine,
            current,
            record,
            push_to=push_to,
            smoke=publish.SmokeSource(smoke_report, None if cpu else gpus),
            save=lambda pushed: buildrecord.write(current.project, pushed),
            note=note,
            runs=list(runs),
        )
    manifest_path, reproduce_path = publish.write(output or current.project, document)
    click.echo(
        f"published {document['image']['reference']}\n  manifest {manifest_path}\n"
        f"  {reproduce_path}\n  badge: {document['badge']}"
    )
    if weak := publish.weak_proof(document["smoke"]):
        note(weak)
