"""Publish and verify, the parts that need no engine: the manifest's seal, its texts, the
refusals, and how verify judges fingerprints and keys. The engine and registry parts are in
tests/integration/test_publish.py."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest
import yaml

from builder import layout
from builder.build import pushindex
from builder.build.buildrecord import BuildRecord, LayerRecord, PlatformImage
from builder.cli.present import verify_lines
from builder.engine.registry import OCI_INDEX, ResolvedImage
from builder.errors import PublishError, RegistryError, VerifyError
from builder.knowledge import AMD64, ARM64
from builder.lock import lockfile
from builder.lock.model import PlatformLock
from builder.publish import findings, publish, verify
from builder.reference import ImageReference

if TYPE_CHECKING:
    from builder.check.smoke import ImageSmokeReport
    from builder.engine.registry import RegistryClient
    from builder.engine.sdk import Engine
    from builder.lock.lockfile import CurrentLock
    from builder.lock.model import Lock
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


def document(
    report: ImageSmokeReport | None = None,
    *,
    built: BuildRecord | None = None,
    lock: Lock | None = None,
    lock_text: str = "# lock\n",
) -> Manifest:
    return publish.manifest(
        built or record(),
        lock or make_lock(),
        lock_text=lock_text,
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


# Several platforms: a build of linux/amd64 (this machine's, the record's own) and linux/arm64,
# each image pushed and the index of both pushed at the tag.

NAME = "registry.example.org/lab/model"
ARM_MANIFEST, ARM_CONFIG = "sha256:" + "a4" * 32, "sha256:" + "c4" * 32
INDEX = "sha256:" + "1d" * 32
ARM_PUSHED, INDEXED = f"{NAME}@{ARM_MANIFEST}", f"{NAME}@{INDEX}"


def arm_image(**changes: Any) -> PlatformImage:
    values: dict[str, Any] = {
        "platform": ARM64,
        "image": "lab/model:efefefefefef-arm64",
        "image_id": ARM_CONFIG,
        "manifest_digest": ARM_MANIFEST,
        "pushed": ARM_PUSHED,
    }
    return PlatformImage(**{**values, **changes})


def two_platforms(**changes: Any) -> BuildRecord:
    values: dict[str, Any] = {"other_platforms": (arm_image(),), "pushed_index": INDEXED}
    return record(**{**values, **changes})


def two_platform_lock() -> Lock:
    lock = make_lock()
    arm = PlatformLock(
        {**lock.resolution, "platform": ARM64},
        replace(lock.base, python="3.11.2"),
        lock.system,
        lock.python,
    )
    return replace(lock, other_platforms=(arm,))


AMD_ENTRY = {
    "platform": AMD64,
    "reference": PUSHED,
    "manifest_digest": DIGEST,
    "config_digest": CONFIG,
}
ARM_ENTRY = {
    "platform": ARM64,
    "reference": ARM_PUSHED,
    "manifest_digest": ARM_MANIFEST,
    "config_digest": ARM_CONFIG,
}


def test_a_manifest_of_two_platforms_names_the_index_and_each_image() -> None:
    made = document(built=two_platforms(), lock=two_platform_lock())
    one = document()
    assert made["image"] == {**one["image"], "platform": AMD64}
    assert made["index"] == INDEXED
    assert made["platforms"] == [AMD_ENTRY, ARM_ENTRY]
    added = ("image", "index", "platforms", "integrity")
    assert {k: v for k, v in made.items() if k not in added} == {
        k: v for k, v in one.items() if k not in added
    }
    assert made["integrity"] == publish.integrity(made)


def test_a_manifest_of_one_amd64_image_has_no_platform_keys() -> None:
    made = document()
    assert sorted(made) == [
        "badge", "built_with", "citation_cff", "commands", "format", "image", "integrity",
        "lock", "name", "published", "published_with", "resolution", "runs", "smoke", "source",
    ]  # fmt: skip
    assert "platform" not in made["image"]
    assert publish.platform_lines(made) == []


def test_a_manifest_of_one_arm64_image_names_its_platform() -> None:
    arm_lock = two_platform_lock().on(ARM64)
    made = document(
        smoke(mode="cpu", machine="aarch64"), built=record(platform=ARM64), lock=arm_lock
    )
    assert made["image"]["platform"] == ARM64
    assert ("index" in made, "platforms" in made) == (False, False)
    assert made["resolution"]["python"] == "3.11.2"
    assert publish.platform_lines(made) == [
        f"The image is for linux/arm64. The smoke report below is of the linux/arm64 image "
        f"`{PUSHED}`. It ran in CPU mode (its key's machine: aarch64); on an x86_64 host an "
        "arm64 image runs under qemu emulation, which reaches no GPU, so its GPU determinism is "
        "shown only by a smoke test on a GH200 or GB200 node.",
        "",
    ]


def test_the_platforms_come_in_the_lock_order_and_the_summary_is_of_the_own_image() -> None:
    # Published on a GH200 node: the record's own image is the arm64 one.
    built = record(
        platform=ARM64,
        image_id=ARM_CONFIG,
        pushed=ARM_PUSHED,
        manifest_digest=ARM_MANIFEST,
        other_platforms=(
            arm_image(platform=AMD64, image_id=CONFIG, manifest_digest=DIGEST, pushed=PUSHED),
        ),
        pushed_index=INDEXED,
    )
    made = document(smoke(), built=built, lock=two_platform_lock())
    assert made["platforms"] == [AMD_ENTRY, ARM_ENTRY]
    assert (made["image"]["reference"], made["image"]["platform"]) == (ARM_PUSHED, ARM64)
    assert made["resolution"]["python"] == "3.11.2"  # the arm64 base's


def test_reproduce_text_lists_each_platform_and_says_which_one_was_smoke_tested() -> None:
    made = document(built=two_platforms(), lock=two_platform_lock())
    text = publish.reproduce_text(made)
    section = (
        "## Platforms\n"
        "\n"
        "The lock was built for linux/amd64, linux/arm64, one image each, pushed with an OCI "
        f"image index that names them all: `{INDEXED}`.\n"
        "\n"
        "| platform | image | config digest (image ID) |\n"
        "|---|---|---|\n"
        f"| linux/amd64 | `{PUSHED}` | `{CONFIG}` |\n"
        f"| linux/arm64 | `{ARM_PUSHED}` | `{ARM_CONFIG}` |\n"
        "\n"
        "Pull a platform's image by its own digest:\n"
        "\n"
        "```sh\n"
        f"docker pull {PUSHED}\n"
        f"docker pull {ARM_PUSHED}\n"
        "```\n"
        "\n"
        "or through the index, which gives the image of the platform asked for (a Docker engine "
        "names one image by a digest, so pull one platform per engine this way):\n"
        "\n"
        f"- linux/amd64: `docker pull --platform linux/amd64 {INDEXED}`\n"
        f"- linux/arm64: `docker pull --platform linux/arm64 {INDEXED}`\n"
        "\n"
        f"The smoke report below is of the linux/amd64 image `{PUSHED}` (the other platforms' "
        "images were not smoke-tested). `reprobuild verify` checks that the index serves each "
        "platform's image with its published digests, and pulls and smoke-tests the "
        "linux/amd64 image.\n"
        "\n"
        "## Get it and check it\n"
    )
    assert section in text
    assert text.replace(section, "## Get it and check it\n") == publish.reproduce_text(document())


@pytest.mark.parametrize(
    ("changes", "missing"),
    [
        (
            {"other_platforms": (arm_image(pushed=None, manifest_digest=None),)},
            "its linux/arm64 image was not pushed",
        ),
        (
            {"other_platforms": (arm_image(pushed="registry.example.org/lab/model:v1"),)},
            "its linux/arm64 image was not pushed",
        ),
        ({"pushed_index": None}, "the image index of them was not pushed"),
    ],
)
def test_publish_refuses_a_build_of_several_platforms_not_all_pushed(
    changes: dict[str, Any], missing: str
) -> None:
    expected = (
        f"the last build has images for linux/amd64, linux/arm64, but {missing}, and a reader "
        "pulls each platform's image from the index: run `reprobuild build --push "
        "REGISTRY/NAME:TAG` (it pushes every platform's image and their index), then "
        "`reprobuild publish` without --to."
    )
    with pytest.raises(PublishError) as raised:
        publish.prepare(
            cast("Engine", None),  # refused before the engine is asked anything
            cast("CurrentLock", _Current(LOCK_DIGEST)),
            two_platforms(**changes),
            push_to=None,
            smoke=publish.SmokeSource(None, None),
            save=print,
            note=print,
        )
    assert str(raised.value) == expected
    with pytest.raises(PublishError) as raised:
        document(built=two_platforms(**changes), lock=two_platform_lock())
    assert str(raised.value) == expected


def test_publish_to_refuses_a_build_of_several_platforms() -> None:
    with pytest.raises(PublishError) as raised:
        publish.prepare(
            cast("Engine", None),
            cast("CurrentLock", _Current(LOCK_DIGEST)),
            two_platforms(),
            push_to="registry.example.org/lab/model:paper",
            smoke=publish.SmokeSource(None, None),
            save=print,
            note=print,
        )
    assert str(raised.value) == (
        "the last build has images for linux/amd64, linux/arm64, and `publish --to` pushes only "
        "its own linux/amd64 image: run `reprobuild build --push "
        "registry.example.org/lab/model:paper` (it pushes every platform's image and their "
        "index), then `reprobuild publish` without --to."
    )


LOCK_TEXT = "# the lock of both platforms\n"


@dataclass
class IndexRegistry:
    """A registry serving the two-platform push: the index (its entries as given), each image's
    manifest by digest with its config, and configs labelled with `lock`."""

    entries: dict[str, str]  # platform -> the manifest digest the index names for it
    configs: dict[str, str]  # manifest digest -> its config digest
    lock: str

    def manifest(self, reference: ImageReference, target: str) -> tuple[bytes, str]:
        if target != INDEX:
            raise RegistryError(f"{reference.name}@{target}: manifest unknown")
        listed = [
            {"digest": digest, "platform": pushindex.platform_object(platform)}
            for platform, digest in self.entries.items()
        ]
        return pushindex.index_bytes(listed), OCI_INDEX

    def resolve(self, reference: ImageReference, platform: str | None = None) -> ResolvedImage:
        digest = reference.digest or self.entries[platform or AMD64]
        if digest not in self.configs:
            raise RegistryError(f"{reference.name}@{digest}: manifest unknown")
        index = None if reference.digest else INDEX
        return ResolvedImage(reference, digest, index, self.configs[digest], ())

    def read_blob(
        self, reference: ImageReference, digest: str, sink: Callable[[bytes], object]
    ) -> int:
        config = json.dumps({"config": {"Labels": {layout.LOCK_LABEL: self.lock}}}).encode()
        sink(config)
        return len(config)


def served(**changes: Any) -> IndexRegistry:
    values: dict[str, Any] = {
        "entries": {AMD64: DIGEST, ARM64: ARM_MANIFEST},
        "configs": {DIGEST: CONFIG, ARM_MANIFEST: ARM_CONFIG},
        "lock": lockfile.text_digest(LOCK_TEXT),
    }
    return IndexRegistry(**{**values, **changes})


def platform_findings(registry: IndexRegistry, manifest: Manifest) -> list[findings.Finding]:
    result = findings.Verification("m", PUSHED)
    lock_digest = manifest["lock"]["digest"]
    verify.platform_findings(result, cast("RegistryClient", registry), manifest, lock_digest)
    return result.findings


def two_platform_manifest() -> Manifest:
    built = replace(two_platforms(), lock=lockfile.text_digest(LOCK_TEXT))
    return document(built=built, lock=two_platform_lock(), lock_text=LOCK_TEXT)


def served_finding(platform: str, manifest: str, config: str) -> findings.Finding:
    return findings.Finding(
        f"image {platform}",
        "ok",
        f"the index names {manifest}; config digest {config} as published, built from the "
        "manifest's lock",
    )


def test_verify_finds_each_platform_served_by_the_index_as_published() -> None:
    assert platform_findings(served(), two_platform_manifest()) == [
        served_finding(AMD64, DIGEST, CONFIG),
        served_finding(ARM64, ARM_MANIFEST, ARM_CONFIG),
    ]


OTHER = "sha256:" + "99" * 32


@pytest.mark.parametrize(
    ("registry", "detail"),
    [
        (
            served(entries={AMD64: DIGEST, ARM64: OTHER}),
            f"the index names {OTHER}, the manifest says {ARM_MANIFEST}",
        ),
        (
            served(configs={DIGEST: CONFIG, ARM_MANIFEST: OTHER}),
            f"the registry serves it with the config digest {OTHER}, the manifest says "
            f"{ARM_CONFIG}",
        ),
        (
            served(entries={AMD64: DIGEST}),
            "the index has no linux/arm64 image (it has linux/amd64)",
        ),
        (
            served(configs={DIGEST: CONFIG}),
            f"the registry does not serve {ARM_PUSHED}: {NAME}@{ARM_MANIFEST}: manifest unknown",
        ),
    ],
)
def test_verify_fails_a_platform_the_index_does_not_serve_as_published(
    registry: IndexRegistry, detail: str
) -> None:
    assert platform_findings(registry, two_platform_manifest()) == [
        served_finding(AMD64, DIGEST, CONFIG),
        findings.Finding("image linux/arm64", "fail", detail),
    ]


def test_verify_fails_each_image_of_another_lock() -> None:
    other_lock = served(lock=LOCK_DIGEST)
    detail = (
        f"it was built from the lock {LOCK_DIGEST}, but the manifest's lock is "
        f"{lockfile.text_digest(LOCK_TEXT)}"
    )
    assert platform_findings(other_lock, two_platform_manifest()) == [
        findings.Finding("image linux/amd64", "fail", detail),
        findings.Finding("image linux/arm64", "fail", detail),
    ]


def test_verify_fails_a_resealed_platform_entry_and_a_lost_index() -> None:
    tampered = copy.deepcopy(two_platform_manifest())
    tampered["platforms"][1]["reference"] = f"evil.example.org/x@{ARM_MANIFEST}"
    tampered["platforms"][0]["manifest_digest"] = OTHER
    tampered["platforms"][0]["reference"] = f"{NAME}@{OTHER}"
    assert platform_findings(served(), publish.sealed(tampered)) == [
        findings.Finding(
            "image linux/amd64",
            "fail",
            f"the manifest's image {PUSHED} is not this entry's {NAME}@{OTHER}",
        ),
        findings.Finding(
            "image linux/arm64",
            "fail",
            f"its reference evil.example.org/x@{ARM_MANIFEST} is not {ARM_PUSHED}",
        ),
    ]
    lost = copy.deepcopy(two_platform_manifest())
    lost["index"] = f"{NAME}@{OTHER}"
    assert platform_findings(served(), lost) == [
        findings.Finding(
            "index",
            "fail",
            f"the registry does not serve {NAME}@{OTHER}: {NAME}@{OTHER}: manifest unknown",
        )
    ]


def test_verify_of_a_manifest_of_one_platform_asks_nothing_of_platforms() -> None:
    assert platform_findings(cast("IndexRegistry", None), document()) == []


def test_verify_of_a_manifest_of_two_platforms_in_order() -> None:
    # The checks of one platform's manifest, then each platform's, then the tag (resolved for
    # the image's platform), with no smoke test.
    manifest = two_platform_manifest()
    result = verify.verify_manifest(
        cast("Engine", PulledEngine(lockfile.text_digest(LOCK_TEXT))),
        cast("RegistryClient", served()),
        manifest,
        "m",
        verify.Steps(smoke=False, gpus=None, rebuild=None),
    )
    assert verify_lines(result) == [
        f"ok   manifest           integrity {manifest['integrity']} matches its content",
        f"ok   image              pulled {PUSHED}; config digest {CONFIG} as published",
        f"ok   lock               the image was built from the manifest's lock "
        f"{lockfile.text_digest(LOCK_TEXT)}",
        f"ok   image linux/amd64  the index names {DIGEST}; config digest {CONFIG} as published, "
        "built from the manifest's lock",
        f"ok   image linux/arm64  the index names {ARM_MANIFEST}; config digest {ARM_CONFIG} as "
        "published, built from the manifest's lock",
        "ok   tag                registry.example.org/lab/model:paper still names the published "
        "image",
        "skip smoke              not run (--no-smoke)",
        f"{PUSHED}: verified",
    ]


@dataclass
class PulledEngine:
    """An engine that has the published linux/amd64 image, labelled with `lock`."""

    lock: str

    def ensure_image(self, reference: str) -> str:
        return CONFIG

    def inspect_image(self, reference: str) -> dict[str, Any]:
        return {"Id": CONFIG, "Config": {"Labels": {layout.LOCK_LABEL: self.lock}}}
