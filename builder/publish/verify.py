"""`reprobuild verify MANIFEST | IMAGE@DIGEST`: is the published image the one the paper names?

Each check is a finding: ok, fail (the image or the manifest is not what was published),
warn (worth knowing, not a mismatch) or skip (could not be judged here, and why). The image is
pulled by digest, never by tag; its config digest, its lock label and, where the fingerprint key
matches, its smoke fingerprints are compared with the manifest.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from builder import layout
from builder.errors import (
    EngineError,
    RegistryError,
    ReprobuildError,
    VerifyError,
    VerifySubjectMissing,
)
from builder.lock import lockfile
from builder.publish import artifacts, attested, publish, referrers
from builder.publish.artifacts import Document
from builder.publish.findings import Status, Verification
from builder.reference import ImageReference, pinned_reference

if TYPE_CHECKING:
    from builder.build.build import Progress
    from builder.check.smoke import SmokeReport
    from builder.engine.registry import RegistryClient
    from builder.engine.sdk import Engine
    from builder.publish.publish import Manifest, ManifestImage, ManifestPlatform
    from builder.publish.signing import PublicKey


@dataclass(frozen=True)
class Steps:
    """How far to go beyond the digests: the smoke test (on which GPUs), and a rebuild."""

    smoke: bool
    gpus: str | None  # None: the CPU mode
    # (lock digest, platform: None for the lock's first) -> rebuilt image ID
    rebuild: Callable[[str, str | None], str] | None
    key: PublicKey | None = None  # the author's public key, to check the signatures


def read_manifest(path: Path) -> Manifest:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise VerifySubjectMissing(
            f"{path} does not exist: give the paper's reprobuild.manifest.json or an image as "
            "name@sha256:<digest>."
        ) from None
    except (OSError, ValueError, RecursionError) as error:
        raise VerifyError(
            f"{path} is not a reprobuild manifest ({error}): get the file again from where the "
            "paper published it."
        ) from None
    if not isinstance(document, dict) or document.get("format") != publish.FORMAT:
        raise VerifyError(
            f"{path} is not a reprobuild manifest of format {publish.FORMAT}: get the file again "
            "from where the paper published it, or update reprobuild."
        )
    problem = _shape_problem(document)
    if problem is not None:
        raise VerifyError(
            f"{path} is damaged ({problem}): get the file again from where the paper published it."
        )
    return cast("Manifest", document)  # its shape checked; what else is missing, a finding


def _shape_problem(document: dict[str, Any]) -> str | None:
    image, lock = document.get("image"), document.get("lock")
    if not isinstance(image, dict) or not isinstance(image.get("reference"), str):
        return "image.reference is missing"
    if not isinstance(lock, dict) or not isinstance(lock.get("digest"), str):
        return "lock.digest is missing"
    smoke = document.get("smoke")
    problem = publish.report_problem(smoke)
    return None if problem is None else f"the smoke report is not one: {problem}"


def image_reference(text: str) -> str:
    """name@sha256:... as the engine pulls it (a tag written before the digest is dropped)."""
    unpinned = (
        f"{text!r} is not pinned by digest: give name@sha256:<64 hex digits> (a tag can be moved "
        "to another image) or the paper's reprobuild.manifest.json."
    )
    reference = pinned_reference(text)
    if reference is None:
        raise VerifyError(unpinned)
    return f"{reference.written_name}@{reference.digest}"


@dataclass(frozen=True)
class Subject:
    """What to verify, read before the engine is asked anything."""

    text: str  # as given
    manifest: Manifest | None  # the published manifest; None: an image by digest
    project_lock: str | None  # for an image: this project's lock digest, when it has a lock


def read_subject(text: str, project: Path) -> Subject:
    path = Path(text)
    if "@" not in text or path.is_file():
        return Subject(text, read_manifest(path), None)
    lock = project / lockfile.LOCK_FILE
    return Subject(text, None, lockfile.file_digest(lock) if lock.is_file() else None)


def verify(
    engine: Engine, registry: RegistryClient, subject: Subject, steps: Steps
) -> Verification:
    """The image by its manifest, or by digest alone; then the documents published beside it
    in its registry (the manifest, SBOM, provenance and signatures that refer to it)."""
    manifest = subject.manifest
    if manifest is None:
        reference = ImageReference.parse(image_reference(subject.text))
        found = _beside(registry, reference)
        manifest = _published_manifest(found)
        if manifest is None:
            result = verify_image(engine, registry, subject.text, subject.project_lock, steps)
            _documents_findings(result, found, None, steps)
            return result
    result = verify_manifest(engine, registry, manifest, subject.text, steps)
    if subject.manifest is not None:
        found = _beside(registry, ImageReference.parse(result.reference))
        if found is not None:  # the signature must sign the paper's copy
            paper = publish.dumps(subject.manifest).encode()
            found.documents["manifest"] = Document(artifacts.BY_NAME["manifest"], paper)
    _documents_findings(result, found, manifest["lock"]["digest"], steps)
    return result


def _beside(registry: RegistryClient, reference: ImageReference) -> referrers.Found | None:
    """The documents that refer to the image in its registry; None when they cannot be read."""
    try:
        return referrers.discover(registry, reference, str(reference.digest))
    except ReprobuildError:
        return None


def _published_manifest(found: referrers.Found | None) -> Manifest | None:
    carried = found.documents.get("manifest") if found else None
    if carried is None:
        return None
    try:
        document = json.loads(carried.data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict) or _shape_problem(document) is not None:
        return None
    return cast("Manifest", document)  # its shape checked; what else is missing, a finding


def _documents_findings(
    result: Verification, found: referrers.Found | None, lock_digest: str | None, steps: Steps
) -> None:
    if found is None:
        result.add("documents", "warn", "the registry could not list what refers to the image")
        return
    if not found.documents:
        result.add(
            "documents", "skip", "none refer to it in its registry (published before they were)"
        )
        return
    names = ", ".join(sorted(found.documents))
    result.add("documents", "ok", f"found beside it by the {found.via}: {names}")
    digest = str(ImageReference.parse(result.reference).digest)
    if lock_digest is not None:
        attested.document_findings(result, found.documents, digest, lock_digest)
    attested.signature_findings(result, found.documents, steps.key)


def verify_manifest(
    engine: Engine, registry: RegistryClient, document: Manifest, subject: str, steps: Steps
) -> Verification:
    image = document["image"]
    published_config = str(image.get("config_digest"))
    result = Verification(subject, str(image["reference"]))
    seal_finding(result, document)
    lock_digest = embedded_lock(result, document)
    if not _pinned(result, document):
        return result
    config = _fetched(engine, registry, result, published_config)
    if config is not None:
        _same_config(result, config, published_config)
        lock_label(result, config, lock_digest, "the manifest's lock")
    platform_findings(result, registry, document, lock_digest)
    indexed = image.get("platform") if "platforms" in document else None
    _tag(result, registry, image.get("tag"), indexed)
    if config is not None:
        smoke_finding(engine, result, steps, str(config["Id"]), published=document["smoke"])
        _rebuild(result, steps, lock_digest, published_config, image.get("platform"))
    return result


def platform_findings(
    result: Verification, registry: RegistryClient, document: Manifest, lock_digest: str
) -> None:
    """For a manifest of several platforms: the registry serves its index, whose entry for each
    platform is the published image, with the published config, built from the published lock.
    Nothing for a manifest of one platform."""
    if "platforms" not in document and "index" not in document:
        return
    index = pinned_reference(str(document.get("index")))
    entries = document.get("platforms")
    if index is None:
        shown = document.get("index")
        detail = f"the manifest's index {shown!r} is not pinned by digest (name@sha256:<64 hex>)"
        result.add("index", "fail", detail)
    elif not isinstance(entries, list) or not all(map(_is_platform_entry, entries)):
        detail = (
            "the manifest's platforms are not a list of each image's platform, reference, "
            "manifest_digest and config_digest"
        )
        result.add("platforms", "fail", detail)
    elif (served := _index_digests(result, registry, index)) is not None:
        for entry in entries:
            check = f"image {entry['platform']}"
            problem = _entry_problem(index, served, entry, document["image"])
            if problem is not None:
                result.add(check, "fail", problem)
            else:
                result.add(check, *_image_status(registry, index, entry, lock_digest))


def _is_platform_entry(entry: object) -> bool:
    keys = ("platform", "reference", "manifest_digest", "config_digest")
    return isinstance(entry, dict) and all(isinstance(entry.get(key), str) for key in keys)


def _index_digests(
    result: Verification, registry: RegistryClient, index: ImageReference
) -> dict[str, str] | None:
    """The manifest digest the index names for each platform ("linux/arm64"); None, with a
    failed finding, when the registry does not serve it or it is not an index."""
    try:
        content, _ = registry.manifest(index, str(index.digest))  # its bytes hash to the digest
        document = json.loads(content)
    except RegistryError as error:
        result.add("index", "fail", f"the registry does not serve {index.written}: {error}")
        return None
    except (ValueError, RecursionError):
        document = None
    entries = document.get("manifests") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        result.add("index", "fail", f"{index.written} is not an image index")
        return None
    digests: dict[str, str] = {}
    for entry in entries:
        described = entry.get("platform") if isinstance(entry, dict) else None
        if isinstance(described, dict) and isinstance(entry.get("digest"), str):
            platform = f"{described.get('os')}/{described.get('architecture')}"
            digests.setdefault(platform, str(entry["digest"]))
    return digests


def _entry_problem(
    index: ImageReference, served: dict[str, str], entry: ManifestPlatform, image: ManifestImage
) -> str | None:
    """How the manifest's entry disagrees with itself, its main image or the index the
    registry serves; None when it agrees."""
    platform, published = entry["platform"], entry["manifest_digest"]
    expected = f"{index.written_name}@{published}"
    if entry["reference"] != expected:
        return f"its reference {entry['reference']} is not {expected}"
    if platform == image.get("platform") and published != image.get("manifest_digest"):
        return f"the manifest's image {image.get('reference')} is not this entry's {expected}"
    if platform not in served:
        return f"the index has no {platform} image (it has {', '.join(sorted(served))})"
    if served[platform] != published:
        return f"the index names {served[platform]}, the manifest says {published}"
    return None


def _image_status(
    registry: RegistryClient, index: ImageReference, entry: ManifestPlatform, lock_digest: str
) -> tuple[Status, str]:
    """The entry's image as the registry serves it: its config digest and lock label."""
    try:
        config = registry.resolve(ImageReference.parse(entry["reference"])).config_digest
        labelled = _config_labels(registry, index, config).get(layout.LOCK_LABEL)
    except RegistryError as error:
        return "fail", f"the registry does not serve {entry['reference']}: {error}"
    if config != entry["config_digest"]:
        return "fail", (
            f"the registry serves it with the config digest {config}, the manifest says "
            f"{entry['config_digest']}"
        )
    if labelled != lock_digest:
        return "fail", (
            f"it was built from the lock {labelled or '(no label)'}, but the manifest's lock is "
            f"{lock_digest}"
        )
    return "ok", (
        f"the index names {entry['manifest_digest']}; config digest {config} as published, "
        "built from the manifest's lock"
    )


def _config_labels(
    registry: RegistryClient, reference: ImageReference, config_digest: str
) -> dict[str, str]:
    """The labels of an image's config blob, read from the registry (its settings are under
    `config`, where the engine's inspection has `Config`)."""
    chunks: list[bytes] = []
    registry.read_blob(reference, config_digest, chunks.append)
    try:
        config = json.loads(b"".join(chunks))
    except (ValueError, RecursionError):
        return {}
    settings = config.get("config") if isinstance(config, dict) else None
    return labels({"Config": settings}) if isinstance(settings, dict) else {}


def _pinned(result: Verification, document: Manifest) -> bool:
    """The manifest's reference is by digest, and its digest and commands name that image."""
    try:
        reference = image_reference(result.reference)
    except VerifyError as error:
        result.add("image", "fail", str(error))
        return False
    digest = ImageReference.parse(reference).digest
    if document["image"].get("manifest_digest") != digest:
        result.add(
            "image",
            "fail",
            f"the manifest digest {document['image'].get('manifest_digest')} is not the "
            f"reference's {digest}",
        )
    if not _commands_hold(document, result.reference):
        result.add("commands", "fail", f"the published commands do not all name {reference}")
    result.reference = reference
    return True


def _commands_hold(document: Manifest, reference: str) -> bool:
    """The manifest's commands are the ones its reference and runs give. Those of a manifest
    written before runs were published (a `run` command, no `replay`) are compared where the
    two kinds share a name."""
    published = document.get("commands")
    try:
        expected = publish.commands(reference, document.get("runs", []))
    except (KeyError, TypeError, AttributeError):  # runs edited out of their shape
        return False
    if not isinstance(published, dict):
        return False
    shared = set(expected) & set(published)
    return bool(shared) and all(published[name] == expected[name] for name in shared)  # type: ignore[literal-required]


def verify_image(
    engine: Engine, registry: RegistryClient, text: str, project_lock: str | None, steps: Steps
) -> Verification:
    """An image by digest alone: no published fingerprints to compare; the project's lock, if
    there is one, is compared with the image's label."""
    result = Verification(text, image_reference(text))
    config = _fetched(engine, registry, result, None)
    if config is None:
        return result
    result.add("image", "ok", f"pulled {result.reference}; config digest {config['Id']}")
    labelled = labels(config).get(layout.LOCK_LABEL)
    if labelled is None:
        result.add(
            "lock",
            "fail",
            "the image has no reprobuild lock label: it was not built by reprobuild build, so "
            "there is nothing to verify it against",
        )
        return result
    if project_lock is not None:
        lock_label(result, config, project_lock, "this project's reprobuild.lock")
    else:
        result.add(
            "lock",
            "skip",
            f"built from the lock {labelled}; no reprobuild.lock here to compare it with",
        )
    smoke_finding(engine, result, steps, str(config["Id"]), published=None)
    _rebuild(result, steps, labelled, str(config["Id"]), _config_platform(config))
    return result


def _config_platform(config: dict[str, Any]) -> str | None:
    """linux/arm64 of the engine's inspection of an image; None when it does not say."""
    os_name, architecture = config.get("Os"), config.get("Architecture")
    return f"{os_name}/{architecture}" if os_name and architecture else None


def seal_finding(result: Verification, document: Manifest) -> None:
    found = publish.integrity(document)
    result.judge(
        "manifest",
        document.get("integrity") == found,
        f"integrity {found} matches its content",
        f"edited after publishing: its content hashes to {found}, the manifest says "
        f"{document.get('integrity')}",
    )


def embedded_lock(result: Verification, document: Manifest) -> str:
    lock = document.get("lock") or {}
    digest, text = str(lock.get("digest")), lock.get("text")
    if not isinstance(text, str):
        result.add("lock", "fail", "the manifest carries no lock text")
        return digest
    found = lockfile.text_digest(text)
    if found != digest:
        result.add(
            "lock", "fail", f"the embedded lock hashes to {found}, the manifest says {digest}"
        )
    return digest


def _fetched(
    engine: Engine, registry: RegistryClient, result: Verification, published_config: str | None
) -> dict[str, Any] | None:
    """Ask the registry for the digest (the engine may hold a copy the registry lost), then pull
    it; the engine's inspection of it, or None with a failed finding."""
    try:
        served = registry.resolve(ImageReference.parse(result.reference))
    except RegistryError as error:
        result.add("image", "fail", f"the registry does not serve {result.reference}: {error}")
        return None
    if published_config is not None and served.config_digest != published_config:
        result.add(
            "image",
            "fail",
            f"the registry serves {result.reference} with the config digest "
            f"{served.config_digest}, the manifest says {published_config}",
        )
        return None
    try:
        engine.ensure_image(result.reference)
        return engine.inspect_image(result.reference)
    except EngineError as error:
        result.add("image", "fail", f"{result.reference} could not be pulled: {error}")
        return None


def _same_config(result: Verification, config: dict[str, Any], published: str) -> None:
    found = str(config["Id"])
    result.judge(
        "image",
        found == published,
        f"pulled {result.reference}; config digest {found} as published",
        f"{result.reference} has the config digest {found}, the manifest says {published}",
    )


def labels(config: dict[str, Any]) -> dict[str, str]:
    return dict((config.get("Config") or {}).get("Labels") or {})


def lock_label(result: Verification, config: dict[str, Any], expected: str, whose: str) -> None:
    labelled = labels(config).get(layout.LOCK_LABEL)
    result.judge(
        "lock",
        labelled == expected,
        f"the image was built from {whose} {expected}",
        f"the image was built from the lock {labelled or '(no label)'}, but {whose} is {expected}",
    )


def _tag(
    result: Verification, registry: RegistryClient, tag: str | None, platform: str | None
) -> None:
    """The tag still names the image, or an index whose entry for `platform` (the image's, when
    it was published with an index) is the image."""
    if not tag:
        return
    published = ImageReference.parse(result.reference).digest
    try:
        resolved = registry.resolve(ImageReference.parse(str(tag)), platform)
    except RegistryError as error:
        result.add("tag", "warn", f"{tag} could not be read ({error}); the digest is what counts")
        return
    found = resolved.index_digest or resolved.digest
    if published in (resolved.digest, resolved.index_digest):
        result.add("tag", "ok", f"{tag} still names the published image")
    else:
        result.add(
            "tag",
            "warn",
            f"{tag} now names {found}, a different image from the published {published}: "
            "anyone pulling by tag gets that image; pull by digest as the manifest says",
        )


def smoke_finding(
    engine: Engine,
    result: Verification,
    steps: Steps,
    image_id: str,
    *,
    published: SmokeReport | None,
    run_as: str | None = None,  # the name to run it by, when not result.reference
) -> None:
    if not steps.smoke:
        result.add("smoke", "skip", "not run (--no-smoke)")
        return
    from builder.build.recordfile import ImageToRun
    from builder.check.smoke import differing_kernels, run_smoke

    chosen = ImageToRun(run_as or result.reference, image_id, result.reference)
    try:
        ran = run_smoke(engine, chosen, gpus=steps.gpus).to_dict()
    except ReprobuildError as error:
        hint = "" if steps.gpus is None else " (no GPU here? --cpu runs the CPU mode)"
        result.add("smoke", "fail", f"could not run{hint}: {error}")
        return
    result.smoke = ran
    verdict = ran.get("verdict")
    mode = "CPU mode" if steps.gpus is None else f"GPU ({ran.get('key', {}).get('gpu')})"
    statuses: dict[str, Status] = {"pass": "ok", "unproven": "warn"}
    status = statuses.get(str(verdict), "fail")
    kernels = ran.get("kernels", {})
    differing = sorted(differing_kernels(ran))
    detail = f"{mode}: verdict {verdict}, {len(kernels)} kernels"
    if differing:
        detail += f"; differing between its two processes: {', '.join(differing)}"
    result.add("smoke", status, detail)
    fingerprints(result, ran, published)


def fingerprints(result: Verification, ran: SmokeReport, published: SmokeReport | None) -> None:
    if not published:
        result.add(
            "fingerprints",
            "skip",
            "no published fingerprints to compare (give the paper's manifest)",
        )
        return
    mine, theirs = ran.get("key") or {}, published.get("key") or {}
    different = sorted(
        name for name in set(mine) | set(theirs) if mine.get(name) != theirs.get(name)
    )
    if different:
        shown = "; ".join(
            f"{name}: {_short(theirs.get(name))} there, {_short(mine.get(name))} here"
            for name in different
        )
        result.add(
            "fingerprints",
            "skip",
            f"not compared: identical bits are promised only for an identical key, and the key "
            f"differs ({shown})",
        )
        return
    first = {name: kernel["runs"][0] for name, kernel in ran.get("kernels", {}).items()}
    stated = {name: kernel["runs"][0] for name, kernel in published.get("kernels", {}).items()}
    unequal = sorted(
        name for name in set(first) | set(stated) if first.get(name) != stated.get(name)
    )
    if unequal:
        result.add("fingerprints", "fail", f"differ from the published ones: {', '.join(unequal)}")
    else:
        result.add(
            "fingerprints",
            "ok",
            f"same key; all {len(first)} fingerprints equal to the published ones",
        )


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _rebuild(
    result: Verification, steps: Steps, lock_digest: str, published: str, platform: str | None
) -> None:
    if steps.rebuild is None:
        return
    try:
        rebuilt = steps.rebuild(lock_digest, platform)
    except ReprobuildError as error:
        result.add("rebuild", "fail", f"could not rebuild: {error}")
        return
    result.judge(
        "rebuild",
        rebuilt == published,
        f"a --no-cache rebuild of the lock gave {rebuilt} again",
        f"a --no-cache rebuild of the lock gave {rebuilt}, not {published}: "
        f"`reprobuild diff {result.reference} {rebuilt}` shows why",
    )


def rebuilder(
    engine: Engine, project: Path, progress: Progress
) -> Callable[[str, str | None], str]:
    """A --no-cache build of the project's lock, which must be the published one, for the
    published image's platform; no record is written (the project's own build stays its last
    build)."""
    from builder.build import build
    from builder.lock import lockfile

    def rebuild(lock_digest: str, platform: str | None) -> str:
        current = lockfile.read_current(project)
        if current.digest != lock_digest:
            raise VerifyError(
                f"{current.path} is {current.digest}, not the published lock {lock_digest}: "
                "check out the commit the manifest names (source.git_commit) and verify from there"
            )
        if platform is not None and platform not in current.lock.platforms:
            raise VerifyError(
                f"{current.path} pins {', '.join(current.lock.platforms)}, not the image's "
                f"{platform}: the image was not built from this lock for its platform"
            )
        record = build.build_lock(
            engine,
            current,
            no_cache=True,
            push=None,
            progress=progress,
            platform=platform,
        )
        return record.image_id

    return rebuild
