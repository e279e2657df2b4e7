"""Publish and verify a build of two platforms on real parts: the two small images of
test_arm64 (linux/amd64 and linux/arm64) pushed with their OCI image index to the tests'
registry, published with a stand-in smoke report of the amd64 image (the smoke test is not what
this is about: test_arm64 runs it under emulation), and verified: each platform's entry in the
index as published, and a resealed manifest whose arm64 entry names another image caught.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from builder import layout
from builder.build.buildrecord import BuildRecord
from builder.knowledge import AMD64, ARM64
from builder.publish import publish
from tests import cli
from tests.infra import REGISTRY
from tests.integration.test_arm64 import EMULATED_S, build, remove, two_platform_project

PAPER = f"{REGISTRY}/reprobuild-test/publish-platforms:paper"
NAME = PAPER.rsplit(":", 1)[0]


def reprobuild(*args: str) -> subprocess.CompletedProcess[str]:
    return cli.reprobuild(*args, timeout=EMULATED_S)  # --rebuild builds again


@dataclass(frozen=True)
class Paper:
    project: Path
    record: BuildRecord
    manifest: Path
    document: dict[str, Any]


@pytest.fixture(scope="module")
def paper(
    tmp_path_factory: pytest.TempPathFactory, engine_client: Any, test_base: str
) -> Iterator[Paper]:
    folder = tmp_path_factory.mktemp("platforms")
    project = two_platform_project(folder / "both")
    record = build(project, "--push", PAPER)
    try:
        report = folder / "smoke.json"
        report.write_text(
            json.dumps(
                {
                    "image_id": record.image_id,
                    "verdict": "pass",
                    "mode": "cpu",
                    "key": {"cpu": "test", "machine": "x86_64"},
                    "kernels": {"matmul_fp32": {"runs": ["0" * 64, "0" * 64]}},
                }
            )
        )
        result = reprobuild("-C", str(project), "publish", "--smoke-report", str(report))
        assert result.returncode == 0, result.stdout + result.stderr
        manifest = project / layout.MANIFEST_FILE
        yield Paper(project, record, manifest, json.loads(manifest.read_text()))
    finally:
        remove(engine_client, record)  # every platform's image and dependencies image


def test_the_manifest_names_the_index_and_each_platform(paper: Paper) -> None:
    record, document = paper.record, paper.document
    (arm,) = record.other_platforms
    assert record.platform == AMD64 and arm.platform == ARM64
    assert document["image"]["platform"] == AMD64
    assert document["image"]["reference"] == record.pushed == f"{NAME}@{record.manifest_digest}"
    assert document["index"] == record.pushed_index
    assert document["platforms"] == [
        {
            "platform": AMD64,
            "reference": record.pushed,
            "manifest_digest": record.manifest_digest,
            "config_digest": record.image_id,
        },
        {
            "platform": ARM64,
            "reference": f"{NAME}@{arm.manifest_digest}",
            "manifest_digest": arm.manifest_digest,
            "config_digest": arm.image_id,
        },
    ]
    assert document["integrity"] == publish.integrity(document)


def test_verify_checks_each_platform_and_rebuilds_the_own_image(paper: Paper) -> None:
    record, (arm,) = paper.record, paper.record.other_platforms
    result = reprobuild(
        "-C", str(paper.project), "verify", str(paper.manifest), "--no-smoke", "--rebuild"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [tuple(line.split()[:2]) for line in lines[:-1]] == [
        ("ok", "manifest"),
        ("ok", "image"),
        ("ok", "lock"),
        ("ok", "image"),
        ("ok", "image"),
        ("ok", "tag"),
        ("skip", "smoke"),
        ("ok", "rebuild"),
        ("ok", "documents"),
        ("ok", "sbom"),
        ("ok", "provenance"),
        ("skip", "signatures"),
    ]
    assert lines[3:6] == [
        f"ok   image linux/amd64  the index names {record.manifest_digest}; config digest "
        f"{record.image_id} as published, built from the manifest's lock",
        f"ok   image linux/arm64  the index names {arm.manifest_digest}; config digest "
        f"{arm.image_id} as published, built from the manifest's lock",
        f"ok   tag                {PAPER} still names the published image",
    ]
    assert lines[7] == (
        f"ok   rebuild            a --no-cache rebuild of the lock gave {record.image_id} again"
    )
    assert lines[-1] == f"{record.pushed}: verified"


def test_a_resealed_arm64_entry_of_another_image_is_caught(paper: Paper, tmp_path: Path) -> None:
    record = paper.record
    document = json.loads(json.dumps(paper.document))
    document["platforms"][1]["manifest_digest"] = record.manifest_digest
    document["platforms"][1]["reference"] = record.pushed
    path = tmp_path / "tampered.manifest.json"
    path.write_text(publish.dumps(publish.sealed(document)))
    result = reprobuild("-C", str(paper.project), "verify", str(path), "--no-smoke", "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    findings = json.loads(result.stdout)["findings"]
    assert [f for f in findings if f["check"].startswith("image")] == [
        {"check": "image", "status": "ok", "detail": findings[1]["detail"]},
        {
            "check": "image linux/amd64",
            "status": "ok",
            "detail": f"the index names {record.manifest_digest}; config digest "
            f"{record.image_id} as published, built from the manifest's lock",
        },
        {
            "check": "image linux/arm64",
            "status": "fail",
            "detail": f"the index names {record.other_platforms[0].manifest_digest}, the "
            f"manifest says {record.manifest_digest}",
        },
    ]


def test_the_pull_commands_of_reproduce_md_run_as_written(paper: Paper, engine_client: Any) -> None:
    """Each platform's image by its digest, then the arm64 one through the index (an engine
    names one image by the index digest: one platform per engine that way)."""
    text = (paper.project / layout.REPRODUCE_FILE).read_text()
    section = text.split("## Platforms\n", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```sh\n(.*?)```", section, re.S)
    index, (arm,) = paper.document["index"], paper.record.other_platforms
    arm_pushed = f"{NAME}@{arm.manifest_digest}"
    assert block.splitlines() == [f"docker pull {paper.record.pushed}", f"docker pull {arm_pushed}"]
    through_index = re.findall(r"^- linux/\w+: `(.*)`$", section, re.M)
    assert through_index == [
        f"docker pull --platform linux/amd64 {index}",
        f"docker pull --platform linux/arm64 {index}",
    ]
    for line in [*block.splitlines(), through_index[1]]:
        result = subprocess.run(
            ["bash", "-c", line], capture_output=True, text=True, timeout=600, check=False
        )
        assert result.returncode == 0, f"{line}\n{result.stdout}{result.stderr}"
    assert engine_client.image_id(arm_pushed) == arm.image_id
    assert engine_client.image_id(index) == arm.image_id
    assert (
        "The smoke report below is of the linux/amd64 image "
        f"`{paper.record.pushed}` (the other platforms' images were not smoke-tested)."
    ) in section
