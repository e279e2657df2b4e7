"""`reprobuild build`: lock if needed, render, build, normalise, push; write the record."""

from __future__ import annotations

import click

from builder.cli.options import Options, build_display, http_url, note, progress_note


@click.command("build")
@click.option(
    "--no-cache",
    is_flag=True,
    help="Build every step again, the deps stage and the Python layers too (the digest must not "
    "move).",
)
@click.option(
    "--push",
    "push_to",
    metavar="REF",
    help="Push to REF (registry/name:tag) and record the manifest digest.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["docker", "sif"]),
    default="docker",
    show_default=True,
    help="docker: an image in the engine; sif: an Apptainer image (needs apptainer).",
)
@click.option(
    "--platform",
    "platforms",
    multiple=True,
    type=click.Choice(["linux/amd64", "linux/arm64"]),
    help="Build the image of this platform only (repeatable); default: every platform of the "
    "lock. An image for another CPU than this machine's builds under qemu emulation.",
)
@click.option("--quiet", is_flag=True, help="Print only the result.")
@click.option("--plain", is_flag=True, help="One line per step, no live display (CI logs).")
@click.option(
    "--debian-mirror",
    callback=http_url,
    help="Archive for system packages when the lock must be (re)made (see `reprobuild lock`).",
)
@click.pass_obj
def build_command(
    options: Options,
    no_cache: bool,
    push_to: str | None,
    output_format: str,
    platforms: tuple[str, ...],
    quiet: bool,
    plain: bool,
    debian_mirror: str | None,
) -> None:
    """Lock if needed, render, build with the Docker engine (the deps stage once per lock, its
    Python layers written from the verified wheels, then the image on it), normalise, push; write
    the record. A lock of several platforms builds an image for each; with --push, each is
    pushed and the tag names the OCI image index of them all."""
    from builder.build import buildrecord, projectlock, sif
    from builder.build.build import build_platforms
    from builder.cli.present import build_lines
    from builder.engine.sdk import Engine
    from builder.lock.lockfile import chosen_platforms
    from builder.lock.stage import LockOptions, current_or_new_lock

    if output_format == "sif":
        sif.check_ready(push_to)
    with projectlock.hold(options.project, note):
        current = current_or_new_lock(
            options.project,
            options.knowledge,
            LockOptions(debian_mirror=debian_mirror),
            note=note,
            progress=progress_note,
        )
        chosen = chosen_platforms(current, platforms)
        with Engine.connect() as engine, build_display(quiet, plain) as progress:
            record = build_platforms(
                engine,
                current,
                chosen,
                no_cache=no_cache,
                push=push_to,
                progress=progress,
            )
        path = buildrecord.write(current.project, record)
        click.echo("\n".join(build_lines(record, path)))
        if output_format == "sif":
            made = sif.build_for(current.project, record.image, progress_note)
            click.echo(f"  SIF {made.path} ({made.size / 1e9:.2f} GB, sha256 {made.sha256})")
