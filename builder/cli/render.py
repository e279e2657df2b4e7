"""`reprobuild render`: the Dockerfile, Apptainer definition and build context from the lock."""

from __future__ import annotations

from pathlib import Path

import click

from builder.cli.options import Options


@click.command("render")
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Build context directory to write (default: .reprobuild/context in the project).",
)
@click.option(
    "--from-image",
    help="Bootstrap the Apptainer definition from this built image (name@sha256:...). "
    "Default: the image `reprobuild build --push` pushed for this lock, if any.",
)
@click.option(
    "--standalone",
    is_flag=True,
    help="Apptainer definition that rebuilds from the base in %post (sites without Docker).",
)
@click.option(
    "--platform",
    type=click.Choice(["linux/amd64", "linux/arm64"]),
    help="The image of this platform of the lock (default: its first).",
)
@click.pass_obj
def render_command(
    options: Options,
    output: Path | None,
    from_image: str | None,
    standalone: bool,
    platform: str | None,
) -> None:
    """Render the Dockerfile, Apptainer definition and build context from reprobuild.lock."""
    from builder import codeset
    from builder.build.buildrecord import pushed_build
    from builder.lock.lockfile import chosen_platforms
    from builder.lock.stage import current_lock
    from builder.render.context import render_lock

    if from_image is not None:
        _check_from_image(from_image, standalone)
    current = current_lock(options.project, options.knowledge)
    chosen = chosen_platforms(current, [platform] if platform else [])[0]
    if from_image is None and not standalone:
        from_image = pushed_build(current.project, current.digest, chosen)
    written, build_plan, code = render_lock(current, output, from_image, chosen)
    source = (
        f"from the built image {from_image}"
        if from_image
        else "standalone (`reprobuild build --push REF` gives one from the built image)"
    )
    click.echo(
        f"wrote {written}: Dockerfile, reprobuild.def ({source}), .dockerignore, "
        f"{len(build_plan.layers)} Python layers"
    )
    click.echo("\n".join(codeset.describe(code)))


def _check_from_image(from_image: str, standalone: bool) -> None:
    from builder.reference import pinned_reference

    if pinned_reference(from_image) is None:
        raise click.BadParameter("give the built image by digest: name@sha256:<64 hex>")
    if standalone:
        raise click.UsageError("--from-image and --standalone exclude each other: choose one.")
