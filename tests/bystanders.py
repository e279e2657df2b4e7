"""What a test run must leave alone: the user's engine and an unrelated image in the tests' own.

Set up once, before the first test, when tests/integration/test_isolation.py is collected (it
runs last), and checked by that test:
- the user's engine at the default socket. Where none answers (CI), a stand-in is started there
  for the run (its own data root under the tests' state, no bridge, no firewall rules), holding
  an unrelated image and the build cache of a small build; where the user's answers, nothing is
  added to it: the images it holds (its intermediate ones, the classic builder's cache, included)
  and its BuildKit cache records are noted;
- the tests' engine: an unrelated image, named outside every name the tests use.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import tarfile
from dataclasses import dataclass, field

import docker
import pytest
from docker.errors import DockerException
from requests import RequestException

from builder.engine.common import API_VERSION
from tests.infra import ENGINE, STATE
from tests.standins import StandInEngine

USER_ENGINE = "unix:///var/run/docker.sock"
UNRELATED_NAME, UNRELATED_TAG = "reprobuild-bystander/unrelated", "kept"
UNRELATED = f"{UNRELATED_NAME}:{UNRELATED_TAG}"
# A build whose every step leaves a cached intermediate image in the classic builder.
SEED_DOCKERFILE = f"FROM {UNRELATED}\nCOPY seed /seed\nENV SEED=1\nLABEL seed=kept\n"
STAND_IN = STATE / "stand-in"


def _listening(address: str) -> bool:
    """Whether something accepts connections at a unix:// address (a connection docker-py
    fails to make is never closed, which the tests' warnings filter turns into an error)."""
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(address.removeprefix("unix://"))
        except OSError:
            return False
    return True


def _client(address: str) -> docker.DockerClient | None:
    if not _listening(address):
        return None
    client = docker.DockerClient(base_url=address, version=API_VERSION, timeout=30)
    try:
        client.ping()
    except (DockerException, RequestException):
        client.close()
        return None
    return client


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in files.items():
            entry = tarfile.TarInfo(name)
            entry.size = len(data)
            archive.addfile(entry, io.BytesIO(data))
    return buffer.getvalue()


def add_unrelated_image(client: docker.DockerClient) -> str:
    """An image no test makes or names, imported from a one-file layer; its ID."""
    client.api.import_image_from_data(
        _tar({"kept": b"not the tests' image\n"}), repository=UNRELATED_NAME, tag=UNRELATED_TAG
    )
    return str(client.images.get(UNRELATED).id)


def build_seed(client: docker.DockerClient) -> list[str]:
    """Build the seed Dockerfile; the lines of its log that say a step came from the cache."""
    context = _tar({"Dockerfile": SEED_DOCKERFILE.encode(), "seed": b"seed\n"})
    log = client.api.build(fileobj=io.BytesIO(context), custom_context=True, rm=True, decode=True)
    lines = [str(event.get("stream", "")) for event in log]
    return [line for line in lines if "Using cache" in line]


def _all_images(client: docker.DockerClient) -> set[str]:
    return {str(image_id) for image_id in client.api.images(all=True, quiet=True)}


def _buildkit_records(client: docker.DockerClient) -> set[str]:
    return {str(record["ID"]) for record in client.api.df().get("BuildCache") or []}


@dataclass
class Bystanders:
    user_images: set[str] = field(default_factory=set)
    user_cache: set[str] = field(default_factory=set)
    unrelated_in_tests_engine: str = ""
    stand_in: StandInEngine | None = None


KEY = pytest.StashKey[Bystanders]()
ISOLATION_TEST = "test_isolation.py"


def set_up() -> Bystanders:
    bystanders = Bystanders()
    user = _client(USER_ENGINE)
    if user is None and os.geteuid() == 0 and shutil.which("dockerd"):
        bystanders.stand_in = StandInEngine(STAND_IN, USER_ENGINE)
        bystanders.stand_in.start()
        user = _client(USER_ENGINE)
        assert user is not None
        add_unrelated_image(user)
        build_seed(user)
    if user is not None:
        bystanders.user_images = _all_images(user)
        bystanders.user_cache = _buildkit_records(user)
        user.close()
    tests_engine = _client(ENGINE)
    if tests_engine is not None:
        bystanders.unrelated_in_tests_engine = add_unrelated_image(tests_engine)
        tests_engine.close()
    return bystanders


def user_engine_losses(bystanders: Bystanders) -> tuple[set[str], set[str]]:
    """The images and BuildKit cache records the user's engine held at the start and no longer
    holds."""
    user = _client(USER_ENGINE)
    assert user is not None, "the user's engine stopped answering during the run"
    losses = (
        bystanders.user_images - _all_images(user),
        bystanders.user_cache - _buildkit_records(user),
    )
    user.close()
    return losses


def stand_in_cache_hits() -> list[str]:
    """The stand-in's seed built again: a cache hit per step when its cache survived."""
    user = _client(USER_ENGINE)
    assert user is not None
    hits = build_seed(user)
    user.close()
    return hits


def tear_down(bystanders: Bystanders) -> None:
    """Remove what `set_up` added: the unrelated image in the tests' engine, the stand-in."""
    tests_engine = _client(ENGINE)
    if tests_engine is not None and bystanders.unrelated_in_tests_engine:
        with contextlib.suppress(DockerException):
            tests_engine.api.remove_image(bystanders.unrelated_in_tests_engine, force=True)
        tests_engine.close()
    if bystanders.stand_in is not None:
        bystanders.stand_in.remove()
        bystanders.stand_in = None
