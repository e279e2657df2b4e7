"""Publish and verify on real parts: the torch image pushed to the local registry, the smoke
test in its CPU mode (CI has no GPU), and each kind of tampering shown to be caught.

A small image (the stand-in torch of test_build.py) shows the pull by digest of an image the
engine lacks, and the --no-cache rebuild that reproduces the published digest.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from builder import layout
from builder.build import build, buildrecord
from builder.lock import lockfile
from builder.publish import publish
from tests import cli
from tests.infra import BASE, REGISTRY
from tests.integration.test_build import build_project, small_project

PAPER = f"{REGISTRY}/reprobuild-test/torch-e2e:paper"


def reprobuild(*args: str) -> subprocess.CompletedProcess[str]:
    return cli.reprobuild(*args, timeout=1200)  # a push or a pull of the torch image: minutes


@dataclass(frozen=True)
class Published:
    path: Path
    document: dict[str, Any]
    output: str
    notes: str


@pytest.fixture(scope="module")
def published(torch_image: Any, tmp_path_factory: pytest.TempPathFactory) -> Published:
    folder = tmp_path_factory.mktemp("paper")
    project = str(torch_image.project)
    result = reprobuild("-C", project, "publish", "--cpu", "--to", PAPER, "-o", str(folder))
    assert result.returncode == 0, result.stdout + result.stderr
    path = folder / layout.MANIFEST_FILE
    return Published(path, json.loads(path.read_text()), result.stdout, result.stderr)


def statuses(output: str) -> list[tuple[str, str]]:
    """(status, check) of each finding line, the verdict line left out."""
    return [tuple(line.split()[:2]) for line in output.splitlines()[:-1]]  # type: ignore[misc]


def tampered(published: Published, folder: Path, change: Any, *, reseal: bool = True) -> Path:
    document = json.loads(json.dumps(published.document))
    change(document)
    if reseal:  # what someone who knows the format would do: the seal alone does not stop them
        document = publish.sealed(document)
    path = folder / "tampered.manifest.json"
    path.write_text(publish.dumps(document))
    return path


def test_publish_pushes_and_writes_the_manifest(published: Published, torch_image: Any) -> None:
    record = buildrecord.read(torch_image.project)
    repository = PAPER.rsplit(":", 1)[0]
    assert record.pushed == f"{repository}@{record.manifest_digest}"
    assert record.pushed_tag == PAPER
    document = published.document
    lock_bytes = (torch_image.project / lockfile.LOCK_FILE).read_bytes()
    assert document["image"] == {
        "reference": record.pushed,
        "tag": PAPER,
        "config_digest": torch_image.record.image_id,
        "manifest_digest": record.manifest_digest,
        "layers": [layer.diff_id for layer in torch_image.record.layers],
        "size": sum(layer.size for layer in torch_image.record.layers),
    }
    assert document["lock"] == {
        "digest": torch_image.record.lock,
        "text": lock_bytes.decode(),
    }
    assert torch_image.record.lock == f"sha256:{hashlib.sha256(lock_bytes).hexdigest()}"
    assert document["resolution"]["torch"] == "2.5.1+cu124"
    smoke = document["smoke"]
    assert (smoke["verdict"], smoke["mode"], smoke["image_id"]) == (
        "pass",
        "cpu",
        torch_image.record.image_id,
    )
    assert len(smoke["kernels"]) == 14
    assert document["integrity"] == publish.integrity(document)
    assert yaml.safe_load(document["citation_cff"])["identifiers"][0]["value"] == record.pushed
    assert published.output == (
        f"published {record.pushed}\n  manifest {published.path}\n"
        f"  {published.path.parent / layout.REPRODUCE_FILE}\n  badge: {document['badge']}\n"
        "  documents beside the image in its registry (tag schema): manifest, lock, sbom, "
        "provenance\n"
        "  written: sbom.cdx.json, provenance.intoto.json, CITATION.cff, .zenodo.json\n"
    )
    assert "note: the smoke report is from the CPU mode: it shows the plumbing" in published.notes
    reproduce = (published.path.parent / layout.REPRODUCE_FILE).read_text()
    assert f"\ndocker pull {record.pushed}\n" in reproduce
    assert "in CPU mode (no GPU was used" in reproduce


def test_verify_the_published_manifest(published: Published) -> None:
    result = reprobuild("verify", str(published.path), "--cpu")
    assert result.returncode == 0, result.stdout + result.stderr
    assert statuses(result.stdout) == [
        ("ok", "manifest"),
        ("ok", "image"),
        ("ok", "lock"),
        ("ok", "tag"),
        ("ok", "smoke"),
        ("ok", "fingerprints"),
        ("ok", "documents"),
        ("ok", "sbom"),
        ("ok", "provenance"),
        ("skip", "signatures"),
    ]
    reference = published.document["image"]["reference"]
    assert result.stdout.endswith(f"{reference}: verified\n")
    assert "same key; all 14 fingerprints equal to the published ones" in result.stdout


def test_an_edited_manifest_is_caught_by_its_seal(published: Published, tmp_path: Path) -> None:
    def edit(document: dict[str, Any]) -> None:
        document["resolution"]["torch"] = "2.6.0+cu124"

    path = tampered(published, tmp_path, edit, reseal=False)
    result = reprobuild("verify", str(path), "--no-smoke", "--json")
    assert result.returncode == 1
    findings = json.loads(result.stdout)["findings"]
    assert findings[0]["check"] == "manifest" and findings[0]["status"] == "fail"
    assert findings[0]["detail"].startswith("edited after publishing: its content hashes to ")
    assert findings[0]["detail"].endswith(f"the manifest says {published.document['integrity']}")


def test_resealed_fingerprints_are_caught_by_the_smoke_rerun(
    published: Published, tmp_path: Path
) -> None:
    def edit(document: dict[str, Any]) -> None:
        document["smoke"]["kernels"]["matmul_fp32"]["runs"][0] = "0" * 64

    result = reprobuild("verify", str(tampered(published, tmp_path, edit)), "--cpu")
    assert result.returncode == 1
    assert "fail fingerprints  differ from the published ones: matmul_fp32\n" in result.stdout


def test_a_lock_that_does_not_match_the_image_label_is_caught(
    published: Published, tmp_path: Path
) -> None:
    def edit(document: dict[str, Any]) -> None:
        text = document["lock"]["text"] + "# edited\n"
        document["lock"] = {
            "text": text,
            "digest": f"sha256:{hashlib.sha256(text.encode()).hexdigest()}",
        }

    path = tampered(published, tmp_path, edit)
    result = reprobuild("verify", str(path), "--no-smoke")
    assert result.returncode == 1
    edited = json.loads(path.read_text())["lock"]["digest"]
    label = published.document["lock"]["digest"]
    assert (
        f"fail lock          the image was built from the lock {label}, but the manifest's lock "
        f"is {edited}\n"
    ) in result.stdout


def test_another_config_digest_is_caught(published: Published, tmp_path: Path) -> None:
    other = "sha256:" + "0" * 64

    def edit(document: dict[str, Any]) -> None:
        document["image"]["config_digest"] = other

    result = reprobuild("verify", str(tampered(published, tmp_path, edit)), "--no-smoke")
    assert result.returncode == 1
    reference = published.document["image"]["reference"]
    actual = published.document["image"]["config_digest"]
    assert (
        f"fail image         the registry serves {reference} with the config digest {actual}, "
        f"the manifest says {other}\n"
    ) in result.stdout


def test_verify_without_a_gpu_runtime_fails_the_smoke_and_keeps_the_other_checks(
    published: Published,
) -> None:
    # This engine has no NVIDIA runtime: the default --gpus all cannot run here.
    result = reprobuild("verify", str(published.path))
    assert result.returncode == 1
    assert statuses(result.stdout) == [
        ("ok", "manifest"),
        ("ok", "image"),
        ("ok", "lock"),
        ("ok", "tag"),
        ("fail", "smoke"),
        ("ok", "documents"),
        ("ok", "sbom"),
        ("ok", "provenance"),
        ("skip", "signatures"),
    ]
    assert "fail smoke         could not run (no GPU here? --cpu runs the CPU mode): " in (
        result.stdout
    )


def test_another_image_pushed_under_the_tag_is_reported(
    published: Published, engine_client: Any
) -> None:
    engine_client.ensure_image(BASE)
    engine_client.tag(BASE, PAPER)
    moved = engine_client.push(PAPER)
    try:
        result = reprobuild("verify", str(published.path), "--no-smoke")
    finally:
        engine_client.remove_image(PAPER)
    # The published digest is intact and is what was checked: a warning, not a failure.
    assert result.returncode == 0, result.stdout
    published_digest = published.document["image"]["manifest_digest"]
    assert (
        f"warn tag           {PAPER} now names {moved}, a different image from the published "
        f"{published_digest}: anyone pulling by tag gets that image; pull by digest as the "
        "manifest says\n"
    ) in result.stdout


def test_verify_pulls_by_digest_and_rebuilds_the_lock(engine_client: Any, tmp_path: Path) -> None:
    project = small_project(tmp_path / "small")
    record, _ = build_project(engine_client, project, tmp_path / "cache")
    pushed = build.push_image(engine_client, record, f"{REGISTRY}/test/verify:one", print)
    engine_client.remove_image(pushed.pushed_tag or "")
    engine_client.remove_image(record.image_id)
    assert not engine_client.has_image(record.image_id)
    try:
        result = reprobuild(
            "-C", str(project), "verify", str(pushed.pushed), "--no-smoke", "--rebuild"
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert statuses(result.stdout) == [
            ("ok", "image"),
            ("ok", "lock"),
            ("skip", "smoke"),
            ("ok", "rebuild"),
            ("skip", "documents"),
        ]
        assert (
            f"ok   rebuild       a --no-cache rebuild of the lock gave {record.image_id} again\n"
        ) in result.stdout
        assert engine_client.image_id(str(pushed.pushed)) == record.image_id
        lock = project / lockfile.LOCK_FILE
        lock.write_text(lock.read_text() + "# another lock\n")
        stale = reprobuild("-C", str(project), "verify", str(pushed.pushed), "--no-smoke")
        assert stale.returncode == 1
        assert "fail lock          the image was built from the lock" in stale.stdout
    finally:
        engine_client.remove_image(record.image_id)
        engine_client.remove_image(record.dependencies or "")


def test_verify_rebuild_right_after_publish_gives_the_published_image(
    engine_client: Any, tmp_path: Path
) -> None:
    """publish writes its manifest and REPRODUCE.md into the project; they are not code, so the
    rebuild's code layer is the published one and the tree stays clean."""
    project = small_project(tmp_path / "paper")
    git = ["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "the paper's code"], check=True)
    record, _ = build_project(engine_client, project, tmp_path / "cache")
    assert record.git_dirty is False
    buildrecord.write(project, record)
    report = tmp_path / "smoke.json"  # the smoke test is not what this test is about
    report.write_text(
        json.dumps(
            {
                "image_id": record.image_id,
                "verdict": "pass",
                "mode": "cpu",
                "key": {"cpu": "test"},
                "kernels": {"matmul_fp32": {"runs": ["0" * 64, "0" * 64]}},
            }
        )
    )
    tag = f"{REGISTRY}/test/publish-rebuild:paper"
    try:
        published = reprobuild(
            "-C", str(project), "publish", "--to", tag, "--smoke-report", str(report)
        )
        assert published.returncode == 0, published.stdout + published.stderr
        manifest = project / layout.MANIFEST_FILE
        assert (project / layout.REPRODUCE_FILE).is_file()
        assert json.loads(manifest.read_text())["source"]["git_dirty"] is False
        result = reprobuild("-C", str(project), "verify", str(manifest), "--no-smoke", "--rebuild")
        assert result.returncode == 0, result.stdout + result.stderr
        assert statuses(result.stdout) == [
            ("ok", "manifest"),
            ("ok", "image"),
            ("ok", "lock"),
            ("ok", "tag"),
            ("skip", "smoke"),
            ("ok", "rebuild"),
            ("ok", "documents"),
            ("ok", "sbom"),
            ("ok", "provenance"),
            ("skip", "signatures"),
        ]
        assert (
            f"ok   rebuild       a --no-cache rebuild of the lock gave {record.image_id} again\n"
        ) in result.stdout
    finally:
        engine_client.remove_image(tag)
        engine_client.remove_image(record.image_id)
        engine_client.remove_image(record.dependencies or "")
