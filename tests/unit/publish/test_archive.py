"""The archive's layout, its offline judgement, and the documents beside an image, on a small
image held by an in-memory registry (`MemoryRegistry`: the tests' real registry has no referrers
API, and these cases need one with and one without it; the integration tests use the real one).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import IO, Any

import pytest

from builder.errors import ArchiveError
from builder.publish import archive, artifacts, ocilayout, referrers, restore, verifyarchive
from builder.publish.artifacts import BY_NAME, Document
from builder.reference import ImageReference

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
NAME = "127.0.0.1:5055/lab/model"


def digest_of(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


class MemoryRegistry:
    """Blobs and manifests in dictionaries, with or without the referrers API."""

    def __init__(self, *, referrers_api: bool) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, bytes] = {}  # by digest and by tag
        self.referrers_api = referrers_api
        self.pushed_blobs: list[str] = []

    def add_manifest(self, target: str, body: bytes) -> str:
        self.manifests[target] = self.manifests[digest_of(body)] = body
        return digest_of(body)

    def manifest(self, reference: ImageReference, target: str) -> tuple[bytes, str]:
        body = self.manifests[target]
        return body, str(json.loads(body).get("mediaType"))

    def read_blob(self, reference: ImageReference, digest: str, sink: Any, chunk: int = 4) -> int:
        data = self.blobs[digest]
        for start in range(0, len(data), chunk):
            sink(data[start : start + chunk])
        return len(data)

    def has_blob(self, reference: ImageReference, digest: str) -> bool:
        return digest in self.blobs

    def push_blob(
        self, reference: ImageReference, digest: str, size: int, source: IO[bytes] | bytes
    ) -> None:
        data = source if isinstance(source, bytes) else source.read(size)
        assert digest_of(data) == digest
        if digest not in self.blobs:
            self.pushed_blobs.append(digest)
        self.blobs[digest] = data

    def push_manifest(
        self, reference: ImageReference, target: str, body: bytes, media_type: str
    ) -> str:
        return self.add_manifest(target, body)

    def referrers(
        self, reference: ImageReference, digest: str, artifact_type: str | None = None
    ) -> list[dict[str, Any]] | None:
        if not self.referrers_api:
            return None
        found = []
        for key, body in self.manifests.items():
            document = json.loads(body)
            if (
                key.startswith("sha256:")
                and (document.get("subject") or {}).get("digest") == digest
            ):
                found.append({"digest": key, "artifactType": document.get("artifactType")})
        return found

    def tags(self, reference: ImageReference) -> list[str]:
        return [key for key in self.manifests if not key.startswith("sha256:")]


def layer(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A gzipped layer and its diff ID."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0), digest_of(raw.getvalue())


def pushed_image(registry: MemoryRegistry, lock_digest: str) -> str:
    layers = [layer({"a.txt": b"alpha\n"}), layer({"b.txt": b"beta" * 1000})]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"dev.reprobuild.lock": lock_digest}},
            "rootfs": {"type": "layers", "diff_ids": [diff for _, diff in layers]},
        }
    ).encode()
    registry.blobs[digest_of(config)] = config
    for data, _ in layers:
        registry.blobs[digest_of(data)] = data
    manifest = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "digest": digest_of(config),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "digest": digest_of(data),
                "size": len(data),
            }
            for data, _ in layers
        ],
    }
    return registry.add_manifest("paper", json.dumps(manifest, indent=3).encode())


def documents(digest: str, config: str, lock: str) -> list[Document]:
    """A manifest document that passes its seal, and stand-ins for the others (their checks
    are the SBOM and provenance modules' own tests)."""
    from builder.publish import publish

    manifest: dict[str, Any] = {
        "format": publish.FORMAT,
        "image": {
            "reference": f"{NAME}@{digest}",
            "tag": f"{NAME}:paper",
            "manifest_digest": digest,
            "config_digest": config,
        },
        "lock": {"digest": digest_of(lock.encode()), "text": lock},
    }
    manifest["integrity"] = publish.integrity(manifest)
    return [
        Document(BY_NAME["manifest"], json.dumps(manifest).encode()),
        Document(BY_NAME["lock"], lock.encode()),
    ]


LOCK = "format = 1\n"


@pytest.fixture
def written(tmp_path: Path) -> tuple[MemoryRegistry, Path, archive.Written, list[Document]]:
    registry = MemoryRegistry(referrers_api=False)
    digest = pushed_image(registry, digest_of(LOCK.encode()))
    image = archive.fetch_image(registry, f"{NAME}@{digest}")  # type: ignore[arg-type]
    made = documents(digest, image.config["digest"], LOCK)
    path = tmp_path / "paper.oci.tar"
    done = archive.write(
        path,
        registry,  # type: ignore[arg-type]
        image,
        documents=made,
        repo_tag=f"{NAME}:paper",
    )
    return registry, path, done, made


def test_the_archive_is_an_oci_layout_that_tar_reads(written: Any) -> None:
    _registry, path, done, _made = written
    assert done.sha256 == digest_of(path.read_bytes())
    assert done.size == path.stat().st_size
    assert done.size % tarfile.RECORDSIZE == 0
    with tarfile.open(path) as opened:
        names = opened.getnames()
        assert names[:5] == ["oci-layout", "index.json", "manifest.json", "blobs", "blobs/sha256"]
        assert all(info.mtime == 0 and info.uid == 0 for info in opened.getmembers())
        for name in names[5:]:
            data = opened.extractfile(name).read()  # type: ignore[union-attr]
            assert digest_of(data) == f"sha256:{name.rsplit('/', 1)[1]}"
    assert not list(path.parent.glob(".paper.oci.tar.partial-*"))


def test_the_same_image_and_documents_give_the_same_archive_bytes(
    written: Any, tmp_path: Path
) -> None:
    registry, _path, done, made = written
    image = archive.fetch_image(registry, f"{NAME}@{digest_of(registry.manifests['paper'])}")
    again = archive.write(
        tmp_path / "again.tar", registry, image, documents=made, repo_tag=f"{NAME}:paper"
    )
    assert again.sha256 == done.sha256


def test_judge_holds_for_the_archive_as_written(written: Any) -> None:
    _registry, path, _done, _made = written
    result, held, document = verifyarchive.judge(ocilayout.read(path), str(path), None, None)
    checks = {finding.check: finding.status for finding in result.findings}
    assert checks["archive"] == "skip"
    for check in ("tar", "blobs", "manifest", "image", "layout", "lock"):
        assert checks[check] == "ok", result.findings
    assert checks["signatures"] == "skip"
    assert held is not None and document is not None


def test_bytes_after_a_changed_header_are_named(written: Any) -> None:
    _registry, path, _done, _made = written
    data = bytearray(path.read_bytes())
    data[1024 + 100] ^= 0x20  # the mode field of the second member's header
    path.write_bytes(bytes(data))
    contents = ocilayout.read(path)
    assert contents.broken is not None
    assert contents.broken.startswith("the tar breaks off at byte 1024: a header there cannot")


def test_an_extra_member_is_named(written: Any, tmp_path: Path) -> None:
    _registry, path, _done, _made = written
    with tarfile.open(path, "a") as opened:
        info = tarfile.TarInfo("notes.txt")
        opened.addfile(info, io.BytesIO(b""))
    result, _held, _document = verifyarchive.judge(ocilayout.read(path), str(path), None, None)
    tar = next(finding for finding in result.findings if finding.check == "tar")
    assert tar.status == "fail"
    assert "notes.txt is not part of an OCI layout" in tar.detail


@pytest.mark.parametrize("has_api", [True, False])
def test_documents_beside_the_image_are_found_either_way(has_api: bool) -> None:
    registry = MemoryRegistry(referrers_api=has_api)
    digest = pushed_image(registry, digest_of(LOCK.encode()))
    reference = ImageReference.parse(f"{NAME}@{digest}")
    subject: artifacts.Descriptor = {
        "mediaType": DOCKER_MANIFEST,
        "digest": digest,
        "size": len(registry.manifests[digest]),
    }
    made = documents(digest, "sha256:" + "0" * 64, LOCK)
    _carried, via = referrers.push(registry, reference, subject, made)  # type: ignore[arg-type]
    assert via == ("referrers API" if has_api else "tag schema")
    tags = registry.tags(reference)
    hexdigits = digest.removeprefix("sha256:")
    if has_api:
        assert tags == ["paper"]
    else:
        assert tags == ["paper", f"sha256-{hexdigits}.manifest", f"sha256-{hexdigits}.lock"]
    found = referrers.discover(registry, reference, digest)  # type: ignore[arg-type]
    assert found.via == via
    assert {name: document.data for name, document in found.documents.items()} == {
        document.kind.name: document.data for document in made
    }
    other = referrers.discover(registry, reference, "sha256:" + "1" * 64)  # type: ignore[arg-type]
    assert other.documents == {}


def test_restore_pushes_the_same_manifest_bytes(written: Any) -> None:
    source, path, _done, _made = written
    registry = MemoryRegistry(referrers_api=True)
    to = restore.target("127.0.0.1:5056/elsewhere/model:again")
    restored = restore.restore(path, registry, to)  # type: ignore[arg-type]
    digest = digest_of(source.manifests["paper"])
    assert restored.pushed == f"127.0.0.1:5056/elsewhere/model@{digest}"
    assert registry.manifests["again"] == source.manifests["paper"]
    assert set(registry.blobs) >= set(source.blobs)
    assert restored.documents == ["manifest", "lock"]
    assert restored.via == "referrers API"


def test_restore_refuses_a_digest_and_a_damaged_archive(written: Any) -> None:
    _source, path, _done, _made = written
    with pytest.raises(ArchiveError, match="names a digest, but the digest is the archive's"):
        restore.target(f"{NAME}@sha256:{'a' * 64}")
    with tarfile.open(path) as opened:
        blob = opened.getmembers()[6]  # the config, after the image manifest
    data = bytearray(path.read_bytes())
    data[blob.offset_data + 1] ^= 0x01
    path.write_bytes(bytes(data))
    registry = MemoryRegistry(referrers_api=False)
    with pytest.raises(ArchiveError, match=r"is damaged, so nothing was pushed: blobs: "):
        restore.restore(path, registry, restore.target(f"{NAME}:x"))  # type: ignore[arg-type]
    assert registry.blobs == {} and registry.manifests == {}


def test_a_file_that_is_not_a_tar_is_not_an_archive(tmp_path: Path) -> None:
    manifest = tmp_path / "reprobuild.manifest.json"
    manifest.write_text("{}")
    assert not verifyarchive.is_archive(manifest)
    assert not verifyarchive.is_archive(tmp_path / "missing.tar")
