"""The SDK engine's name handling, which needs no engine: a name is tagged and pushed by its tag
(a registry's port is not one), never by a digest. The engine itself is in tests/integration."""

from __future__ import annotations

import http.client

import pytest
import requests
import urllib3

from builder.engine.sdk import PUSH_FIX, _lost_reason, _name_and_tag, _why, push_failed
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


def test_a_registry_that_stops_answering_is_named_with_the_way_to_push_again() -> None:
    error = "dial tcp 127.0.0.1:5099: connect: connection refused"
    assert push_failed("127.0.0.1:5099/lab/x:v1", "127.0.0.1:5099", error) == (
        "the registry 127.0.0.1:5099 did not answer while the engine pushed "
        "127.0.0.1:5099/lab/x:v1 (dial tcp 127.0.0.1:5099: connect: connection refused). Check "
        "that it runs and that this host reaches it, then push again (`reprobuild build --push "
        "127.0.0.1:5099/lab/x:v1`): the image is built, and the layers the registry already "
        "holds are not sent again."
    )


def test_a_refused_push_keeps_the_registrys_reason() -> None:
    said = push_failed("r.example.org/lab/x:v1", "r.example.org", "unauthorized: login")
    expected = "pushing r.example.org/lab/x:v1 to r.example.org failed: unauthorized: login."
    assert said == f"{expected} {PUSH_FIX}"


def test_a_lost_engine_is_told_by_the_systems_word_else_as_a_broken_answer() -> None:
    refused = requests.exceptions.ConnectionError(
        urllib3.exceptions.ProtocolError(
            "Connection aborted.", ConnectionRefusedError(111, "Connection refused")
        )
    )
    assert _lost_reason(refused) == "Connection refused"
    broken = urllib3.exceptions.ProtocolError("Connection broken", http.client.IncompleteRead(b""))
    assert _lost_reason(broken) == "the connection broke off"
