"""`reprobuild restore`: an archive's image back in a registry, under its published digest."""

from __future__ import annotations

from pathlib import Path

import click

from builder.cli.options import Options, byte_progress


@click.command("restore")
@click.argument("archive", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--to",
    "to",
    required=True,
    metavar="REF",
    help="Where to push it: registry/name:tag (the digest is the archive's).",
)
@click.pass_obj
def restore_command(_options: Options, archive: Path, to: str) -> None:
    """Push the image an archive (from `publish --archive`) holds to any registry, with the
    same manifest digest, and its documents (manifest, lock, SBOM, provenance, signatures)
    beside it. The archive is checked first; a damaged one is refused before anything is
    pushed.

        reprobuild restore model.oci.tar --to registry.example.org/lab/model:paper
    """
    from builder.engine.registry import RegistryClient
    from builder.publish import restore

    target = restore.target(to)
    total = archive.stat().st_size
    with RegistryClient() as registry, byte_progress(f"reading {archive.name}") as shown:
        restored = restore.restore(archive, registry, target, lambda n: shown(n, total))
    click.echo(
        f"restored {restored.pushed}\n  tag {restored.tag}\n  {restored.blobs} blobs\n"
        f"  documents ({restored.via}): {', '.join(restored.documents) or 'none'}"
    )
