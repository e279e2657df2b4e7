"""What `verify` found: one finding per check (ok, fail, warn, skip) and the verdict they give.

Each check is a finding: ok, fail (the image or what was published is not what it should be),
warn (worth knowing, not a mismatch) or skip (could not be judged here, and why).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from builder.check.smoke import ImageSmokeReport

Status = Literal["ok", "warn", "skip", "fail"]


@dataclass(frozen=True)
class Finding:
    check: str
    status: Status
    detail: str


@dataclass
class Verification:
    subject: str
    reference: str  # name@sha256:... pulled
    findings: list[Finding] = field(default_factory=list)
    smoke: ImageSmokeReport | None = None

    def add(self, check: str, status: Status, detail: str) -> None:
        self.findings.append(Finding(check, status, detail))

    def judge(self, check: str, holds: bool, ok: str, fail: str) -> None:
        self.add(check, "ok" if holds else "fail", ok if holds else fail)

    @property
    def failed(self) -> bool:
        return any(finding.status == "fail" for finding in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "reference": self.reference,
            "verified": not self.failed,
            "findings": [asdict(finding) for finding in self.findings],
            "smoke": self.smoke,
        }
