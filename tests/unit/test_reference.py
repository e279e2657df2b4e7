"""One image-reference type for every place that reads one."""

from __future__ import annotations

import pytest

from builder.errors import RegistryError
from builder.reference import ImageReference, pinned_reference, well_formed

DIGEST = "sha256:" + "ab" * 32


# text -> registry, repository, tag, digest, name (as FROM writes it), name as written
PARTS = {
    "python:3.11": ("registry-1.docker.io", "library/python", "3.11", None, "python", "python"),
    "docker.io/lab/x": (
        "registry-1.docker.io",
        "lab/x",
        "latest",
        None,
        "lab/x",
        "docker.io/lab/x",
    ),
    "127.0.0.1:5000/a/b:v1": ("127.0.0.1:5000", "a/b", "v1", None, *["127.0.0.1:5000/a/b"] * 2),
    f"lab/x:paper@{DIGEST}": ("registry-1.docker.io", "lab/x", "paper", DIGEST, "lab/x", "lab/x"),
    f"localhost/x@{DIGEST}": ("localhost", "x", None, DIGEST, "localhost/x", "localhost/x"),
}


@pytest.mark.parametrize("text", sorted(PARTS))
def test_a_reference_is_read_into_its_parts(text: str) -> None:
    reference = ImageReference.parse(text)
    parts = (reference.registry, reference.repository, reference.tag, reference.digest)
    assert (*parts, reference.name, reference.written_name) == PARTS[text]
    assert reference.written == text


def test_a_digest_that_is_not_sha256_hex_is_refused() -> None:
    with pytest.raises(RegistryError) as raised:
        ImageReference.parse("lab/x@sha256:abc")
    assert str(raised.value) == "'lab/x@sha256:abc': the digest must be sha256:<64 hex digits>."


def test_a_name_is_taken_apart_at_its_tag_not_at_a_port() -> None:
    untagged, tagged = ImageReference.parse("127.0.0.1:5000/a/b"), ImageReference.parse("h:1/a:v1")
    assert (untagged.written_name, untagged.tag) == ("127.0.0.1:5000/a/b", "latest")
    assert (tagged.registry, tagged.written_name, tagged.tag) == ("h:1", "h:1/a", "v1")


@pytest.mark.parametrize(
    ("text", "pinned"),
    [
        (f"r.example/lab/x@{DIGEST}", True),
        (f"lab/x:tag@{DIGEST}", True),
        ("lab/x:tag", False),
        ("lab/x@sha256:abc", False),
        (f"@{DIGEST}", False),
        (f"lab/x @{DIGEST}", False),
        (f"a@b@{DIGEST}", False),
    ],
)
def test_only_a_name_with_a_sha256_digest_is_pinned(text: str, pinned: bool) -> None:
    assert (pinned_reference(text) is not None) is pinned


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("python:3.11-slim-bookworm", True),
        ("127.0.0.1:5000/reprobuild-test/debian-python:bookworm", True),
        (f"nvidia/cuda@{DIGEST}", True),
        ("Python:3.11", False),
        ("python:3.11 slim", False),
        ("lab/x@sha256:abc", False),
    ],
)
def test_a_spec_may_name_a_base_by_tag_or_by_digest(text: str, ok: bool) -> None:
    assert well_formed(text) is ok
