"""Where apt reads system packages: a dated snapshot of the distribution's archive by default."""

from __future__ import annotations

from dataclasses import dataclass

from builder import snapshots

UBUNTU_SUITES = ("focal", "jammy", "noble")
# The PATH of Debian's and Ubuntu's own images (and of the bases reprobuild bootstraps).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
UBUNTU_SNAPSHOT = "https://snapshot.ubuntu.com/ubuntu"


@dataclass(frozen=True)
class AptArchive:
    """Where apt reads system packages at lock and build time: a dated snapshot by default."""

    snapshot: str
    mirror: str
    security_mirror: str | None

    @classmethod
    def at(
        cls, snapshot: str, suite: str, mirror: str | None, security_mirror: str | None
    ) -> AptArchive:
        stamp = snapshots.snapshot_stamp(snapshot)
        if suite in UBUNTU_SUITES:
            chosen = mirror or f"{UBUNTU_SNAPSHOT}/{stamp}"
            return cls(snapshot, chosen, security_mirror or chosen)
        if mirror is None:
            debian_security = f"http://snapshot.debian.org/archive/debian-security/{stamp}"
            return cls(snapshot, snapshots.snapshot_mirror(snapshot), debian_security)
        if security_mirror is None and mirror.rstrip("/").endswith("/debian"):
            security_mirror = mirror.rstrip("/") + "-security"
        return cls(snapshot, mirror, security_mirror)

    def sources(self, suite: str) -> str:
        components = "main universe" if suite in UBUNTU_SUITES else "main"
        lines = [
            f"deb [check-valid-until=no] {self.mirror} {suite} {components}",
            f"deb [check-valid-until=no] {self.mirror} {suite}-updates {components}",
        ]
        if self.security_mirror:
            lines.append(
                f"deb [check-valid-until=no] {self.security_mirror} {suite}-security {components}"
            )
        return "\n".join(lines)


def python_packages(python: str) -> tuple[str, ...]:
    """What apt installs to give a Python-less base the spec's Python, with venv support."""
    return (f"python{python}", f"python{python}-venv")
