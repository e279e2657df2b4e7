"""`reprobuild publish`: the manifest a paper publishes, and REPRODUCE.md."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from builder import layout
from builder.cli.options import Options, byte_progress, gpus_option, note

if TYPE_CHECKING:
    from builder.publish.signing import SigningKey


@click.command("publish")
@click.option(
    "--to",
    "push_to",
    metavar="REF",
    help="Push the last build to REF (registry/name:tag) first; needed when it was never pushed. "
    "A build of several platforms is pushed by `reprobuild build --push REF` instead.",
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
@click.option(
    "--archive",
    "archive_path",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Also write the image and its documents as one OCI archive (an OCI image layout in a "
    "tar, byte for byte the registry's image) for a deposit; its sha256 is printed for "
    "citation. `docker load -i FILE` and `apptainer build x.sif docker-archive://FILE` take it.",
)
@click.option(
    "--sign",
    "sign_key",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="KEY",
    help="Sign the manifest and the provenance (DSSE) with this private key: the SSH ed25519 "
    "key you sign git commits with, or a PEM key. A passphrase is read from "
    f"{layout.SIGNING_PASSPHRASE_VARIABLE}.",
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
    archive_path: Path | None,
    sign_key: Path | None,
) -> None:
    """Write the manifest a paper publishes: the pushed image by digest, its lock, its smoke
    report and fingerprint key, the commands to pull, verify and run it, CITATION.cff,
    .zenodo.json and a README badge (reprobuild.manifest.json and REPRODUCE.md). The manifest,
    the lock, a CycloneDX SBOM and SLSA provenance (signed with --sign) are pushed beside the
    image as OCI artifacts that refer to it, and written to the output folder. With --archive,
    all of it in one file that `reprobuild verify` checks offline. With --run, the training
    runs readers replay with `reprobuild replay reprobuild.manifest.json`.

        reprobuild publish --to registry.example.org/lab/model:paper --sign ~/.ssh/id_ed25519 \\
            --archive model.oci.tar --run runs/20261206T...
    """
    from builder.build import buildrecord
    from builder.engine.sdk import Engine
    from builder.lock import lockfile
    from builder.publish import deposit, publish

    if smoke_report is not None and cpu:
        raise click.UsageError("--smoke-report and --cpu exclude each other: choose one.")
    key = signing_key(sign_key)
    current = lockfile.read_current(options.project)
    record = buildrecord.read(current.project)
    folder = output or current.project
    if archive_path is not None:
        check_archive_path(archive_path, folder)
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
    with byte_progress("writing the archive") as progress:
        deposited = deposit.deposit(
            folder, document, current, key=key, archive_path=archive_path, progress=progress,
            note=note,
        )  # fmt: skip
    handed = deposited.handed
    click.echo(
        f"published {document['image']['reference']}\n  manifest {deposited.manifest}\n"
        f"  {deposited.reproduce}\n  badge: {document['badge']}"
    )
    kinds = ", ".join(item.kind.name for item in handed.published.documents)
    click.echo(f"  documents beside the image in its registry ({handed.via}): {kinds}")
    click.echo(f"  written: {', '.join(path.name for path in deposited.beside)}")
    if handed.cited is not None:
        click.echo(
            f"  archive {archive_path} ({handed.cited.size / 1e9:.2f} GB)\n"
            f"  sha256 {handed.cited.sha256.removeprefix('sha256:')}"
        )
    if weak := publish.weak_proof(document["smoke"]):
        note(weak)


def signing_key(path: Path | None) -> SigningKey | None:
    """The key to sign with, read before anything is pushed (a wrong one fails first)."""
    if path is None:
        return None
    from builder.publish import signing

    passphrase = os.environ.get(layout.SIGNING_PASSPHRASE_VARIABLE)
    return signing.load_signing_key(path, passphrase.encode() if passphrase else None)


def check_archive_path(path: Path, folder: Path) -> None:
    if path.is_dir():
        raise click.BadParameter(f"{path} is a folder: give a file name, e.g. model.oci.tar.")
    if path.resolve().parent == folder.resolve() and path.name in layout.PUBLISHED_FILES:
        raise click.BadParameter(
            f"{path} would replace the published {path.name}: give the archive another name, "
            "e.g. model.oci.tar."
        )
