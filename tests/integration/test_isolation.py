"""A whole test run leaves the user's engine and an unrelated image in the tests' engine as they
were. Runs last (tests/conftest.py moves it there); tests/bystanders.py set them up before the
first test."""

from __future__ import annotations

import docker
import pytest

from tests import bystanders
from tests.infra import ENGINE


def test_the_run_left_the_users_engine_and_an_unrelated_image_alone(
    pytestconfig: pytest.Config,
) -> None:
    noted = pytestconfig.stash[bystanders.KEY]
    lost_images, lost_cache = bystanders.user_engine_losses(noted)
    assert lost_images == set() and lost_cache == set()
    if noted.stand_in is not None:
        # The stand-in's build cache: its seed, built again, takes every step from the cache.
        assert len(bystanders.stand_in_cache_hits()) == 3
    tests_engine = docker.DockerClient(base_url=ENGINE)
    kept = tests_engine.images.get(bystanders.UNRELATED)
    tests_engine.close()
    assert kept.id == noted.unrelated_in_tests_engine
