"""The SDK engine's name handling, which needs no engine: a name is tagged and pushed by its tag
(a registry's port is not one), never by a digest. The engine itself is in tests/integration."""

from __future__ import annotations

import pytest

from builder.engine.sdk import _name_and_tag, _why
from builder.errors import EngineError, RegistryError


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("127.0.0.1:5000/a/b", ("127.0.0.1:5000/a/b", "latest")),
        ("127.0.0.1:5000/a/b:v1", ("127.0.0.1:5000/a/b", "v1")),
        ("lab/x", ("lab/x", "latest")),
        ("docker.io/library/python:3.11", ("docker.io/library/python", "3.11")),
    ],
)
def test_a_name_is_pushed_under_its_tag(reference: str, expected: tuple[str, str]) -> None:
    assert _name_and_tag(reference) == expected


@pytest.mark.parametrize("reference", ["lab/x@sha256:" + "ab" * 32, "lab/x:v1@sha256:bad"])
def test_a_digest_is_never_pushed_or_tagged(reference: str) -> None:
    with pytest.raises(EngineError) as raised:
        _name_and_tag(reference)
    assert str(raised.value) == (
        f"{reference} names an image by digest: tag and push it by name:tag, e.g. "
        "registry.example.org/lab/train:v1 (the push reports the digest)."
    )


def test_an_error_without_the_engines_explanation_is_named_by_itself() -> None:
    assert _why(RegistryError("the digest must be sha256:<64 hex digits>.")) == (
        "the digest must be sha256:<64 hex digits>."
    )
