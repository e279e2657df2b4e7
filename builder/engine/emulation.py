"""Whether the engine's machine runs another CPU's programs, as an image of another platform
needs (an arm64 image's build steps, probes and smoke test on an x86_64 machine): qemu-user
registered with the kernel's binfmt_misc, with the F flag, which makes the kernel open the
interpreter when it is registered, so containers need no qemu inside them.

Only a local engine's kernel can be read (its socket is on this machine); a remote engine is
taken at its word, and its own failure says what it lacks.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from builder.errors import EmulationMissing

if TYPE_CHECKING:
    from builder.engine.sdk import Engine

BINFMT = Path("/proc/sys/fs/binfmt_misc")
# An image platform's CPU as `uname -m` names it, which Debian's qemu-user-static names its
# binfmt_misc entry by (qemu-aarch64).
MACHINES = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}


def emulation_problem(platform: str, native: str, binfmt: Path | None = None) -> str | None:
    """Why a machine whose native platform is `native` cannot run `platform`'s programs; None
    when they are the same, when reprobuild knows no qemu for it, or when qemu is registered
    for it in `binfmt` (default BINFMT), enabled and with the F flag."""
    wanted = MACHINES.get(platform)
    if wanted is None or platform == native:
        return None
    binfmt = binfmt or BINFMT
    try:
        status = (binfmt / "status").read_text().strip()
    except OSError:
        return f"binfmt_misc is not mounted at {binfmt}"
    if status != "enabled":
        return f"binfmt_misc is disabled at {binfmt}"
    return _entry_problem(binfmt, f"qemu-{wanted}")


def _entry_problem(binfmt: Path, name: str) -> str | None:
    try:
        entry = (binfmt / name).read_text().splitlines()
    except OSError:
        return f"no {name} is registered in {binfmt}"
    if not entry or entry[0].strip() != "enabled":
        return f"{name} is registered in {binfmt} but disabled"
    flags = next((line.split(":", 1)[1] for line in entry if line.startswith("flags:")), "")
    if "F" not in flags:
        return f"{name} is registered in {binfmt} without the F flag, which containers need"
    return None


def refuse_without_emulation(engine: Engine, platform: str, doing: str) -> None:
    """Raise EmulationMissing, naming `doing` and the fix, when the local engine's machine has
    no qemu for `platform`."""
    if not engine.target.startswith("unix://"):
        return
    native = engine.platform()
    problem = emulation_problem(platform, native)
    if problem is None:
        return
    qemu = f"qemu-{MACHINES[platform]}"
    machine = MACHINES.get(native, native)
    raise EmulationMissing(
        f"{doing} runs {platform} programs, which this {machine} machine runs only under qemu "
        f"emulation, and {problem}. Install Debian's qemu-user-static and binfmt-support "
        f"(`apt-get install qemu-user-static binfmt-support`), mount binfmt_misc where it is "
        f"not (`mount -t binfmt_misc binfmt_misc {BINFMT}`) and register qemu "
        f"(`update-binfmts --enable {qemu}`); or run this on an {MACHINES[platform]} machine."
    )
