"""`reprobuild lock`: pin every input in reprobuild.lock."""

from __future__ import annotations

import click

from builder.cli.options import Options, http_url, progress_note


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
@click.pass_obj
def lock_command(
    options: Options,
    check_only: bool,
    upgrade: bool,
    index_url: str,
    debian_mirror: str | None,
    debian_security_mirror: str | None,
) -> None:
    """Pin every input in reprobuild.lock: hashed Python closure, base digest, system packages."""
    from builder.cli.present import lock_summary
    from builder.lock import lockfile
    from builder.lock.stage import LockOptions, write_new_lock

    knowledge = options.knowledge()
    loaded = options.load_spec(knowledge)
    state = lockfile.inspect_at(loaded.path, loaded.table, read_lock=check_only or not upgrade)
    if check_only:
        lockfile.current(state)
        click.echo(f"{state.path} is up to date with the spec")
        return
    if not upgrade and state.reason is None:
        click.echo(f"{state.path} is up to date with the spec (use --upgrade to re-resolve)")
        return
    lock_options = LockOptions(index_url, debian_mirror, debian_security_mirror)
    written = write_new_lock(loaded, state, knowledge, lock_options, progress_note)
    click.echo(lock_summary(written))
