"""One image-reference type for every place that reads one."""

from __future__ import annotations

import pytest

from builder.errors import RegistryError
from builder.reference import ImageReference, name_problem, pinned_reference, well_formed

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
        ("registry.lab.example:5000/lab/base:v1", True),
        (f"registry.lab.example:5000/lab/base:v1@{DIGEST}", True),
        ("registry.lab.example:99999/lab/base:v1", False),
        ("lab//base:v1", False),
        ("python:3.11\n", False),
        (f"lab/x@{DIGEST}\n", False),
    ],
)
def test_a_spec_may_name_a_base_by_tag_or_by_digest(text: str, ok: bool) -> None:
    assert well_formed(text) is ok


@pytest.mark.parametrize(
    "text",
    [
        "lab/resnet-train",
        "train",
        "registry.lab.example:5000/lab/train",
        "registry.lab.example/lab/train",
        "localhost/lab/train",
        "localhost:5000/train",
        "127.0.0.1:5000/a/b",
        "[::1]:5000/lab/train",
        "Registry.Lab.Example/lab/train",  # a host name's case is free; a path's is not
        "lab/a.b_c__d---e",
        "a_b/c",
        "a/b/c/d",
    ],
)
def test_a_reference_name_is_accepted(text: str) -> None:
    assert name_problem(text) is None
    assert ImageReference.parse(f"{text}:tag").written_name == text


FORM = (
    "write [HOST[:PORT]/]PATH, with path parts of lower-case letters and digits joined by '.', "
    "'_', '__' or '-', e.g. \"lab/resnet-train\" or \"registry.lab.example:5000/lab/train\""
)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "it is empty"),
        ("Lab/train", "the path part 'Lab' has upper-case letters"),
        ("registry.lab.example:5000/lab/Train", "the path part 'Train' has upper-case letters"),
        ("lab//train", "it has an empty path part ('//', or '/' at an end)"),
        ("/lab/train", "it has an empty path part ('//', or '/' at an end)"),
        ("lab/train/", "it has an empty path part ('//', or '/' at an end)"),
        (
            "registry.lab.example:99999/lab/train",
            "the registry port 99999 of 'registry.lab.example:99999' is not a number from 1 to "
            "65535",
        ),
        (
            "registry.lab.example:http/lab/train",
            "the registry port 'http' of 'registry.lab.example:http' is not a number from 1 to "
            "65535",
        ),
        (
            "registry.lab.example:/lab/train",
            "the registry port '' of 'registry.lab.example:' is not a number from 1 to 65535",
        ),
        (
            "-registry.example/lab",
            "the registry host '-registry.example' is not a host name or IP address",
        ),
        ("lab/train ing", "the path part 'train ing' has ' ', which no name may hold"),
        ("lab/-train", "the path part '-train' has a separator at an end or two in a row"),
        ("lab/a___b", "the path part 'a___b' has a separator at an end or two in a row"),
        ("a" * 256, "it is 256 characters long, more than 255"),
    ],
)
def test_a_name_that_is_not_one_says_why(text: str, reason: str) -> None:
    assert name_problem(text) == f"{reason}; {FORM}"


def test_a_name_with_a_tag_or_digest_is_refused_with_the_name_alone() -> None:
    assert name_problem("registry.lab.example:5000/lab/train:v1") == (
        "it ends in the tag ':v1', but each build is tagged with its lock's digest; write the "
        'name alone, "registry.lab.example:5000/lab/train"'
    )
    assert name_problem(f"lab/train:v1@{DIGEST}") == (
        'it ends in a digest, which only a built image has; write the name alone, "lab/train"'
    )


def test_a_loopback_registry_is_spoken_to_over_http() -> None:
    assert ImageReference.parse("[::1]:5000/a:v1").base_url == "http://[::1]:5000/v2/a"
    assert ImageReference.parse("127.0.0.1:5000/a:v1").base_url == "http://127.0.0.1:5000/v2/a"
    assert ImageReference.parse("r.example/a:v1").base_url == "https://r.example/v2/a"
