"""`reprobuild verify`: is the published image the one the paper names?"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import click

from builder.cli.options import Options, build_display, gpus_option
from builder.errors import FAILURE


@click.command("verify")
@click.argument("subject", metavar="MANIFEST|IMAGE@DIGEST")
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
    as_json: bool,
) -> None:
    """Check a published image: pull it by digest, compare its config digest and lock label
    with the manifest, re-run the smoke test and compare fingerprints where the fingerprint key
    matches; with --rebuild, rebuild the lock and compare the digest.

    Exits 0 when every check holds (warnings included) and 1 when one fails.

        reprobuild verify reprobuild.manifest.json
    """
    from builder.cli.present import verify_lines
    from builder.cli.replay import moved_data
    from builder.engine.registry import RegistryClient
    from builder.engine.sdk import Engine
    from builder.publish import verify

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
        )
        result = verify.verify(engine, registry, target, steps)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        click.echo("\n".join(verify_lines(result)))
    if result.failed:
        sys.exit(FAILURE)
    if replay:
        from builder.cli.replay import replay_all

        code = replay_all(Path(subject), options.project, moved, gpus=None)
        sys.exit(code)
