"""The base image a build starts from: a registry base pulled by digest, or a Debian base
bootstrapped from the archive at the lock's snapshot time.

mmdebstrap with SOURCE_DATE_EPOCH set gives bit-identical root filesystems for one package set.
The image around that filesystem is written here, config included, so its ID (the sha256 of the
config) is a pure function of the rootfs bytes and the snapshot time.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from builder import tarstream
from builder.build.normalise import load_archive
from builder.engine.sdk import Engine
from builder.errors import BootstrapError, tail
from builder.lock.apt import DEFAULT_PATH
from builder.lock.bootstrap import (
    BOOTSTRAP_PACKAGES,
    DEBIAN_ARCHITECTURES,
    DebianSource,
    mmdebstrap_argv,
    recipe,
)
from builder.lock.model import Lock
from builder.render.plan import BuildPlan
from builder.snapshots import epoch_seconds


def ensure_base(
    engine: Engine, lock: Lock, build_plan: BuildPlan, note: Callable[[str], None]
) -> None:
    """Registry bases are pulled by digest; bootstrapped ones are built from the archive, and
    built again where the name holds another architecture's root filesystem."""
    if engine.has_image(build_plan.base):
        if lock.base.kind == "registry" or _architecture(engine, build_plan.base) == (
            lock_architecture(lock)
        ):
            return
        note(f"{build_plan.base} holds another architecture's root filesystem")
    if lock.base.kind == "registry":
        note(f"pulling the base {build_plan.base}")
        engine.pull(build_plan.base)
        return
    note(f"bootstrapping the base {build_plan.base} with mmdebstrap at {lock.base.snapshot}")
    source = DebianSource(lock.base.suite, lock.base.mirror)
    with tempfile.TemporaryDirectory(prefix="reprobuild-base-") as folder:
        archive = build_base(
            source,
            BOOTSTRAP_PACKAGES,
            lock.base.snapshot,
            build_plan.base,
            Path(folder),
            architecture=lock_architecture(lock),
        )
        engine.load_archive(archive.path)


def _architecture(engine: Engine, reference: str) -> str:
    return str(engine.inspect_image(reference).get("Architecture") or "")


def lock_architecture(lock: Lock) -> str:
    """The Debian architecture of the lock's image platform."""
    return DEBIAN_ARCHITECTURES[lock.platform]


@dataclass(frozen=True)
class ImageArchive:
    path: Path
    image_id: str  # sha256:<config digest>
    diff_id: str


def write_image_archive(
    rootfs_tar: Path,
    archive: Path,
    reference: str,
    created: str,
    created_by: str,
    *,
    architecture: str = "amd64",
) -> ImageArchive:
    """Wrap a rootfs tar as a one-layer image in `docker load` format, config written here."""
    diff_id = f"sha256:{tarstream.sha256_file(rootfs_tar)}"
    config: dict[str, object] = {
        "architecture": architecture,
        "os": "linux",
        "created": created,
        "config": {"Env": [f"PATH={DEFAULT_PATH}", "LANG=C.UTF-8"], "Cmd": ["/bin/bash"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": created_by}],
    }
    # Debian's arm64 is ARMv8; the engine and registries match linux/arm64 images by it.
    if architecture == "arm64":
        config["variant"] = "v8"
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_hex = hashlib.sha256(config_bytes).hexdigest()
    size = rootfs_tar.stat().st_size
    with rootfs_tar.open("rb") as layer, archive.open("wb") as bundle:
        for chunk in load_archive(config_bytes, [(diff_id, layer, size)], reference):
            bundle.write(chunk)
    return ImageArchive(archive, f"sha256:{config_hex}", diff_id)


def build_base(
    source: DebianSource,
    packages: tuple[str, ...],
    snapshot: str,
    reference: str,
    workdir: Path,
    *,
    architecture: str = "amd64",
) -> ImageArchive:
    """Run mmdebstrap at the snapshot time and wrap its root filesystem as a loadable image;
    an architecture other than the host's needs qemu-user-static registered with binfmt_misc."""
    if shutil.which("mmdebstrap") is None:
        raise BootstrapError(
            "building a bootstrapped base needs mmdebstrap: install it (`apt-get install "
            "mmdebstrap`) or use a registry base in the spec."
        )
    rootfs = workdir / "rootfs.tar"
    argv = mmdebstrap_argv(source, str(rootfs), packages, architecture=architecture)
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
    history = recipe(source, packages, snapshot, architecture=architecture)
    archive = workdir / "image.tar"
    return write_image_archive(
        rootfs, archive, reference, snapshot, history, architecture=architecture
    )
