"""Bootstrapped Debian bases, as the lock pins them: a suite, a mirror at a snapshot time, and the
exact package set mmdebstrap's simulation reports. `build.base` makes the image from them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from builder.knowledge import AMD64, ARM64
from builder.snapshots import epoch_seconds

# Image platform -> Debian architecture, as mmdebstrap and apt name it.
DEBIAN_ARCHITECTURES = {AMD64: "amd64", ARM64: "arm64"}
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
    source: DebianSource,
    output: str,
    packages: tuple[str, ...],
    simulate: bool = False,
    *,
    architecture: str = "amd64",
) -> list[str]:
    """The mmdebstrap call: minbase plus `packages` for a Debian architecture, as a tar (or a
    verbose dry run). Another architecture than the host's runs under qemu-user (binfmt_misc)."""
    mode = ["--simulate", "--verbose"] if simulate else ["--quiet", "--mode=root", "--format=tar"]
    # amd64 is left implicit: the recipe is in the image history, so its argv is in amd64 IDs.
    arch = [] if architecture == "amd64" else [f"--architectures={architecture}"]
    return [
        "mmdebstrap",
        *mode,
        *arch,
        f"--variant={VARIANT}",
        f"--include={','.join(packages)}",
        source.suite,
        output,
        source.sources_line(),
    ]


def recipe(
    source: DebianSource, packages: tuple[str, ...], snapshot: str, *, architecture: str = "amd64"
) -> str:
    """How the root filesystem was made, for the image history: no paths, no host detail."""
    argv = mmdebstrap_argv(source, "rootfs.tar", packages, architecture=architecture)
    return f"SOURCE_DATE_EPOCH={epoch_seconds(snapshot)} {' '.join(argv)}"


def parse_simulation(text: str) -> list[tuple[str, str]]:
    """(package, version) pairs from apt's `Inst` lines, sorted by name."""
    return sorted(set(_INST.findall(text)))
