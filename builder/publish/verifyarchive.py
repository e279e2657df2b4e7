"""`reprobuild verify ARCHIVE`, offline: is this file the image and the documents a paper cites?

Read in one pass (ocilayout.read), then judged without a network: the archive's sha256 against
the cited one; every blob against its name; the chain index -> image manifest -> config ->
layers; index.json and Docker's manifest.json against the ones the blobs give (so a changed byte
in either is found); the published manifest's seal and digests; the lock against the image's
label; the SBOM and the provenance against the image; the signatures against the key. Then,
unless told not to, the image is loaded into the engine and smoke-tested like a pulled one.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from builder.errors import ReprobuildError, VerifyError, VerifySubjectMissing
from builder.lock import lockfile
from builder.publish import artifacts, attested, findings, ocilayout, verify
from builder.publish.artifacts import Artifact, Document
from builder.publish.ocilayout import Contents, Member
from builder.reference import DIGEST

if TYPE_CHECKING:
    from builder.engine.sdk import Engine
    from builder.publish.publish import Manifest
    from builder.publish.signing import PublicKey

FIXED_NAMES = (ocilayout.LAYOUT_FILE, ocilayout.INDEX_FILE, ocilayout.DOCKER_MANIFEST_FILE)


@dataclass(frozen=True)
class Held:
    """What the archive holds, as far as it could be read."""

    image: dict[str, Any]  # the image manifest
    image_member: Member
    media_type: str
    documents: dict[str, Document]  # by kind name
    carried: list[Artifact]  # in index order


def read(path: Path, progress: ocilayout.Progress | None = None) -> Contents:
    try:
        return ocilayout.read(path, progress)
    except FileNotFoundError:
        raise VerifySubjectMissing(
            f"{path} does not exist: give the archive the paper deposited (the .oci.tar file)."
        ) from None
    except OSError as error:
        raise VerifyError(f"cannot read {path} ({error.strerror or error}).") from None


def cited_sha256(path: Path, given: str | None) -> str | None:
    """The sha256 the archive is checked against: `given`, else the one in `ARCHIVE.sha256`
    beside it (as `sha256sum` writes it), else none."""
    if given is not None:
        return given
    try:
        fields = path.with_name(f"{path.name}.sha256").read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError):
        return None
    return fields[0] if fields else None


def is_archive(path: Path) -> bool:
    """Whether `path` is a tar (an archive to verify) rather than a manifest's JSON."""
    try:
        with path.open("rb") as handle:
            head = handle.read(512)
    except OSError:
        return False
    return len(head) == 512 and head[257:262] == b"ustar"


def verify_archive(
    engine_for_smoke: Engine | None,
    path: Path,
    steps: verify.Steps,
    *,
    cited_sha256: str | None,
    progress: ocilayout.Progress | None = None,
) -> findings.Verification:
    """The findings; `engine_for_smoke` None: offline (no load, no smoke test)."""
    contents = read(path, progress)
    result, held, document = judge(contents, str(path), steps.key, cited_sha256)
    if engine_for_smoke is None or not steps.smoke:
        result.add("smoke", "skip", "not run (--no-smoke)")
    elif held is None or document is None or result.failed:
        result.add("smoke", "skip", "not run: the archive failed the checks above")
    else:
        _load_and_smoke(engine_for_smoke, result, path, held, document=document, steps=steps)
    return result


def judge(
    contents: Contents, subject: str, key: PublicKey | None, cited_sha256: str | None
) -> tuple[findings.Verification, Held | None, Manifest | None]:
    """Every check that needs nothing but the archive's contents (and the key)."""
    result = findings.Verification(subject, subject)
    _sum(result, contents, cited_sha256)
    _tar(result, contents)
    _blobs(result, contents)
    held = _held(result, contents)
    if held is None:
        return result, None, None
    document = _manifest_document(result, held)
    if document is not None:
        result.reference = str(document["image"]["reference"])
        _image(result, contents, held, document)
        _layout_files(result, contents, held, document)
        lock_digest = _lock(result, contents, held, document)
        digest = held.image_member.digest
        attested.document_findings(result, held.documents, digest, lock_digest)
    attested.signature_findings(result, held.documents, key)
    return result, held, document


def _sum(result: findings.Verification, contents: Contents, cited: str | None) -> None:
    found = contents.sha256
    if cited is None:
        result.add(
            "archive",
            "skip",
            f"sha256 {found.removeprefix('sha256:')} ({contents.size} bytes): compare it with "
            "the one the paper cites (or give --sha256)",
        )
        return
    expected = cited if cited.startswith("sha256:") else f"sha256:{cited}"
    result.judge(
        "archive",
        found == expected.lower(),
        f"sha256 {found.removeprefix('sha256:')} as cited",
        f"its sha256 is {found.removeprefix('sha256:')}, the cited one is "
        f"{expected.removeprefix('sha256:')}: the file is not the deposited one",
    )


def _tar(result: findings.Verification, contents: Contents) -> None:
    problems = []
    if contents.broken:
        problems.append(contents.broken)
    counts = Counter(member.name for member in contents.members)
    problems += [f"{name} appears {count} times" for name, count in counts.items() if count > 1]
    allowed = set(FIXED_NAMES) | {folder.rstrip("/") for folder in ocilayout.FOLDERS}
    problems += [
        f"{member.name} is not part of an OCI layout"
        for member in contents.members
        if member.name not in allowed and not _is_blob_name(member.name)
    ]
    problems += [
        f"{member.name}'s tar header was changed (mode, time or owner)"
        for member in contents.members
        if not member.canonical
    ]
    result.judge(
        "tar",
        not problems,
        f"{len(contents.members)} members, headers as written",
        "; ".join(problems[:5]) + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""),
    )


def _is_blob_name(name: str) -> bool:
    hexdigits = name.removeprefix(ocilayout.BLOBS)
    return name.startswith(ocilayout.BLOBS) and DIGEST.match(f"sha256:{hexdigits}") is not None


def _blobs(result: findings.Verification, contents: Contents) -> None:
    blobs = [member for member in contents.members if _is_blob_name(member.name)]
    wrong = [member for member in blobs if member.name != ocilayout.blob_name(member.digest)]
    result.judge(
        "blobs",
        not wrong,
        f"{len(blobs)} blobs, each with the sha256 it is named by",
        "; ".join(f"{member.name} hashes to {member.digest}" for member in wrong),
    )


def _held(result: findings.Verification, contents: Contents) -> Held | None:
    index = ocilayout.json_of(contents.named(ocilayout.INDEX_FILE))
    entries = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        result.add("layout", "fail", "index.json is missing or not an OCI index")
        return None
    images = [entry for entry in entries if "artifactType" not in entry]
    if len(images) != 1 or not isinstance(images[0].get("digest"), str):
        result.add("layout", "fail", f"index.json names {len(images)} images, not one")
        return None
    image_member = contents.blob(images[0]["digest"])
    image = ocilayout.json_of(image_member)
    if image_member is None or not isinstance(image, dict):
        result.add("layout", "fail", f"the image manifest {images[0]['digest']} is missing")
        return None
    documents, carried = _carried(result, contents, entries, images[0]["digest"])
    media_type = str(images[0].get("mediaType") or image.get("mediaType"))
    return Held(image, image_member, media_type, documents, carried)


def _carried(
    result: findings.Verification, contents: Contents, entries: list[dict[str, Any]], image: str
) -> tuple[dict[str, Document], list[Artifact]]:
    documents: dict[str, Document] = {}
    carried: list[Artifact] = []
    for entry in entries:
        if "artifactType" not in entry:
            continue
        member = contents.blob(str(entry.get("digest")))
        manifest = ocilayout.json_of(member)
        kind = artifacts.kind_of(manifest) if isinstance(manifest, dict) else None
        layer = artifacts.document_layer(manifest) if isinstance(manifest, dict) else None
        data = contents.blob(str(layer.get("digest"))) if layer else None
        subject = (manifest.get("subject") or {}) if isinstance(manifest, dict) else {}
        if member is None or kind is None or data is None or data.data is None:
            result.add(
                "layout", "fail", f"the artifact {entry.get('digest')} is missing or not ours"
            )
            continue
        if subject.get("digest") != image:
            result.add("layout", "fail", f"the {kind.name} artifact refers to another image")
        document = Document(kind, data.data)
        documents[kind.name] = document
        carried.append(Artifact(member.data or b"", document))
    return documents, carried


def _manifest_document(result: findings.Verification, held: Held) -> Manifest | None:
    from builder.publish import publish

    found = held.documents.get("manifest")
    document = _parsed(found.data) if found else None
    if not isinstance(document, dict) or document.get("format") != publish.FORMAT:
        result.add("manifest", "fail", "the archive carries no reprobuild manifest")
        return None
    image = document.get("image")
    if not isinstance(image, dict) or not isinstance(image.get("reference"), str):
        result.add("manifest", "fail", "its manifest has no image.reference")
        return None
    manifest = cast("Manifest", document)  # its shape checked; the rest, findings below
    verify.seal_finding(result, manifest)
    return manifest


def _parsed(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


def _image(
    result: findings.Verification, contents: Contents, held: Held, document: Manifest
) -> None:
    """The chain index -> image manifest -> config -> layers, and the published digests."""
    published = document["image"]
    problems = []
    digest = held.image_member.digest
    if digest != published.get("manifest_digest"):
        problems.append(
            f"its image manifest is {digest}, the published one is "
            f"{published.get('manifest_digest')}"
        )
    config = held.image.get("config") or {}
    if config.get("digest") != published.get("config_digest"):
        problems.append(
            f"its config is {config.get('digest')}, the published one is "
            f"{published.get('config_digest')}"
        )
    for blob in (config, *(held.image.get("layers") or [])):
        member = contents.blob(str(blob.get("digest")))
        if member is None:
            problems.append(f"{blob.get('digest')} is missing")
        elif member.size != blob.get("size"):
            problems.append(
                f"{member.name} has {member.size} bytes, its manifest says {blob.get('size')}"
            )
    layers = len(held.image.get("layers") or [])
    result.judge(
        "image",
        not problems,
        f"manifest {digest} as published; its config and {layers} layers present",
        "; ".join(problems),
    )


def _layout_files(
    result: findings.Verification, contents: Contents, held: Held, document: Manifest
) -> None:
    """oci-layout, index.json and manifest.json are what the blobs and the manifest give."""
    from builder.reference import ImageReference

    tag = str(document["image"].get("tag") or document["image"]["reference"])
    subject: artifacts.Descriptor = {
        "mediaType": held.media_type,
        "digest": held.image_member.digest,
        "size": held.image_member.size,
    }
    config = str((held.image.get("config") or {}).get("digest"))
    layers = [str(layer.get("digest")) for layer in held.image.get("layers") or []]
    expected = {
        ocilayout.LAYOUT_FILE: ocilayout.LAYOUT,
        ocilayout.INDEX_FILE: ocilayout.index(
            subject, held.carried, ImageReference.parse(tag).tag or "latest", tag
        ),
        ocilayout.DOCKER_MANIFEST_FILE: ocilayout.docker_manifest(config, layers, tag),
    }
    changed = [name for name, data in expected.items() if _data(contents, name) != data]
    result.judge(
        "layout",
        not changed,
        "oci-layout, index.json and manifest.json are the ones its blobs give",
        f"{', '.join(changed)} differ from what its blobs and manifest give (changed or missing)",
    )


def _data(contents: Contents, name: str) -> bytes | None:
    member = contents.named(name)
    return None if member is None else member.data


def _lock(result: findings.Verification, contents: Contents, held: Held, document: Manifest) -> str:
    lock_digest = verify.embedded_lock(result, document)
    carried = held.documents.get("lock")
    if carried is None:
        result.add("lock", "fail", "the archive carries no reprobuild.lock")
    elif lockfile.text_digest(carried.data.decode("utf-8", "replace")) != lock_digest:
        result.add("lock", "fail", f"its reprobuild.lock is not the published lock {lock_digest}")
    config = ocilayout.json_of(contents.blob(str((held.image.get("config") or {}).get("digest"))))
    settings = config.get("config") if isinstance(config, dict) else None
    verify.lock_label(result, {"Config": settings or {}}, lock_digest, "the manifest's lock")
    return lock_digest


def _load_and_smoke(
    engine: Engine,
    result: findings.Verification,
    path: Path,
    held: Held,
    *,
    document: Manifest,
    steps: verify.Steps,
) -> None:
    config = str((held.image.get("config") or {}).get("digest"))
    try:
        engine.load_archive(path)
    except ReprobuildError as error:
        result.add("load", "fail", f"the engine would not load it: {error}")
        return
    loaded = engine.image_id(config)
    result.judge(
        "load",
        loaded == config,
        f"loaded into the engine as {config}",
        f"the engine loaded it as {loaded}, not {config}",
    )
    if loaded == config:
        verify.smoke_finding(
            engine, result, steps, config, published=document["smoke"], run_as=config
        )
