"""How a build shows its progress: a live line (terminal), one line per step (CI logs), or nothing.

Everything goes to stderr, so stdout carries only the result.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any

from builder.build.build import Progress
from builder.engine.sdk import BuildEvent


def _size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def _elapsed(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"


class BuildDisplay:
    """A context manager giving a `Progress`; mode is "live", "plain" or "quiet"."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.started = time.monotonic()
        self.step = "starting"
        self.cached = 0
        self.sent_bytes = 0
        self.downloading = ""
        self.live: Any = None

    def __enter__(self) -> Progress:
        if self.mode == "live":
            from rich.console import Console
            from rich.live import Live

            self.live = Live(
                self._line(), console=Console(stderr=True), refresh_per_second=4, transient=True
            )
            self.live.__enter__()
        return Progress(self.note, self.event, self.download, self.sent)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.live is not None:
            self.live.__exit__(kind, error, trace)

    def _line(self) -> str:
        parts = [self.step]
        if self.cached:
            parts.append(f"{self.cached} cached")
        if self.sent_bytes:
            parts.append(f"context {_size(self.sent_bytes)} sent")
        if self.downloading:
            parts.append(self.downloading)
        parts.append(_elapsed(time.monotonic() - self.started))
        return " · ".join(parts)

    def _refresh(self) -> None:
        if self.live is not None:
            self.live.update(self._line())

    def _print(self, text: str) -> None:
        if self.live is not None:
            self.live.console.print(text, highlight=False, markup=False)
        elif self.mode == "plain":
            print(text, file=sys.stderr, flush=True)

    def note(self, text: str) -> None:
        self.step = text
        self._print(f"  {text} ({_elapsed(time.monotonic() - self.started)})")
        self._refresh()

    def event(self, event: BuildEvent) -> None:
        if event.cached:
            self.cached += 1
            self._print(f"    cache hit for step {event.step}")
        if not event.line:
            self.step = f"step {event.step}/{event.steps}: {event.instruction[:60]}"
            self._print(f"  [{event.step}/{event.steps}] {event.instruction[:120]}")
        self._refresh()

    def download(self, name: str, done: int, total: int) -> None:
        self.downloading = f"{name} {_size(done)}/{_size(total)}" if done < total else ""
        self._refresh()

    def sent(self, total: int) -> None:
        self.sent_bytes = total
        if self.live is not None:
            self._refresh()
