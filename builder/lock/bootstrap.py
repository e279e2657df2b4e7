"""Bootstrapped Debian bases, as the lock pins them: a suite, a mirror at a snapshot time, and the
exact package set mmdebstrap's simulation reports. `build.base` makes the image from them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from builder.snapshots import epoch_seconds

BOOTSTRAP_PACKAGES = ("ca-certificates", "python3", "python3-venv")
VARIANT = "minbase"
_INST = re.compile(r"^Inst (\S+) \((\S+) ", re.MULTILINE)


@dataclass(frozen=True)
class DebianSource:
    """Where apt reads packages: one mirror (a snapshot by default) and a suite."""

    suite: str  # "bookworm"
    mirror: str  # archive URL

    def sources_line(self) -> str:
        # Snapshot Release files are past their Valid-Until date by design.
        return f"deb [check-valid-until=no] {self.mirror} {self.suite} main"


def mmdebstrap_argv(
    source: DebianSource, output: str, packages: tuple[str, ...], simulate: bool = False
) -> list[str]:
    """The mmdebstrap call: minbase plus `packages`, as a tar (or a verbose dry run)."""
    mode = ["--simulate", "--verbose"] if simulate else ["--quiet", "--mode=root", "--format=tar"]
    return [
        "mmdebstrap",
        *mode,
        f"--variant={VARIANT}",
        f"--include={','.join(packages)}",
        source.suite,
        output,
        source.sources_line(),
    ]


def recipe(source: DebianSource, packages: tuple[str, ...], snapshot: str) -> str:
    """How the root filesystem was made, for the image history: no paths, no host detail."""
    argv = mmdebstrap_argv(source, "rootfs.tar", packages)
    return f"SOURCE_DATE_EPOCH={epoch_seconds(snapshot)} {' '.join(argv)}"


def parse_simulation(text: str) -> list[tuple[str, str]]:
    """(package, version) pairs from apt's `Inst` lines, sorted by name."""
    return sorted(set(_INST.findall(text)))
