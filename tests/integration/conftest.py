"""Integration fixtures: the real engine and registry that scripts/infra starts.

These tests do not skip when the infrastructure is missing: they fail and say how to start it,
so a CI run cannot pass without having exercised the engine and the registry.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from builder import engine
from builder.errors import ReprobuildError
from tests.infra import BASE, MINBASE, registry_has


@pytest.fixture(scope="session")
def engine_client() -> Iterator[Any]:
    try:
        client = engine.connect()
    except ReprobuildError as error:
        pytest.fail(f"{error}\nRun `scripts/infra up` (the test command does) first.")
    try:
        yield client
    finally:
        client.close()


def _in_registry(reference: str) -> str:
    if not registry_has(reference):
        pytest.fail(f"{reference} is not in the local registry: run `scripts/infra up` first.")
    return reference


@pytest.fixture(scope="session")
def test_base(engine_client: Any) -> str:
    return _in_registry(BASE)


@pytest.fixture(scope="session")
def python_less_base(engine_client: Any) -> str:
    return _in_registry(MINBASE)
