"""`reprobuild lock`: pin every input in reprobuild.lock."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from builder.cli.options import Options, http_url, note, progress_note

if TYPE_CHECKING:
    from builder.lock.lockfile import CurrentLock
    from builder.lock.stage import LockOptions


@click.command("lock")
@click.option(
    "--check", "check_only", is_flag=True, help="Only verify the lock is current; exit 1 if not."
)
@click.option(
    "--upgrade", is_flag=True, help="Re-resolve everything even if the spec did not change."
)
@click.option(
    "--index-url",
    default="https://pypi.org/simple",
    show_default=True,
    callback=http_url,
    help="Python package index for the closure.",
)
@click.option(
    "--debian-mirror",
    callback=http_url,
    help="Archive apt resolves system packages from (default: the distribution's snapshot archive "
    "at the lock time, snapshot.debian.org or snapshot.ubuntu.com, so a rebuild years later "
    "fetches the same bytes).",
)
@click.option(
    "--debian-security-mirror",
    callback=http_url,
    help="Debian security archive (default: derived).",
)
@click.option(
    "--export",
    "exports",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Also write the Python closure for installers outside the image: pylock.toml (PEP "
    "751) or a requirements file ending in .txt (pip --require-hashes). Repeatable.",
)
@click.option(
    "--platform",
    type=click.Choice(["linux/amd64", "linux/arm64"]),
    help="The platform whose closure --export writes; needed when the lock pins several.",
)
@click.pass_obj
def lock_command(
    options: Options,
    check_only: bool,
    upgrade: bool,
    index_url: str,
    debian_mirror: str | None,
    debian_security_mirror: str | None,
    exports: tuple[Path, ...],
    platform: str | None,
) -> None:
    """Pin every input in reprobuild.lock: hashed Python closure, base digest, system packages.

    With --export, the lock's Python closure is also written for installers outside the image:

    \b
        reprobuild lock --export pylock.toml --export requirements.txt
        pip install --require-hashes -r requirements.txt
    """
    from builder.lock import export
    from builder.lock.lockfile import one_platform
    from builder.lock.stage import LockOptions

    export.check_formats(exports)  # before any work: a name that says no format is refused
    if platform is not None and not exports:
        raise click.UsageError("--platform chooses the closure --export writes: give --export too.")
    lock_options = LockOptions(index_url, debian_mirror, debian_security_mirror)
    current = _lock(options, check_only, upgrade, lock_options, bool(exports) and not platform)
    if exports:
        lock = current.lock.on(one_platform(current, platform, "--export"))
        several = len(current.lock.platforms) > 1
        for path in exports:
            export.export(lock, current.project, path)
            note(f"wrote {path}" + (f" ({lock.platform})" if several else ""))


def _lock(
    options: Options,
    check_only: bool,
    upgrade: bool,
    lock_options: LockOptions,
    one_platform: bool,  # an export with no --platform: the spec must build one
) -> CurrentLock:
    from builder.cli.present import lock_summary
    from builder.lock import lockfile
    from builder.lock.stage import other_platforms, platforms_differ, write_new_lock

    knowledge = options.knowledge()
    loaded = options.load_spec(knowledge)
    if one_platform and len(loaded.spec.platforms) > 1:  # refused before anything is locked
        whose = f"{loaded.path.name} builds for"
        raise lockfile.one_platform_needed(whose, loaded.spec.platforms, "--export")
    state = lockfile.inspect_at(loaded.path, loaded.table, read_lock=check_only or not upgrade)
    mismatch = state.lock and platforms_differ(loaded, state.lock)
    if check_only:
        current = lockfile.current(state)
        if mismatch:
            raise other_platforms(state.path, mismatch)
        click.echo(f"{state.path} is up to date with the spec")
        return current
    if not upgrade and state.reason is None and not mismatch:
        click.echo(f"{state.path} is up to date with the spec (use --upgrade to re-resolve)")
        return lockfile.current(state)
    if mismatch:
        note(f"{state.path.name} was {mismatch}: locking again")
    written = write_new_lock(loaded, state, knowledge, lock_options, progress_note)
    click.echo(lock_summary(written))
    return written
