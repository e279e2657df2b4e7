"""Publish and verify, the parts that need no engine: the manifest's seal, its texts, the
refusals, and how verify judges fingerprints and keys. The engine and registry parts are in
tests/integration/test_publish.py."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest
import yaml

from builder import layout
from builder.build.buildrecord import BuildRecord, LayerRecord
from builder.cli.present import verify_lines
from builder.errors import PublishError, VerifyError
from builder.publish import findings, publish, verify

if TYPE_CHECKING:
    from builder.check.smoke import ImageSmokeReport
    from builder.engine.sdk import Engine
    from builder.lock.lockfile import CurrentLock
    from builder.publish.publish import Manifest
from tests import records
from tests.locks import make_lock
from tests.records import MANIFEST, make_record

DIGEST, CONFIG = MANIFEST, records.CONFIG
LOCK_DIGEST = "sha256:" + "ef" * 32
PUSHED = f"registry.example.org/lab/model@{DIGEST}"


def record(**changes: Any) -> BuildRecord:
    values: dict[str, Any] = {
        "pushed": PUSHED,
        "image": "lab/model:efefefefefef",
        "layers": (
            LayerRecord("sha256:" + "01" * 32, 1000),
            LayerRecord("sha256:" + "02" * 32, 24),
        ),
        "pushed_tag": "registry.example.org/lab/model:paper",
    }
    return make_record(LOCK_DIGEST, **{**values, **changes})


def smoke(mode: str = "gpu", verdict: str = "pass", **key: Any) -> ImageSmokeReport:
    # The fields publish and verify read; a payload's report carries more.
    report: dict[str, Any] = {
        "image": "lab/model:efefefefefef",
        "image_id": CONFIG,
        "gpus": "all" if mode == "gpu" else None,
        "mode": mode,
        "verdict": verdict,
        "key": {"device": "cuda", "gpu": "NVIDIA H100 80GB HBM3", "sm_count": 132, **key},
        "kernels": {
            "matmul_fp32": {"runs": ["aa", "aa"], "identical": True},
            "conv2d": {"runs": ["bb", "bb"], "identical": True},
        },
        "canary": {"witnesses": 10, "differed": 7, "names": []},
    }
    return cast("ImageSmokeReport", report)


def document(report: ImageSmokeReport | None = None) -> Manifest:
    return publish.manifest(
        record(),
        make_lock(),
        lock_text="# lock\n",
        smoke=report or smoke(),
        source=publish.Source("0123abcd", False),
        published="2026-11-23T10:00:00.000Z",
        runs=[],
    )


def test_the_manifest_names_the_image_by_digest_and_is_sealed() -> None:
    made = document()
    assert made["image"] == {
        "reference": PUSHED,
        "tag": "registry.example.org/lab/model:paper",
        "config_digest": CONFIG,
        "manifest_digest": DIGEST,
        "layers": ["sha256:" + "01" * 32, "sha256:" + "02" * 32],
        "size": 1024,
    }
    assert made["resolution"] == {
        "torch": "2.5.1+cu124",
        "cuda": "12.4",
        "cudnn": "9.1.0.70",
        "python": "3.11.16",
        "min_driver": "525.60.13",
    }
    assert made["commands"]["pull"] == f"docker pull {PUSHED}"
    assert made["integrity"] == publish.integrity(made)
    edited = {**made, "name": "someone/else"}
    assert publish.integrity(edited) != made["integrity"]


def test_the_sif_name_uses_the_digest() -> None:
    assert document()["commands"]["apptainer"] == (
        f"apptainer pull model-abababababab.sif docker://{PUSHED} && apptainer test --nv "
        "model-abababababab.sif"
    )


def test_citation_fragment_is_a_cff_identifier() -> None:
    fragment = yaml.safe_load(document()["citation_cff"])
    assert fragment == {
        "identifiers": [
            {
                "type": "other",
                "value": PUSHED,
                "description": (
                    "lab/train: Training image (torch 2.5.1+cu124, CUDA 12.4, Python 3.11.16; lock "
                    f"{LOCK_DIGEST}), built with reprobuild"
                ),
            }
        ]
    }


def test_badge_names_the_digest_and_links_the_instructions() -> None:
    assert document()["badge"] == (
        "[![reprobuild sha256:abababababab](https://img.shields.io/badge/"
        "reprobuild-sha256%3Aabababababab-blue)](REPRODUCE.md)"
    )


def test_reproduce_text_for_a_gpu_proof() -> None:
    text = publish.reproduce_text(document())
    assert text.startswith("# Reproducing lab/train\n\n[![reprobuild sha256:abababababab]")
    assert f"\ndocker pull {PUSHED}\n" in text
    assert "The code is commit `0123abcd`, copied into the image." in text
    assert "The smoke test ran on NVIDIA H100 80GB HBM3: 2 kernels" in text
    assert "Without deterministic settings 7 of 10 witness kernels differed" in text
    assert "| sm_count | 132 |" in text


def test_reproduce_text_says_plainly_when_no_gpu_was_used() -> None:
    text = publish.reproduce_text(document(smoke(mode="cpu", cpu="AMD EPYC")))
    assert "in CPU mode (no GPU was used: this shows the plumbing, not GPU determinism)" in text
    assert "witness kernels differed" not in text


def test_a_failed_or_foreign_smoke_report_is_refused() -> None:
    with pytest.raises(PublishError, match=r"verdict is 'fail', so there is no proof"):
        publish.check_smoke(smoke(verdict="fail"), record())
    foreign = {**smoke(), "image_id": "sha256:" + "99" * 32}
    with pytest.raises(PublishError) as raised:
        publish.check_smoke(foreign, record())
    assert str(raised.value) == (
        f"the smoke report is of sha256:{'99' * 32}, not of the last build {CONFIG}: run "
        "`reprobuild smoke --json` on this build and give that report."
    )
    publish.check_smoke(smoke(verdict="unproven"), record())  # published, with its caveat


@pytest.mark.parametrize(
    ("report", "problem"),
    [
        ([], "it is not a JSON object"),
        ({**smoke(), "mode": None}, "its 'mode' is missing or not a str"),
        (
            {**smoke(), "kernels": {"conv2d": {"runs": []}}},
            "its 'kernels' are missing or have no runs",
        ),
    ],
)
def test_a_report_of_the_wrong_shape_is_refused_by_name(report: Any, problem: str) -> None:
    with pytest.raises(PublishError) as raised:
        publish.check_smoke(report, record())
    assert str(raised.value) == (
        f"the smoke report cannot be used: {problem}. Give the output of "
        "`reprobuild smoke --json` for this build."
    )


def test_reproduce_text_says_when_the_canary_showed_no_power() -> None:
    unproven = smoke(verdict="unproven")
    unproven["canary"] = {"witnesses": 10, "differed": 0}
    text = publish.reproduce_text(document(unproven))
    assert (
        "None of 10 witness kernels differed without deterministic settings on this GPU: the "
        "check's power to fail was not shown here (verdict unproven)."
    ) in text
    skipped = smoke()
    skipped["canary"] = {}
    assert "The canary was not run" in publish.reproduce_text(document(skipped))


class _Current:
    def __init__(self, digest: str) -> None:
        self.digest, self.path, self.project = digest, Path("/p/reprobuild.lock"), Path("/p")


def test_publish_refuses_an_unpushed_build_without_a_target() -> None:
    # Refused before the engine is asked anything: the client is never used.
    with pytest.raises(PublishError) as raised:
        publish.prepare(
            cast("Engine", None),  # refused before the engine is asked anything
            cast("CurrentLock", _Current(LOCK_DIGEST)),
            record(pushed=None, manifest_digest=None),
            push_to=None,
            smoke=publish.SmokeSource(None, None),
            save=print,
            note=print,
        )
    assert str(raised.value) == (
        "the last build lab/model:efefefefefef was never pushed, and a paper needs an image "
        "readers can pull: give --to REGISTRY/NAME:TAG."
    )


def test_publish_refuses_a_build_of_another_lock() -> None:
    with pytest.raises(PublishError, match=r"run `reprobuild build` first\.$"):
        publish.prepare(
            cast("Engine", None),
            cast("CurrentLock", _Current("sha256:" + "00" * 32)),
            record(),
            push_to=None,
            smoke=publish.SmokeSource(None, None),
            save=print,
            note=print,
        )


def judged(ran: ImageSmokeReport, published: ImageSmokeReport | None) -> findings.Finding:
    result = findings.Verification("m", PUSHED)
    verify.fingerprints(result, ran, published)
    (finding,) = result.findings
    return finding


def test_same_key_same_fingerprints_is_verified() -> None:
    assert judged(smoke(), smoke()) == findings.Finding(
        "fingerprints", "ok", "same key; all 2 fingerprints equal to the published ones"
    )


def test_same_key_other_bits_fails_and_names_the_kernel() -> None:
    changed = copy.deepcopy(smoke())
    changed["kernels"]["conv2d"]["runs"] = ["cc", "cc"]
    assert judged(changed, smoke()) == findings.Finding(
        "fingerprints", "fail", "differ from the published ones: conv2d"
    )


def test_another_key_is_not_compared_and_says_why() -> None:
    here = smoke(gpu="NVIDIA A100-SXM4-80GB", sm_count=108)
    assert judged(here, smoke()) == findings.Finding(
        "fingerprints",
        "skip",
        "not compared: identical bits are promised only for an identical key, and the key "
        "differs (gpu: NVIDIA H100 80GB HBM3 there, NVIDIA A100-SXM4-80GB here; sm_count: 132 "
        "there, 108 here)",
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"registry.example.org/lab/model@{DIGEST}", PUSHED),
        (f"registry.example.org/lab/model:paper@{DIGEST}", PUSHED),
        (f"127.0.0.1:5000/x/y@{DIGEST}", f"127.0.0.1:5000/x/y@{DIGEST}"),
    ],
)
def test_image_references_must_be_pinned(text: str, expected: str) -> None:
    assert verify.image_reference(text) == expected


@pytest.mark.parametrize(
    "text", ["registry.example.org/lab/model:paper", f"lab/model@{DIGEST[:-1]}", "x@sha256:XYZ"]
)
def test_a_reference_without_a_digest_is_refused(text: str) -> None:
    with pytest.raises(VerifyError, match=r"is not pinned by digest: give name@sha256:"):
        verify.image_reference(text)


def test_a_manifest_that_is_not_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / layout.MANIFEST_FILE
    path.write_text(json.dumps({"format": 99}))
    with pytest.raises(VerifyError) as raised:
        verify.read_manifest(path)
    assert str(raised.value) == (
        f"{path} is not a reprobuild manifest of format 1: get the file again from where the "
        "paper published it, or update reprobuild."
    )
    path.write_text("{")
    with pytest.raises(VerifyError, match=r"is not a reprobuild manifest \(Expecting"):
        verify.read_manifest(path)


def test_a_damaged_manifest_is_named(tmp_path: Path) -> None:
    path = tmp_path / layout.MANIFEST_FILE
    damaged = {**document(), "smoke": {"verdict": "pass"}}
    path.write_text(json.dumps(damaged))
    with pytest.raises(VerifyError) as raised:
        verify.read_manifest(path)
    assert str(raised.value) == (
        f"{path} is damaged (the smoke report is not one: its 'image_id' is missing or not a "
        "str): get the file again from where the paper published it."
    )


def test_a_manifest_must_name_its_image_by_digest_and_its_commands_that_image() -> None:
    by_tag = copy.deepcopy(document())
    by_tag["image"]["reference"] = "registry.example.org/lab/model:paper"
    result = findings.Verification("m", by_tag["image"]["reference"])
    assert verify._pinned(result, by_tag) is False
    assert result.findings[0].status == "fail"
    assert "is not pinned by digest" in result.findings[0].detail
    other = copy.deepcopy(document())
    other["commands"]["pull"] = "docker pull evil.example.org/x@sha256:" + "00" * 32
    result = findings.Verification("m", PUSHED)
    assert verify._pinned(result, other) is True
    assert result.findings == [
        findings.Finding("commands", "fail", f"the published commands do not all name {PUSHED}")
    ]


def test_a_verification_whose_fingerprints_were_not_compared_says_so() -> None:
    result = findings.Verification("m", PUSHED)
    result.add("image", "ok", "pulled")
    result.add("fingerprints", "skip", "not compared")
    assert verify_lines(result)[-1] == f"{PUSHED}: verified (fingerprints not compared)"


def test_findings_print_one_line_each_and_a_verdict() -> None:
    result = findings.Verification("m", PUSHED)
    result.add("manifest", "ok", "integrity matches")
    result.add("fingerprints", "fail", "differ: conv2d")
    assert verify_lines(result) == [
        "ok   manifest      integrity matches",
        "fail fingerprints  differ: conv2d",
        f"{PUSHED}: NOT verified",
    ]


@pytest.mark.parametrize("pushed", ["registry.example.org/lab/model:paper", "lab/model@sha256:ab"])
def test_an_edited_record_that_names_no_digest_is_refused(pushed: str) -> None:
    # Refused before the engine is asked anything, as export refuses it.
    with pytest.raises(PublishError) as raised:
        publish.prepare(
            cast("Engine", None),
            cast("CurrentLock", _Current(LOCK_DIGEST)),
            record(pushed=pushed),
            push_to=None,
            smoke=publish.SmokeSource(None, None),
            save=print,
            note=print,
        )
    assert str(raised.value) == (
        f"/p/reprobuild.build.json names the pushed image {pushed!r}, not name@sha256:<64 hex>: "
        "the record was edited. Run `reprobuild build --push REGISTRY/NAME:TAG` again."
    )
    apptainer = publish.commands(PUSHED, [])["apptainer"]
    assert apptainer.startswith(f"apptainer pull model-{'ab' * 6}.sif")
