"""`reprobuild verify`: is the published image the one the paper names?"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from builder.cli.options import Options, build_display, byte_progress, gpus_option
from builder.errors import FAILURE

if TYPE_CHECKING:
    from builder.publish.findings import Verification
    from builder.publish.signing import PublicKey
    from builder.publish.verify import Steps


@click.command("verify")
@click.argument("subject", metavar="ARCHIVE|MANIFEST|IMAGE@DIGEST")
@gpus_option("GPUs the smoke test runs on")
@click.option("--cpu", is_flag=True, help="Smoke-test in CPU mode (no GPU needed).")
@click.option("--no-smoke", is_flag=True, help="Check digests and labels only.")
@click.option(
    "--rebuild",
    is_flag=True,
    help="Also rebuild the project's lock with --no-cache and compare the digest (run it in a "
    "checkout of the published commit).",
)
@click.option(
    "--replay",
    is_flag=True,
    help="After the checks, replay the manifest's published runs and compare their results "
    "(as `reprobuild replay MANIFEST`; exit 1 when one differs, 4 when one cannot start).",
)
@click.option(
    "--data",
    "data",
    multiple=True,
    metavar="NAME=PATH",
    help="With --replay: where a run's data input is here. Repeatable.",
)
@click.option(
    "--key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    metavar="PUB",
    help="Check the signatures with the author's public key (an SSH .pub line, as for git's "
    "signed commits, or a PEM key); without it they are reported, not checked.",
)
@click.option(
    "--sha256",
    "cited_sha256",
    metavar="HEX",
    help="For an archive: the sha256 the paper cites (default: read from ARCHIVE.sha256 beside "
    "it, when there is one).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.pass_obj
def verify_command(
    options: Options,
    subject: str,
    gpus: str,
    cpu: bool,
    no_smoke: bool,
    rebuild: bool,
    replay: bool,
    data: tuple[str, ...],
    key: Path | None,
    cited_sha256: str | None,
    as_json: bool,
) -> None:
    """Check a published image: pull it by digest, compare its config digest and lock label
    with the manifest (and, for several platforms, each platform's image in the published
    index), check the SBOM, provenance and signatures published beside it, re-run the smoke
    test and compare fingerprints where the fingerprint key matches; with --rebuild, rebuild
    the lock and compare the digest.

    An ARCHIVE (from `publish --archive`) is checked offline: every blob, the chain from its
    index to the layers, the manifest's seal and digests, the lock, the SBOM, the provenance
    and the signatures; then it is loaded into the engine and smoke-tested (not with
    --no-smoke).

    Exits 0 when every check holds (warnings included) and 1 when one fails.

        reprobuild verify reprobuild.manifest.json
        reprobuild verify model.oci.tar --key author.pub --cpu
    """
    from builder.cli.replay import moved_data
    from builder.engine.registry import RegistryClient
    from builder.engine.sdk import Engine
    from builder.publish import verify, verifyarchive

    public_key = read_public_key(key)
    if verifyarchive.is_archive(Path(subject)):
        if replay or data or rebuild:
            raise click.UsageError("--replay and --rebuild take a manifest, not an archive.")
        steps = verify.Steps(
            smoke=not no_smoke, gpus=None if cpu else gpus, rebuild=None, key=public_key
        )
        result = check_archive(Path(subject), steps, cited_sha256)
        show(result, as_json)
        return
    if cited_sha256 is not None:
        raise click.UsageError("--sha256 is the sha256 of an archive: give the archive.")
    target = verify.read_subject(subject, options.project)
    if (replay or data) and target.manifest is None:
        raise click.UsageError("--replay replays a manifest's runs: give the manifest.")
    moved = moved_data(data)
    display = build_display(quiet=False, plain=True) if rebuild else contextlib.nullcontext()
    with Engine.connect() as engine, RegistryClient() as registry, display as progress:
        steps = verify.Steps(
            smoke=not no_smoke,
            gpus=None if cpu else gpus,
            rebuild=None
            if progress is None
            else verify.rebuilder(engine, options.project, progress),
            key=public_key,
        )
        result = verify.verify(engine, registry, target, steps)
    show(result, as_json)
    if replay:
        from builder.cli.replay import replay_all

        code = replay_all(Path(subject), options.project, moved, gpus=None)
        sys.exit(code)


def show(result: Verification, as_json: bool) -> None:
    """The findings, then exit 1 when one failed."""
    from builder.cli.present import verify_lines

    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        click.echo("\n".join(verify_lines(result)))
    if result.failed:
        sys.exit(FAILURE)


def read_public_key(path: Path | None) -> PublicKey | None:
    if path is None:
        return None
    from builder.publish import signing

    return signing.load_public_key(path)


def check_archive(path: Path, steps: Steps, cited_sha256: str | None) -> Verification:
    """The archive's findings; the engine is asked only to load and smoke-test it."""
    from builder.engine.sdk import Engine
    from builder.publish import verifyarchive

    cited = verifyarchive.cited_sha256(path, cited_sha256)
    total = path.stat().st_size
    with byte_progress(f"reading {path.name}") as shown:
        if not steps.smoke:
            return verifyarchive.verify_archive(
                None, path, steps, cited_sha256=cited, progress=lambda n: shown(n, total)
            )
        with Engine.connect() as engine:
            return verifyarchive.verify_archive(
                engine, path, steps, cited_sha256=cited, progress=lambda n: shown(n, total)
            )
