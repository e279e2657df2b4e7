"""Archive-grade publishing on real parts: `publish --archive --sign` against the real registry,
`verify ARCHIVE` offline (in a network namespace of its own: no registry, no network, only the
engine's socket), every kind of tampering named, `restore` to a new repository under the same
manifest digest, `docker load` into a clean engine giving the same image ID, and `verify
IMAGE@DIGEST` finding the documents published beside the image.

The small image (stand-in torch wheels, test_build.py) carries the tampering; the torch image
goes the whole way once: archive, offline verify with the CPU smoke test, restore, clean load.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from builder import layout
from builder.build import buildrecord
from builder.engine.registry import RegistryClient
from builder.engine.sdk import Engine
from builder.reference import ImageReference
from tests import cli
from tests.infra import REGISTRY
from tests.integration.test_build import build_project, small_project
from tests.standins import StandInEngine

ARCHIVE = "paper.oci.tar"


def reprobuild(*args: str, offline: bool = False) -> subprocess.CompletedProcess[str]:
    """The command; `offline`: in a network namespace of its own, where no registry answers
    (a unix socket, the engine's, is not in a network namespace and still answers)."""
    prefix = ("unshare", "--net") if offline else ()
    return cli.reprobuild(*args, timeout=1800, prefix=prefix)


def statuses(output: str) -> list[tuple[str, str]]:
    return [tuple(line.split()[:2]) for line in output.splitlines()[:-1]]  # type: ignore[misc]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Deposit:
    project: Path
    record: buildrecord.BuildRecord
    archive: Path
    output: Path
    public_key: Path
    stdout: str


def ssh_key(folder: Path) -> Path:
    key = folder / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "author", "-f", str(key)],
        check=True,
    )
    return key


def smoke_report(folder: Path, image_id: str) -> Path:
    """A report of the small image (its torch is a stand-in: the smoke test is not the
    subject here; the torch image's run shows it)."""
    report = folder / "smoke.json"
    report.write_text(
        json.dumps(
            {
                "image_id": image_id,
                "verdict": "pass",
                "mode": "cpu",
                "key": {"cpu": "test"},
                "kernels": {"matmul_fp32": {"runs": ["0" * 64, "0" * 64]}},
            }
        )
    )
    return report


@pytest.fixture(scope="module")
def deposit(engine_client: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("deposit")
    project = small_project(folder / "project")
    git = [
        "git",
        "-C",
        str(project),
        "-c",
        "user.name=Ada Author",
        "-c",
        "user.email=a@example.org",
    ]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "the paper's code"], check=True)
    record, _ = build_project(engine_client, project, folder / "cache")
    buildrecord.write(project, record)
    key = ssh_key(folder)
    tag = f"{REGISTRY}/reprobuild-test/archive-{uuid.uuid4().hex[:8]}:paper"
    output = folder / "out"
    result = reprobuild(
        "-C", str(project), "publish", "--to", tag,
        "--smoke-report", str(smoke_report(folder, record.image_id)),
        "--sign", str(key), "--archive", str(folder / ARCHIVE), "-o", str(output),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    yield Deposit(
        project,
        buildrecord.read(project),
        folder / ARCHIVE,
        output,
        key.with_name("id_ed25519.pub"),
        result.stdout,
    )
    engine_client.remove_image(record.image_id)
    engine_client.remove_image(record.dependencies or "")


def members(archive: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(archive) as opened:
        return {info.name: info for info in opened.getmembers()}


def test_the_archive_holds_the_registry_image_byte_for_byte(deposit: Deposit) -> None:
    record = deposit.record
    reference = ImageReference.parse(str(record.pushed))
    with RegistryClient() as registry:
        served, _media_type = registry.manifest(reference, str(record.manifest_digest))
    with tarfile.open(deposit.archive) as opened:
        index = json.loads(opened.extractfile("index.json").read())  # type: ignore[union-attr]
        image = index["manifests"][0]
        assert image["digest"] == record.manifest_digest
        assert image["annotations"]["org.opencontainers.image.ref.name"] == "paper"
        blob = opened.extractfile(f"blobs/sha256/{image['digest'][7:]}").read()  # type: ignore[union-attr]
        assert blob == served
        kinds = [
            entry["annotations"]["org.opencontainers.image.ref.name"]
            for entry in index["manifests"][1:]
        ]
        assert kinds == [
            "reprobuild.manifest",
            "reprobuild.lock",
            "reprobuild.sbom",
            "reprobuild.provenance",
            "reprobuild.manifest-signature",
            "reprobuild.provenance-signature",
        ]
        docker = json.loads(opened.extractfile("manifest.json").read())  # type: ignore[union-attr]
    manifest = json.loads(served)
    assert docker == [
        {
            "Config": f"blobs/sha256/{manifest['config']['digest'][7:]}",
            "Layers": [f"blobs/sha256/{layer['digest'][7:]}" for layer in manifest["layers"]],
            "RepoTags": [record.pushed_tag],
        }
    ]
    cited = sha256_of(deposit.archive)
    assert f"  sha256 {cited}\n" in deposit.stdout
    sidecar = deposit.archive.with_name(f"{ARCHIVE}.sha256")
    assert sidecar.read_text() == f"{cited}  {ARCHIVE}\n"
    check = subprocess.run(  # noqa: PLW1510 (its output is the check)
        ["sha256sum", "-c", sidecar.name], cwd=sidecar.parent, capture_output=True, text=True
    )
    assert check.stdout == f"{ARCHIVE}: OK\n"


def test_containers_image_reads_it_as_apptainer_will(deposit: Deposit) -> None:
    """skopeo reads the archive with containers/image, the library `apptainer build x.sif
    docker-archive://FILE` uses: the same config, the same layers."""
    inspected = subprocess.run(
        ["skopeo", "inspect", "--config", f"docker-archive:{deposit.archive}"],
        capture_output=True,
        text=True,
        check=True,
    )
    config = json.loads(inspected.stdout)
    assert config["config"]["Labels"]["dev.reprobuild.lock"] == deposit.record.lock
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", f"docker-archive:{deposit.archive}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(raw.stdout)["config"]["digest"] == deposit.record.image_id


def test_the_citation_files_name_the_archive(deposit: Deposit) -> None:
    cited = f"sha256:{sha256_of(deposit.archive)}"
    citation = yaml.safe_load((deposit.output / layout.CITATION_FILE).read_text())
    assert citation["cff-version"] == "1.2.0"
    assert citation["authors"] == [{"name": "Ada Author"}]
    assert [item["value"] for item in citation["identifiers"]] == [deposit.record.pushed, cited]
    zenodo = json.loads((deposit.output / layout.ZENODO_FILE).read_text())
    assert zenodo["upload_type"] == "software"
    assert f"archive {ARCHIVE} {cited}" in zenodo["notes"]
    assert f"image {deposit.record.pushed}" in zenodo["notes"]
    reproduce = (deposit.output / layout.REPRODUCE_FILE).read_text()
    assert f"sha256 `{cited[7:]}`" in reproduce
    assert f"apptainer build paper.sif docker-archive://{ARCHIVE}\n" in reproduce
    for name in (layout.SBOM_FILE, layout.PROVENANCE_FILE, layout.MANIFEST_SIGNATURE_FILE):
        assert (deposit.output / name).is_file()
    outer = json.loads(deposit.archive.with_name("provenance.archive.intoto.json").read_text())
    assert {subject["name"]: subject["digest"]["sha256"] for subject in outer["subject"]} == {
        ImageReference.parse(str(deposit.record.pushed)).written_name: str(
            deposit.record.manifest_digest
        )[7:],
        ARCHIVE: cited[7:],
    }


VERIFIED = [
    ("ok", "archive"),
    ("ok", "tar"),
    ("ok", "blobs"),
    ("ok", "manifest"),
    ("ok", "image"),
    ("ok", "layout"),
    ("ok", "lock"),
    ("ok", "sbom"),
    ("ok", "provenance"),
    ("ok", "signatures"),
    ("skip", "smoke"),
]


def test_verify_offline_checks_every_part(deposit: Deposit) -> None:
    result = reprobuild(
        "verify", str(deposit.archive), "--key", str(deposit.public_key), "--no-smoke",
        offline=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert statuses(result.stdout) == VERIFIED
    assert result.stdout.endswith(f"{deposit.record.pushed}: verified\n")
    unkeyed = reprobuild("verify", str(deposit.archive), "--no-smoke", offline=True)
    assert unkeyed.returncode == 0
    assert ("skip", "signatures") in statuses(unkeyed.stdout)
    (deposit.archive.parent / "other").mkdir(exist_ok=True)
    other = ssh_key(deposit.archive.parent / "other")
    wrong = reprobuild(
        "verify", str(deposit.archive), "--no-smoke", "--key", f"{other}.pub", offline=True
    )
    assert wrong.returncode == 1
    assert "fail signatures" in wrong.stdout
    assert "does not verify with SHA256:" in wrong.stdout


def _flip(archive: Path, offset: int) -> None:
    with archive.open("r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0x20]))


def _document_member(archive: Path, kind: str) -> str:
    """The member that holds the document of `kind`."""
    with tarfile.open(archive) as opened:
        index = json.loads(opened.extractfile("index.json").read())  # type: ignore[union-attr]
        entry = next(
            item for item in index["manifests"][1:]
            if item["annotations"]["org.opencontainers.image.ref.name"] == f"reprobuild.{kind}"
        )  # fmt: skip
        manifest = json.loads(
            opened.extractfile(f"blobs/sha256/{entry['digest'][7:]}").read()  # type: ignore[union-attr]
        )
    return f"blobs/sha256/{manifest['layers'][0]['digest'][7:]}"


def _image_members(archive: Path) -> dict[str, str]:
    with tarfile.open(archive) as opened:
        index = json.loads(opened.extractfile("index.json").read())  # type: ignore[union-attr]
        digest = index["manifests"][0]["digest"][7:]
        manifest = json.loads(opened.extractfile(f"blobs/sha256/{digest}").read())  # type: ignore[union-attr]
    return {
        "image manifest": f"blobs/sha256/{digest}",
        "config": f"blobs/sha256/{manifest['config']['digest'][7:]}",
        "layer": f"blobs/sha256/{manifest['layers'][-1]['digest'][7:]}",
        "index.json": "index.json",
        "manifest.json": "manifest.json",
        "oci-layout": "oci-layout",
    }


# Each part: the check that must fail, and what its line names (None: the member's name).
TAMPERED: dict[str, tuple[str, str | None]] = {
    "image manifest": ("blobs", None),
    "config": ("blobs", None),
    "layer": ("blobs", None),
    "index.json": ("layout", None),
    "manifest.json": ("layout", None),
    "oci-layout": ("layout", None),
    "tar header": ("tar", "the tar breaks off at byte"),
    "manifest": ("blobs", None),
    "lock": ("blobs", None),
    "sbom": ("blobs", None),
    "provenance": ("blobs", None),
    "manifest-signature": ("blobs", None),
    "provenance-signature": ("blobs", None),
}


@pytest.mark.parametrize("part", sorted(TAMPERED))
def test_a_changed_byte_anywhere_is_found_and_named(
    deposit: Deposit, tmp_path: Path, part: str
) -> None:
    copy = tmp_path / ARCHIVE
    shutil.copy(deposit.archive, copy)
    shutil.copy(deposit.archive.with_name(f"{ARCHIVE}.sha256"), tmp_path)
    found = members(copy)
    if part == "tar header":
        name, offset = "index.json", found["index.json"].offset + 100  # its mode field
    else:
        images = _image_members(copy)
        name = images[part] if part in images else _document_member(copy, part)
        offset = found[name].offset_data + found[name].size // 2
    _flip(copy, offset)
    result = reprobuild("verify", str(copy), "--key", str(deposit.public_key), "--no-smoke")
    assert result.returncode == 1, result.stdout
    failed = {check: line for line in result.stdout.splitlines()[:-1] if line.startswith("fail")
              for check in [line.split()[1]]}  # fmt: skip
    check, phrase = TAMPERED[part]
    assert {"archive", check} <= set(failed), result.stdout
    assert (phrase or name) in failed[check], result.stdout
    assert result.stdout.endswith(": NOT verified\n")


def _flip_member(archive: Path, name: str) -> None:
    member = members(archive)[name]
    _flip(archive, member.offset_data + member.size // 2)


def test_restore_gives_the_same_digest_and_verify_finds_the_documents(deposit: Deposit) -> None:
    target = f"{REGISTRY}/reprobuild-test/restored-{uuid.uuid4().hex[:8]}:again"
    result = reprobuild("restore", str(deposit.archive), "--to", target)
    assert result.returncode == 0, result.stdout + result.stderr
    name = target.rsplit(":", 1)[0]
    digest = str(deposit.record.manifest_digest)
    assert result.stdout.splitlines()[0] == f"restored {name}@{digest}"
    with RegistryClient() as registry:
        assert registry.resolve(ImageReference.parse(target)).digest == digest
    found = reprobuild("verify", f"{name}@{digest}", "--key", str(deposit.public_key), "--no-smoke")
    assert found.returncode == 0, found.stdout + found.stderr
    assert statuses(found.stdout) == [
        ("ok", "manifest"),
        ("ok", "image"),
        ("ok", "lock"),
        ("ok", "tag"),
        ("skip", "smoke"),
        ("skip", "fingerprints"),
        ("ok", "documents"),
        ("ok", "sbom"),
        ("ok", "provenance"),
        ("ok", "signatures"),
    ] or statuses(found.stdout)[-4:] == [
        ("ok", "documents"),
        ("ok", "sbom"),
        ("ok", "provenance"),
        ("ok", "signatures"),
    ]
    assert "found beside it by the tag schema: lock, manifest, manifest-signature" in found.stdout


def test_a_damaged_archive_is_not_restored(deposit: Deposit, tmp_path: Path) -> None:
    copy = tmp_path / ARCHIVE
    shutil.copy(deposit.archive, copy)
    _flip_member(copy, _image_members(copy)["layer"])
    target = f"{REGISTRY}/reprobuild-test/never-{uuid.uuid4().hex[:8]}:x"
    result = reprobuild("restore", str(copy), "--to", target)
    assert result.returncode == 1
    assert f"{copy} is damaged, so nothing was pushed: blobs: blobs/sha256/" in result.stderr
    with RegistryClient() as registry:
        assert registry.tags(ImageReference.parse(target)) == []


def test_docker_load_into_a_clean_engine_gives_the_same_image_id(deposit: Deposit) -> None:
    engine = StandInEngine()
    engine.start()
    try:
        with Engine.connect(engine.address) as clean:
            assert clean.images() == []
            clean.load_archive(deposit.archive)
            assert clean.image_id(deposit.record.image_id) == deposit.record.image_id
            assert clean.image_id(str(deposit.record.pushed_tag)) == deposit.record.image_id
    finally:
        engine.remove()


def test_the_torch_image_archived_verified_offline_restored_and_loaded(
    torch_image: Any, tmp_path: Path
) -> None:
    """The whole way with the real torch image: publish --archive, verify offline with the
    smoke test in CPU mode (CI has no GPU), a changed layer byte named, restore under the same
    digest, and a clean engine's load giving the same image ID."""
    tmp_path.chmod(0o755)
    archive = tmp_path / "torch.oci.tar"
    tag = f"{REGISTRY}/reprobuild-test/torch-archive:paper"
    published = reprobuild(
        "-C", str(torch_image.project), "publish", "--cpu", "--to", tag,
        "--archive", str(archive), "-o", str(tmp_path / "out"),
    )  # fmt: skip
    assert published.returncode == 0, published.stdout + published.stderr
    record = buildrecord.read(torch_image.project)
    result = reprobuild("verify", str(archive), "--cpu", offline=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [check for _status, check in statuses(result.stdout)] == [
        *(check for _status, check in VERIFIED[:-1]),
        "load",
        "smoke",
        "fingerprints",
    ]
    assert ("skip", "signatures") in statuses(result.stdout)
    assert "same key; all 14 fingerprints equal to the published ones" in result.stdout
    layer = _image_members(archive)["layer"]
    _flip_member(archive, layer)
    try:
        damaged = reprobuild("verify", str(archive), "--no-smoke", offline=True)
    finally:
        _flip_member(archive, layer)
    assert damaged.returncode == 1
    assert f"fail blobs         {layer} hashes to sha256:" in damaged.stdout
    target = f"{REGISTRY}/reprobuild-test/torch-restored-{uuid.uuid4().hex[:8]}:paper"
    restored = reprobuild("restore", str(archive), "--to", target)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert restored.stdout.splitlines()[0] == (
        f"restored {target.rsplit(':', 1)[0]}@{record.manifest_digest}"
    )
    engine = StandInEngine()
    engine.start()
    try:
        with Engine.connect(engine.address) as clean:
            clean.load_archive(archive)
            assert clean.image_id(record.image_id) == record.image_id
    finally:
        engine.remove()
