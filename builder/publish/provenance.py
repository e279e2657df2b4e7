"""Lock + build record -> an in-toto Statement v1 whose predicate is SLSA Provenance v1: which
inputs made the image, how, and by what, in the form attestation tools read.

The build type, BUILD_TYPE, is a reprobuild image build: the Docker engine builds the Dockerfile
that reprobuild renders from a lock, then reprobuild normalises the layers, so the same lock
gives the same image bytes. Its parameters:

- externalParameters (what the person building chose; a rebuild gives the same):
  - lock: {path, digest}: the lock file (its path in the project, sha256 of its bytes), which
    pins every input: base image, system packages, wheels;
  - image: the name:tag the image was pushed under (null when it was not pushed);
  - source: {gitCommit, gitDirty}: the project's commit whose code is in the image (null when
    the project is not a git checkout).
- internalParameters (what reprobuild itself brought): reprobuildVersion, knowledgeVersion, and
  templates: sha256 of each Dockerfile and Apptainer template the build rendered (a project's
  override where it has one).
- resolvedDependencies: the lock file; the base image (`pkg:oci`, by manifest digest) or the
  archive a bootstrapped base came from; every system package (`pkg:deb`); every wheel (its URL
  and sha256).
- byproducts: the image config (its digest is the image id) and each layer's diff_id.

There are no times and no invocation id: the statement is a pure function of its inputs, so a
rebuild can make it again byte for byte.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

from builder.errors import PublishError
from builder.lock.lockfile import LOCK_FILE
from builder.publish.sbom import base_purl, deb_purl, system_packages, wheel_sha256
from builder.reference import DIGEST
from builder.render.templates import OVERRIDE_FOLDER, TEMPLATES, packaged_templates

if TYPE_CHECKING:
    from pathlib import Path

    from builder.build.buildrecord import BuildRecord
    from builder.lock.model import Lock

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
MEDIA_TYPE = "application/vnd.in-toto+json"
BUILD_TYPE = "https://reprobuild.dev/buildtypes/image/v1"
BUILDER_ID = "https://reprobuild.dev/builder/docker-engine"


@dataclass(frozen=True)
class Subject:
    name: str  # e.g. "127.0.0.1:5055/lab/model" or an archive file name "model.oci.tar"
    sha256: str  # 64 hex digits, no prefix


class ResourceDescriptor(TypedDict, total=False):
    name: str
    uri: str
    digest: dict[str, str]
    annotations: dict[str, str]


class StatementSubject(TypedDict):
    name: str
    digest: dict[str, str]


class LockParameter(TypedDict):
    path: str
    digest: str


class SourceParameter(TypedDict):
    gitCommit: str | None
    gitDirty: bool | None


class ExternalParameters(TypedDict):
    lock: LockParameter
    image: str | None
    source: SourceParameter


class InternalParameters(TypedDict):
    reprobuildVersion: str
    knowledgeVersion: str
    templates: dict[str, str]


class BuildDefinition(TypedDict):
    buildType: str
    externalParameters: ExternalParameters
    internalParameters: InternalParameters
    resolvedDependencies: list[ResourceDescriptor]


class Builder(TypedDict):
    id: str
    version: dict[str, str]


class RunDetails(TypedDict):
    builder: Builder
    byproducts: list[ResourceDescriptor]


class Provenance(TypedDict):
    buildDefinition: BuildDefinition
    runDetails: RunDetails


class Statement(TypedDict):
    _type: str
    subject: list[StatementSubject]
    predicateType: str
    predicate: Provenance


def statement(
    lock: Lock,
    *,
    lock_digest: str,
    lock_path: str,
    record: BuildRecord,
    subjects: Sequence[Subject],
    templates: Mapping[str, str],
) -> bytes:
    """The statement that `subjects` (the pushed image, an archive of it) were built by
    `record`'s build from `lock` (the file at `lock_path` whose digest is `lock_digest`)."""
    _check_inputs(lock_digest, record, subjects)
    document: Statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": s.name, "digest": {"sha256": s.sha256}} for s in subjects],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": _definition(lock, lock_digest, lock_path, record, templates),
            "runDetails": _run_details(record),
        },
    }
    text = json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False)
    return (text + "\n").encode("utf-8")


def _check_inputs(lock_digest: str, record: BuildRecord, subjects: Sequence[Subject]) -> None:
    if not DIGEST.match(lock_digest):
        raise PublishError(f"the lock digest {lock_digest!r} is not sha256:<64 hex digits>.")
    if record.lock != lock_digest:
        raise PublishError(
            f"the last build is of the lock {record.lock}, not of {lock_digest}: run "
            "`reprobuild build --push` for this lock, then publish."
        )
    if not subjects:
        raise PublishError("the provenance needs a subject: push the build or export it first.")
    for subject in subjects:
        if not DIGEST.match(f"sha256:{subject.sha256}"):
            raise PublishError(
                f"the subject {subject.name!r} has the digest {subject.sha256!r}, not 64 "
                "lower-case hex digits."
            )


def _hex(digest: str, what: str) -> str:
    if not DIGEST.match(digest):
        raise PublishError(
            f"the build record's {what} {digest!r} is not sha256:<64 hex digits>: the record "
            "was edited. Run `reprobuild build` again."
        )
    return digest.removeprefix("sha256:")


def _definition(
    lock: Lock,
    lock_digest: str,
    lock_path: str,
    record: BuildRecord,
    templates: Mapping[str, str],
) -> BuildDefinition:
    return {
        "buildType": BUILD_TYPE,
        "externalParameters": {
            "lock": {"path": lock_path, "digest": lock_digest},
            "image": record.pushed_tag,
            "source": {"gitCommit": record.git_commit, "gitDirty": record.git_dirty},
        },
        "internalParameters": {
            "reprobuildVersion": record.reprobuild_version,
            "knowledgeVersion": record.knowledge_version,
            "templates": dict(sorted(templates.items())),
        },
        "resolvedDependencies": list(_dependencies(lock, lock_digest)),
    }


def _dependencies(lock: Lock, lock_digest: str) -> Iterator[ResourceDescriptor]:
    yield {"name": LOCK_FILE, "digest": {"sha256": lock_digest.removeprefix("sha256:")}}
    yield _base(lock)
    for name, (version, _, _) in system_packages(lock).items():
        yield {"name": name, "uri": deb_purl(lock, name, version)}
    for package in lock.python.packages:
        yield {
            "name": package.name,
            "uri": package.url,
            "digest": {"sha256": wheel_sha256(package)},
        }


def _base(lock: Lock) -> ResourceDescriptor:
    base = lock.base
    purl = base_purl(lock)
    if purl is None:
        # A bootstrapped base is its packages (listed on their own) from this archive snapshot.
        return {
            "name": f"debian-{base.suite}",
            "uri": base.mirror,
            "annotations": {"suite": base.suite, "snapshot": base.snapshot},
        }
    digest = base.digest.removeprefix("sha256:")
    return {"name": base.reference, "uri": purl, "digest": {"sha256": digest}}


def _run_details(record: BuildRecord) -> RunDetails:
    layers: list[ResourceDescriptor] = [
        {"name": f"rootfs.diff_ids[{index}]", "digest": {"sha256": _hex(layer.diff_id, "layer")}}
        for index, layer in enumerate(record.layers)
    ]
    config: ResourceDescriptor = {
        "name": "config",
        "digest": {"sha256": _hex(record.image_id, "image id")},
    }
    return {
        "builder": {
            "id": BUILDER_ID,
            "version": {
                "reprobuild": record.reprobuild_version,
                "docker-engine": record.engine_version,
            },
        },
        "byproducts": [config, *layers],
    }


def template_digests(project: Path) -> dict[str, str]:
    """name -> sha256 of each template the build rendered: the project's override in
    reprobuild-templates/ where it has one (render looks there first), else the packaged one."""
    digests = {}
    for name in TEMPLATES:
        override = project / OVERRIDE_FOLDER / name
        path = override if override.is_file() else packaged_templates() / name
        try:
            data = path.read_bytes()
        except OSError as error:
            raise PublishError(
                f"the template {path} cannot be read ({error}): reinstall reprobuild, or fix "
                f"the override in {OVERRIDE_FOLDER}/."
            ) from None
        digests[name] = f"sha256:{hashlib.sha256(data).hexdigest()}"
    return digests


def check(data: bytes, manifest_digest: str, lock_digest: str) -> str | None:
    """None when `data` is SLSA v1 provenance of the image with this manifest digest, built from
    the lock with this digest; else what is wrong with it, as a short phrase."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        return "it is not JSON"
    if not isinstance(document, dict) or document.get("_type") != STATEMENT_TYPE:
        return "it is not an in-toto Statement v1"
    if document.get("predicateType") != PREDICATE_TYPE:
        return f"its predicate is {document.get('predicateType')!r}, not SLSA Provenance v1"
    if manifest_digest.removeprefix("sha256:") not in _subject_digests(document):
        return f"no subject of it is {manifest_digest}"
    if not _names_lock(document, lock_digest):
        return f"it does not name the lock {lock_digest}"
    return None


def _at(value: object, *keys: str) -> object:
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def _subject_digests(document: object) -> set[str]:
    digests = (_at(subject, "digest", "sha256") for subject in _list(_at(document, "subject")))
    return {digest for digest in digests if isinstance(digest, str)}


def _names_lock(document: object, lock_digest: str) -> bool:
    definition = _at(document, "predicate", "buildDefinition")
    if _at(definition, "externalParameters", "lock", "digest") == lock_digest:
        return True
    return any(
        _at(dependency, "digest", "sha256") == lock_digest.removeprefix("sha256:")
        and _at(dependency, "name") == LOCK_FILE
        for dependency in _list(_at(definition, "resolvedDependencies"))
    )
