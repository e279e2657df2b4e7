"""The provenance: an in-toto Statement v1 with a SLSA Provenance v1 predicate, read back through
in-toto's own protobuf messages (an unknown or mistyped field fails), with exact subjects and
inputs for the example lock, the same bytes every time, and `check`."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.json_format import ParseDict, ParseError
from in_toto_attestation.predicates.provenance.v1.provenance_pb2 import (  # type: ignore[import-untyped]
    Provenance,
)
from in_toto_attestation.v1.statement import Statement  # type: ignore[import-untyped]
from in_toto_attestation.v1.statement_pb2 import (  # type: ignore[import-untyped]
    Statement as StatementMessage,
)

from builder.build.buildrecord import BuildRecord, LayerRecord
from builder.errors import PublishError
from builder.lock import lockfile
from builder.lock.model import Lock
from builder.publish import provenance
from builder.publish.provenance import Subject
from tests.records import CONFIG, MANIFEST, make_record
from tests.unit.publish.test_sbom import MIRROR, SNAPSHOT, bootstrapped

ROOT = Path(__file__).parents[3]
EXAMPLE = ROOT / "images" / "example" / "reprobuild.lock"
LOCK_DIGEST = f"sha256:{hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()}"
IMAGE = "127.0.0.1:5055/lab/model"
ARCHIVE_HEX = "0f" * 32
SUBJECTS = (Subject(IMAGE, MANIFEST.removeprefix("sha256:")), Subject("model.oci.tar", ARCHIVE_HEX))
LAYERS = (LayerRecord("sha256:" + "01" * 32, 1000), LayerRecord("sha256:" + "02" * 32, 24))
BASE_HEX = "b1add8a6f2aca6bcfcf0b9c9b522352f7ce0d62a3d556a2f2f32511aa0cca250"
TORCH_HEX = "de5b7d6740c4b636ef4db92be922f0edc425b65ed78c5076c43c42d362a45457"
TEMPLATES = {"Dockerfile.j2": "sha256:" + "a1" * 32, "apptainer.def.j2": "sha256:" + "a2" * 32}


def example() -> Lock:
    return lockfile.read(EXAMPLE)


def record(lock: str = LOCK_DIGEST, **changes: Any) -> BuildRecord:
    values: dict[str, Any] = {
        "pushed": f"{IMAGE}@{MANIFEST}",
        "pushed_tag": f"{IMAGE}:paper",
        "layers": LAYERS,
        "git_commit": "0123abcd" * 5,
        "git_dirty": False,
        "knowledge_version": "2026-11-22+01fc5b3f58c2",
    }
    return make_record(lock, **{**values, **changes})


def made(**changes: Any) -> bytes:
    return provenance.statement(
        example(),
        lock_digest=LOCK_DIGEST,
        lock_path="images/example/reprobuild.lock",
        record=record(**changes),
        subjects=SUBJECTS,
        templates=TEMPLATES,
    )


def parsed(data: bytes) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(data)
    return document


def dependencies(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = document["predicate"]["buildDefinition"]["resolvedDependencies"]
    return {dependency["name"]: dependency for dependency in found}


def test_it_reads_back_as_in_totos_statement_and_slsa_provenance() -> None:
    document = parsed(made())
    message = ParseDict(document, StatementMessage(), ignore_unknown_fields=False)
    Statement.copy_from_pb(message).validate()
    ParseDict(document["predicate"], Provenance(), ignore_unknown_fields=False)
    assert (document["_type"], document["predicateType"]) == (
        "https://in-toto.io/Statement/v1",
        "https://slsa.dev/provenance/v1",
    )


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("buildDefinition", "buildtype"), "x"),  # unknown field
        (("runDetails", "builder", "id"), 7),  # a number for a string
        (("runDetails", "startedOn"), "x"),  # unknown field
        (("runDetails", "byproducts"), {"name": "config"}),  # an object for a list
    ],
)
def test_the_schema_check_can_fail(path: tuple[str, ...], value: object) -> None:
    predicate = parsed(made())["predicate"]
    *parents, last = path
    inner = predicate
    for key in parents:
        inner = inner[key]
    inner[last] = value
    with pytest.raises(ParseError):
        ParseDict(predicate, Provenance(), ignore_unknown_fields=False)


def test_a_mistyped_dependency_fails_the_schema() -> None:
    predicate = parsed(made())["predicate"]
    predicate["buildDefinition"]["resolvedDependencies"][0]["digest"] = "sha256:1"
    with pytest.raises(ParseError):
        ParseDict(predicate, Provenance(), ignore_unknown_fields=False)


def test_its_subjects_are_the_image_and_the_archive() -> None:
    assert parsed(made())["subject"] == [
        {"name": IMAGE, "digest": {"sha256": "ab" * 32}},
        {"name": "model.oci.tar", "digest": {"sha256": ARCHIVE_HEX}},
    ]


def test_its_parameters() -> None:
    definition = parsed(made())["predicate"]["buildDefinition"]
    assert definition["buildType"] == "https://reprobuild.dev/buildtypes/image/v1"
    assert definition["externalParameters"] == {
        "lock": {"path": "images/example/reprobuild.lock", "digest": LOCK_DIGEST},
        "image": f"{IMAGE}:paper",
        "source": {"gitCommit": "0123abcd" * 5, "gitDirty": False},
    }
    assert definition["internalParameters"] == {
        "reprobuildVersion": "0.1.0",
        "knowledgeVersion": "2026-11-22+01fc5b3f58c2",
        "templates": TEMPLATES,
    }


def test_its_resolved_dependencies() -> None:
    found = dependencies(parsed(made()))
    assert found["reprobuild.lock"] == {
        "name": "reprobuild.lock",
        "digest": {"sha256": LOCK_DIGEST.removeprefix("sha256:")},
    }
    assert found["python:3.11-slim-bookworm"] == {
        "name": "python:3.11-slim-bookworm",
        "uri": f"pkg:oci/python@sha256:{BASE_HEX}?arch=amd64"
        "&repository_url=docker.io/library/python&tag=3.11-slim-bookworm",
        "digest": {"sha256": BASE_HEX},
    }
    assert found["torch"] == {
        "name": "torch",
        "uri": "https://files.pythonhosted.org/packages/d1/35/e8b2daf02ce933e4518e6f5682c72fd0ed66"
        "c15910ea1fb4168f442b71c4/torch-2.5.1-cp311-cp311-manylinux1_x86_64.whl",
        "digest": {"sha256": TORCH_HEX},
    }
    assert len(found) == 2 + 24  # the lock, the base, every wheel (the example has no apt)


def test_a_bootstrapped_base_and_its_packages() -> None:
    lock = bootstrapped()
    data = provenance.statement(
        lock,
        lock_digest=LOCK_DIGEST,
        lock_path="reprobuild.lock",
        record=record(),
        subjects=SUBJECTS[:1],
        templates=TEMPLATES,
    )
    document = parsed(data)
    ParseDict(document["predicate"], Provenance(), ignore_unknown_fields=False)
    found = dependencies(document)
    assert found["debian-bookworm"] == {
        "name": "debian-bookworm",
        "uri": MIRROR,
        "annotations": {"suite": "bookworm", "snapshot": SNAPSHOT},
    }
    assert found["zlib1g"] == {
        "name": "zlib1g",
        "uri": "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&distro=debian-bookworm",
    }
    assert found["libc6"]["uri"].startswith("pkg:deb/debian/libc6@2.36-9%2Bdeb12u10?")


def test_its_run_details() -> None:
    details = parsed(made())["predicate"]["runDetails"]
    assert details == {
        "builder": {
            "id": "https://reprobuild.dev/builder/docker-engine",
            "version": {"reprobuild": "0.1.0", "docker-engine": "20.10.24"},
        },
        "byproducts": [
            {"name": "config", "digest": {"sha256": CONFIG.removeprefix("sha256:")}},
            {"name": "rootfs.diff_ids[0]", "digest": {"sha256": "01" * 32}},
            {"name": "rootfs.diff_ids[1]", "digest": {"sha256": "02" * 32}},
        ],
    }


def test_the_same_inputs_give_the_same_canonical_bytes() -> None:
    data = made()
    assert made() == data
    document = parsed(data)
    assert data == (json.dumps(document, sort_keys=True, indent=2) + "\n").encode()
    assert made(git_commit="f" * 40) != data


def test_template_digests_are_of_the_files_the_render_reads(tmp_path: Path) -> None:
    packaged = {
        name: f"sha256:{hashlib.sha256((ROOT / 'templates' / name).read_bytes()).hexdigest()}"
        for name in ("Dockerfile.j2", "apptainer.def.j2")
    }
    assert provenance.template_digests(tmp_path) == packaged
    override = tmp_path / "reprobuild-templates"
    override.mkdir()
    text = b"FROM scratch\n"
    (override / "Dockerfile.j2").write_bytes(text)
    assert provenance.template_digests(tmp_path) == {
        "Dockerfile.j2": f"sha256:{hashlib.sha256(text).hexdigest()}",
        "apptainer.def.j2": packaged["apptainer.def.j2"],
    }


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(PublishError, match="not of"):
        made(lock="sha256:" + "9" * 64)
    with pytest.raises(PublishError, match="record was edited"):
        made(image_id="sha256:short")
    with pytest.raises(PublishError, match="64"):
        provenance.statement(
            example(),
            lock_digest=LOCK_DIGEST,
            lock_path="reprobuild.lock",
            record=record(),
            subjects=[Subject(IMAGE, MANIFEST)],  # with its prefix
            templates=TEMPLATES,
        )


def test_check_accepts_this_image_and_lock_only() -> None:
    data = made()
    assert provenance.check(data, MANIFEST, LOCK_DIGEST) is None
    assert provenance.check(data, "sha256:" + ARCHIVE_HEX, LOCK_DIGEST) is None
    other = "sha256:" + "12" * 32
    assert provenance.check(data, other, LOCK_DIGEST) == f"no subject of it is {other}"
    assert provenance.check(data, MANIFEST, other) == f"it does not name the lock {other}"


def test_check_finds_the_lock_in_either_place() -> None:
    document = parsed(made())
    definition = document["predicate"]["buildDefinition"]
    without_dependency = copy.deepcopy(document)
    without_dependency["predicate"]["buildDefinition"]["resolvedDependencies"] = [
        d for d in definition["resolvedDependencies"] if d["name"] != "reprobuild.lock"
    ]
    data = json.dumps(without_dependency).encode()
    assert provenance.check(data, MANIFEST, LOCK_DIGEST) is None
    del without_dependency["predicate"]["buildDefinition"]["externalParameters"]["lock"]
    data = json.dumps(without_dependency).encode()
    assert provenance.check(data, MANIFEST, LOCK_DIGEST) == (
        f"it does not name the lock {LOCK_DIGEST}"
    )


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\xff\xfe", "it is not JSON"),
        (b"not json", "it is not JSON"),
        (b"{" * 100_000, "it is not JSON"),
        (b"[]", "it is not an in-toto Statement v1"),
        (b'{"_type": "https://in-toto.io/Statement/v0.1"}', "it is not an in-toto Statement v1"),
        (b'{"_type": "https://in-toto.io/Statement/v1"}', "its predicate is None"),
        (
            b'{"_type": "https://in-toto.io/Statement/v1", "predicateType": '
            b'"https://slsa.dev/provenance/v1", "subject": {"digest": []}}',
            "no subject of it is",
        ),
        (
            b'{"_type": "https://in-toto.io/Statement/v1", "predicateType": '
            b'"https://slsa.dev/provenance/v1", "subject": [{"digest": {"sha256": [1]}}, 7]}',
            "no subject of it is",
        ),
        (
            b'{"_type": "https://in-toto.io/Statement/v1", "predicateType": '
            b'"https://slsa.dev/provenance/v1", "subject": [{"digest": {"sha256": "'
            + b"ab" * 32
            + b'"}}], "predicate": {"buildDefinition": {"resolvedDependencies": {"a": 1}}}}',
            "it does not name the lock",
        ),
    ],
)
def test_check_names_what_is_wrong(data: bytes, problem: str) -> None:
    found = provenance.check(data, MANIFEST, LOCK_DIGEST)
    assert found is not None
    assert found.startswith(problem)
