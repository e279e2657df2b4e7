"""The registry client without a registry: what an address that does not answer gives. A real
registry is in tests/integration/test_registry.py."""

from __future__ import annotations

import pytest

from builder.engine.registry import RegistryClient
from builder.errors import RegistryError
from builder.reference import ImageReference


def test_unreachable_registry_names_the_host() -> None:
    with (
        RegistryClient(attempts=2, backoff_s=0.01) as client,
        pytest.raises(RegistryError) as caught,
    ):
        client.resolve(ImageReference.parse("127.0.0.1:9/x/y:z"))
    assert str(caught.value) == (
        "the registry 127.0.0.1:9 did not answer (ConnectionError after 2 attempts). Check that "
        "it runs and that this machine reaches it (network, proxy)."
    )
