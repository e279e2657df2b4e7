"""The documents published with an image, judged: the SBOM and the provenance describe it,
and each DSSE signature signs its document's bytes and (given the author's key) verifies.

Used on an archive's documents and on those found beside an image in its registry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from builder.errors import ReprobuildError
from builder.publish import artifacts, provenance, sbom, signing
from builder.publish.findings import Status, Verification

if TYPE_CHECKING:
    from builder.publish.artifacts import Document
    from builder.publish.signing import PublicKey


def document_findings(
    result: Verification, documents: dict[str, Document], digest: str, lock_digest: str
) -> None:
    """The SBOM and the provenance are there, and describe the image `digest` built from the
    lock `lock_digest`."""
    found = documents.get("sbom")
    problem = "none was published" if found is None else sbom.check(found.data, digest)
    result.judge("sbom", problem is None, f"CycloneDX, of {digest}", f"the SBOM: {problem}")
    found = documents.get("provenance")
    problem = (
        "none was published" if found is None else provenance.check(found.data, digest, lock_digest)
    )
    result.judge(
        "provenance",
        problem is None,
        f"SLSA v1, of {digest}, built from {lock_digest}",
        f"the provenance: {problem}",
    )


def signature_findings(
    result: Verification, documents: dict[str, Document], key: PublicKey | None
) -> None:
    """Each signature envelope signs its document's bytes, and (with a key) verifies."""
    envelopes = {
        kind.signs: documents[kind.name]
        for kind in artifacts.KINDS
        if kind.signs and kind.name in documents
    }
    if not envelopes:
        status: Status = "fail" if key is not None else "skip"
        result.add("signatures", status, "not signed (publish --sign KEY signs it)")
        return
    problems, keyids = [], set()
    for signed, carried in envelopes.items():
        problem, keyid = _envelope_problem(documents, signed, carried.data, key)
        keyids |= keyid
        if problem:
            problems.append(problem)
    if problems:
        result.add("signatures", "fail", "; ".join(problems))
    elif key is None:
        result.add(
            "signatures",
            "skip",
            f"signed by {', '.join(sorted(keyids))}; give --key PUB to check the signatures",
        )
    else:
        result.add("signatures", "ok", f"{' and '.join(sorted(envelopes))} signed by {key.keyid}")


def _envelope_problem(
    documents: dict[str, Document], signed: str, data: bytes, key: PublicKey | None
) -> tuple[str | None, set[str]]:
    try:
        envelope = signing.open_envelope(data)
    except ReprobuildError as error:
        return f"the {signed} signature is damaged ({error})", set()
    keyids = {keyid for keyid, _ in envelope.signatures}
    original = documents.get(signed)
    if original is None or envelope.payload != original.data:
        return f"the {signed} signature signs other content than the {signed}", keyids
    if key is not None and not signing.verified(envelope, key):
        return (
            f"the {signed} signature does not verify with {key.keyid} (signed by "
            f"{', '.join(sorted(keyids))})",
            keyids,
        )
    return None, keyids
