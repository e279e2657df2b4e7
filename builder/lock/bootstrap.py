"""Bootstrapped Debian bases: no registry, just Debian's archive at a snapshot time.

mmdebstrap with SOURCE_DATE_EPOCH set gives bit-identical root filesystems for one package set.
The image around that filesystem is written here, config included, so its ID (the sha256 of the
config) is a pure function of the rootfs bytes and the snapshot time.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from builder import tarstream
from builder.build.normalise import load_archive
from builder.errors import ReprobuildError, tail
from builder.lock.apt import DEFAULT_PATH
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


@dataclass(frozen=True)
class ImageArchive:
    path: Path
    image_id: str  # sha256:<config digest>
    diff_id: str


def write_image_archive(
    rootfs_tar: Path, archive: Path, reference: str, created: str, created_by: str
) -> ImageArchive:
    """Wrap a rootfs tar as a one-layer image in `docker load` format, config written here."""
    diff_id = f"sha256:{tarstream.sha256_file(rootfs_tar)}"
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {"Env": [f"PATH={DEFAULT_PATH}", "LANG=C.UTF-8"], "Cmd": ["/bin/bash"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": created_by}],
    }
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_hex = hashlib.sha256(config_bytes).hexdigest()
    size = rootfs_tar.stat().st_size
    with rootfs_tar.open("rb") as layer, archive.open("wb") as bundle:
        for chunk in load_archive(config_bytes, [(diff_id, layer, size)], reference):
            bundle.write(chunk)
    return ImageArchive(archive, f"sha256:{config_hex}", diff_id)


class BootstrapError(ReprobuildError):
    """mmdebstrap is missing or failed."""


def build_base(
    source: DebianSource, packages: tuple[str, ...], snapshot: str, reference: str, workdir: Path
) -> ImageArchive:
    """Run mmdebstrap at the snapshot time and wrap its root filesystem as a loadable image."""
    if shutil.which("mmdebstrap") is None:
        raise BootstrapError(
            "building a bootstrapped base needs mmdebstrap: install it (`apt-get install "
            "mmdebstrap`) or use a registry base in the spec."
        )
    rootfs = workdir / "rootfs.tar"
    argv = mmdebstrap_argv(source, str(rootfs), packages)
    environment = {
        "SOURCE_DATE_EPOCH": str(epoch_seconds(snapshot)),
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    }
    result = subprocess.run(argv, env=environment, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        last = tail(result.stderr, 10)
        raise BootstrapError(
            f"mmdebstrap could not build the {source.suite} base from {source.mirror} "
            f"(exit {result.returncode}); check that the archive answers and that this runs as "
            f"root:\n{last}"
        )
    history = recipe(source, packages, snapshot)
    return write_image_archive(rootfs, workdir / "image.tar", reference, snapshot, history)
