"""A registry and an engine that stop in the middle of the work: `reprobuild build --push` while
the registry is killed, `reprobuild build` while the engine is killed and started again.

The registry and the engine here are the tests' own throw-away ones, started for each test and
stopped after it (the shared test engine and registry are never stopped): a `docker-registry`
on a free port of 127.0.0.1 with its own storage, a `dockerd` with its own socket, data root and
exec root, no bridge and no firewall rules (the small spec's build needs no network in its RUN
steps; the engine pulls the base from the shared registry itself). Each time: exit 1, one
paragraph that names the registry or the engine and the fix, no traceback, nothing half-written;
and once the registry or the engine is back, the same command completes.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from builder import layout
from builder.build import buildrecord
from builder.engine.sdk import Engine
from tests.integration.test_full_disk import NAME, TITLE, project_with_wheels, temporary_files
from tests.standins import WAIT_S, BuildRun, StandInEngine, StandInRegistry


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[StandInRegistry]:
    started = StandInRegistry(tmp_path / "registry")
    started.start()
    yield started
    started.stop()


@pytest.fixture
def engine() -> Iterator[StandInEngine]:
    started = StandInEngine()
    try:
        started.start()
        yield started
    finally:
        started.remove()


@pytest.fixture
def our_images(engine_client: Any) -> Iterator[None]:
    yield
    for image_id in engine_client.client.api.images(all=True, quiet=True, filters={"label": TITLE}):
        engine_client.remove_image(image_id)


def pushing(
    tmp_path: Path, registry: StandInRegistry, local_index: Any
) -> tuple[Path, str, BuildRun]:
    """A build of a small project pushing to the stand-in registry, returned once the registry
    receives a layer: the project, the push target and the build."""
    project = project_with_wheels(tmp_path / "project", local_index, torch_size=1 << 20)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    target = f"{registry.address}/test/outage:v1"
    build = BuildRun(project, env, "--push", target)
    build.wait_for(f"pushing {target}")
    deadline = time.monotonic() + WAIT_S
    while not registry.uploading():
        assert build.process.poll() is None, build.output
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return project, target, build


@pytest.mark.usefixtures("test_base", "our_images")
def test_a_registry_killed_mid_push_is_named_and_a_later_push_gives_the_same_digest(
    tmp_path: Path, registry: StandInRegistry, local_index: Any, engine_client: Any
) -> None:
    project, target, build = pushing(tmp_path, registry, local_index)
    registry.kill()
    assert build.finish() == 1
    message = build.error()
    assert message.startswith(
        f"error: the registry {registry.address} did not answer while the engine pushed {target} ("
    )
    assert message.endswith(
        "). Check that it runs and that this host reaches it, then push again (`reprobuild build "
        f"--push {target}`): the image is built, and the layers the registry already holds are "
        "not sent again."
    )
    assert not (project / layout.RECORD_FILE).exists()  # no record claims a push
    assert temporary_files(project) == []
    # Back (its storage as it was), the same command pushes, and the push is the push of an
    # image pushed whole to a registry that never saw it.
    registry.start()
    again = BuildRun(project, build.env, "--push", target)
    assert again.finish() == 0, again.output
    record = buildrecord.read(project)
    assert record.manifest_digest == registry.holds("test/outage", "v1")
    assert record.pushed == f"{registry.address}/test/outage@{record.manifest_digest}"
    fresh = StandInRegistry(tmp_path / "fresh")
    fresh.start()
    try:
        reference = f"{fresh.address}/test/outage:v1"
        engine_client.tag(record.image_id, reference)
        assert engine_client.push(reference) == record.manifest_digest
    finally:
        fresh.stop()


@pytest.mark.usefixtures("test_base", "our_images")
def test_a_registry_back_within_the_engines_retries_takes_the_push(
    tmp_path: Path, registry: StandInRegistry, local_index: Any
) -> None:
    project, _target, build = pushing(tmp_path, registry, local_index)
    registry.kill()
    time.sleep(1)
    registry.start()  # the engine tries a layer five times, the first again after 5 s
    assert build.finish() == 0, build.output
    record = buildrecord.read(project)
    assert record.manifest_digest == registry.holds("test/outage", "v1")


@pytest.mark.parametrize(
    "moment",
    [
        "[4/5] RUN",  # a step's container runs
        "normalising: reading the built image",  # the engine exports the built image
        "dependencies: installing torch",  # the dependencies image is being sent to the engine
    ],
)
def test_an_engine_killed_mid_build_is_named_and_the_next_build_succeeds(
    tmp_path: Path, engine: StandInEngine, local_index: Any, test_base: str, moment: str
) -> None:
    project = project_with_wheels(tmp_path / "project", local_index, torch_size=30 << 20)
    cache = tmp_path / "cache"
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "DOCKER_HOST": engine.address}
    build = BuildRun(project, env)
    build.wait_for(moment)
    engine.kill()
    assert build.finish() == 1
    message = build.error()
    assert message.startswith(f"error: the Docker engine at {engine.address} stopped answering ")
    assert message.endswith(
        "): it stopped or restarted. Check that it runs (`docker info`; its log: `journalctl -u "
        "docker`, or the output of dockerd), then run the command again."
    )
    assert not (project / layout.RECORD_FILE).exists()
    assert temporary_files(project) == [] and temporary_files(cache) == []
    engine.start()
    again = BuildRun(project, env)
    assert again.finish() == 0, again.output
    record = buildrecord.read(project)
    assert record.image.startswith(f"{NAME}:")
    with Engine.connect(engine.address) as client:
        assert client.image_id(record.image) == record.image_id


def test_a_body_that_cannot_be_made_is_raised_as_itself_not_as_a_lost_engine(
    engine_client: Any,
) -> None:
    def archive() -> Iterator[bytes]:
        yield bytes(1024)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OSError) as raised:
        engine_client.load_stream(archive())
    # Not the HTTP client's ConnectionError (an OSError too) that wraps it.
    assert type(raised.value) is OSError and raised.value.errno == errno.ENOSPC
