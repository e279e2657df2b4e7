"""Whether this machine runs another CPU's programs, as an image of another platform needs
(an arm64 image's steps, probes and smoke test on an x86_64 machine): qemu-user registered with
the kernel's binfmt_misc. Registered with the F flag, the kernel opens the interpreter when it
is registered, so containers need no qemu inside them.
"""

from __future__ import annotations

import platform as host
from pathlib import Path

from builder.errors import EmulationMissing

BINFMT = Path("/proc/sys/fs/binfmt_misc")
# An image platform's CPU as `uname -m` names it, and the binfmt entry Debian's
# qemu-user-static registers for it.
MACHINES = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}
HOST_MACHINES = {"amd64": "x86_64", "arm64": "aarch64"}


def emulation_problem(
    platform: str, machine: str | None = None, binfmt: Path | None = None
) -> str | None:
    """Why this machine (`machine`, default this one's) cannot run `platform`'s programs; None
    when it runs them natively or qemu is registered for them in `binfmt` (default BINFMT)."""
    wanted = MACHINES[platform]
    here = (machine or host.machine()).lower()
    if HOST_MACHINES.get(here, here) == wanted:
        return None
    binfmt = binfmt or BINFMT
    entry = binfmt / f"qemu-{wanted}"
    if not (binfmt / "status").exists():
        return f"binfmt_misc is not mounted at {binfmt}"
    try:
        state = entry.read_text().splitlines()
    except OSError:
        return f"no qemu-{wanted} is registered in {binfmt}"
    if not state or state[0].strip() != "enabled":
        return f"qemu-{wanted} is registered in {binfmt} but disabled"
    return None


def refuse_without_emulation(platform: str, doing: str) -> None:
    """Raise EmulationMissing, naming `doing` and the fix, when `emulation_problem` finds one."""
    problem = emulation_problem(platform)
    if problem is None:
        return
    qemu = f"qemu-{MACHINES[platform]}"
    raise EmulationMissing(
        f"{doing} runs {platform} programs, which this {host.machine()} machine runs only under "
        f"qemu emulation, and {problem}. Install Debian's qemu-user-static and binfmt-support "
        f"(`apt-get install qemu-user-static binfmt-support`), mount binfmt_misc where it is "
        f"not (`mount -t binfmt_misc binfmt_misc {BINFMT}`) and register qemu "
        f"(`update-binfmts --enable {qemu}`); or run this on an {MACHINES[platform]} machine."
    )
