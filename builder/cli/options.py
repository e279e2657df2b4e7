"""What the verbs share: the global options, notes on stderr, the console, --gpus, the command
after --, and the build display."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from builder.run.args import gpus_problem

if TYPE_CHECKING:
    from builder.cli.progress import BuildDisplay
    from builder.knowledge import Knowledge
    from builder.spec.model import LoadedSpec


@dataclass(frozen=True)
class Options:
    project: Path
    knowledge_dir: Path | None

    def knowledge(self) -> Knowledge:
        from builder import knowledge

        return knowledge.load(self.knowledge_dir)

    def load_spec(self, knowledge: Knowledge) -> LoadedSpec:
        """The project's spec, its notes (which file won, ...) shown on stderr."""
        from builder.spec.check import load_spec

        loaded = load_spec(self.project, knowledge)
        for text in loaded.notes:
            note(text)
        return loaded


def note(text: str) -> None:
    click.echo(f"note: {text}", err=True)


def progress_note(text: str) -> None:
    click.echo(f"  {text}", err=True)


def console() -> Any:
    from rich.console import Console

    shown = Console(highlight=False)
    if not shown.is_terminal:  # pipes and CI logs: keep tables whole rather than squeezed
        shown = Console(highlight=False, width=200)
    return shown


def _gpus(_context: click.Context, _parameter: click.Parameter, value: str | None) -> str | None:
    problem = None if value is None else gpus_problem(value)
    if problem is not None:
        raise click.BadParameter(problem)
    return value


def http_url(_context: click.Context, parameter: click.Parameter, value: str | None) -> str | None:
    """An index or archive address: http:// or https:// with a host (a bare word or path would
    be taken for a name the index does not have, a wrong diagnosis)."""
    from urllib.parse import urlsplit

    if value is None:
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        default = parameter.default
        example = default if isinstance(default, str) else "http://deb.debian.org/debian"
        raise click.BadParameter(
            f"{value!r} is not an http:// or https:// address; write e.g. {example}."
        )
    return value


def gpus_option(
    what: str, default: str | None = "all", *, unset: str = "none by default"
) -> Callable[[click.decorators.FC], click.decorators.FC]:
    """--gpus all|N: the engine's device requests (its NVIDIA runtime); `unset` says what no
    value means when there is no default."""
    none = "" if default else f"; {unset}"
    return click.option(
        "--gpus",
        default=default,
        show_default=default is not None,
        metavar="all|N",
        callback=_gpus,
        help=f"{what} (the engine's NVIDIA runtime){none}.",
    )


class CommandAfterDashes(click.Command):
    """A verb that takes a command (`run`, `export`). Unknown options pass through to the
    command only when it is given without `--` (`-m pkg.train`); with `--`, everything before
    it is the verb's, and click drops the `--` before the command could show it, so an unknown
    option there is a typo to refuse (exit 2), not the start of the command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            ctx.ignore_unknown_options = False
        return super().parse_args(ctx, args)


def build_display(quiet: bool, plain: bool) -> BuildDisplay:
    from builder.cli.progress import BuildDisplay

    mode = "quiet" if quiet else "plain" if plain or not sys.stderr.isatty() else "live"
    return BuildDisplay(mode)


BYTES_EVERY_S = 5.0  # a progress line at most this often: readable in a CI log as on a terminal


@contextmanager
def byte_progress(what: str) -> Iterator[Callable[[int, int], None]]:
    """A callback (bytes done, bytes in all) that shows the progress of long byte work (an
    archive written, read or restored) on stderr: a line every few seconds, and the last."""
    started = time.monotonic()
    shown = [started, -1]

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        if now - shown[0] < BYTES_EVERY_S or done == shown[1]:
            return
        shown[0], shown[1] = now, done
        share = f" of {total / 1e9:.2f} GB ({100 * done / total:.0f} %)" if total > 0 else ""
        rate = done / max(now - started, 1e-9) / 1e6
        progress_note(f"{what}: {done / 1e9:.2f} GB{share}, {rate:.0f} MB/s")

    yield show
