"""`reprobuild gc` against the real engine, on tiny images loaded here on the test base's layer.

Each image is the base's layer plus a layer or two of one small file, labelled as a build labels
them, so the engine's sizes are exact: the base's size plus the files' bytes. The project's name
is this run's own, so images of other runs or projects never meet these.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest
from click.testing import CliRunner
from docker.errors import NotFound

from builder.build.gc import final_reference
from builder.cli.main import cli
from builder.codeset import size_text
from builder.engine.sdk import Engine
from builder.lock import lockfile
from builder.spec.file import locate
from tests.locks import make_lock

if TYPE_CHECKING:
    from builder.resolve.resolve import ResolutionRecord

CREATED = "2026-11-01T00:00:00Z"


@dataclass(frozen=True)
class Scene:
    project: Path
    name: str
    current: str  # the lock file's digest
    base_size: int
    locks: dict[str, str]  # the earlier locks' digests, by number
    ids: dict[str, str]  # image IDs by role: d1 f1 d2 f2 d3 f3 fc u
    container: str


def _layer(folder: Path, name: str, size: int, session: str) -> tuple[str, Path]:
    """A layer of one file of `size` bytes, its content this run's own."""
    data = (f"{session}-{name}-" * size).encode()[:size]
    path = folder / f"{name}.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as layer:
        info = tarfile.TarInfo(f"{name}.txt")
        info.size, info.mode, info.mtime = size, 0o644, 1_700_000_000
        layer.addfile(info, io.BytesIO(data))
    return f"sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}", path


def _config(diff_ids: list[str], labels: dict[str, str]) -> bytes:
    document = {
        "architecture": "amd64",
        "os": "linux",
        "created": CREATED,
        "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["true"], "Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    return json.dumps(document, sort_keys=True).encode()


def _load(engine: Engine, images: list[tuple[str, bytes, list[str]]], layers: list[Path]) -> None:
    """`docker load` of images (reference, config, layer files); a layer file the archive leaves
    out is one the engine holds already (the base's), which it does not open."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path in layers:
            archive.add(path, path.name)
        manifest = []
        for reference, config, files in images:
            name = f"{hashlib.sha256(config).hexdigest()}.json"
            info = tarfile.TarInfo(name)
            info.size = len(config)
            archive.addfile(info, io.BytesIO(config))
            manifest.append({"Config": name, "RepoTags": [reference], "Layers": files})
        data = json.dumps(manifest).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    engine.load_stream(iter([buffer.getvalue()]), what="the test's images")


def _project(folder: Path, name: str) -> str:
    """A spec named `name` and a lock that matches it; returns the lock's digest."""
    folder.mkdir()
    (folder / "reprobuild.toml").write_text(
        f'name = "{name}"\npython = "3.11"\ntorch = "2.5.1"\ncpu_only = true\n'
    )
    lock = make_lock(cuda=None, label="2.5.1+cpu")
    resolution = cast("ResolutionRecord", {**lock.resolution, "name": name})
    spec_path, table, _ = locate(folder)
    lock = replace(lock, resolution=resolution, spec_hash=lockfile.spec_hash_at(spec_path, table))
    (folder / lockfile.LOCK_FILE).write_text(lockfile.dumps(lock))
    return lockfile.file_digest(folder / lockfile.LOCK_FILE)


@pytest.fixture
def scene(engine_client: Engine, test_base: str, tmp_path: Path) -> Iterator[Scene]:
    """Three earlier locks and the current one of a project, each lock a dependencies image (the
    base's layer and one of 100, 200 or 300 bytes) and a final image on it (one more of 10, 20 or
    30 bytes); the current lock's final image (40 bytes more) is built on lock 2's dependencies.
    Lock 1's final image has a stopped container. Beside them, an image without reprobuild's
    labels under a name a build would give."""
    session = uuid.uuid4().hex[:10]
    name = f"reprobuild-test/gc-{session}"
    current = _project(tmp_path / "project", name)
    engine_client.ensure_image(test_base)
    base = engine_client.inspect_image(test_base)
    base_layers = list(base["RootFS"]["Layers"])
    base_files = [f"base{index}.tar" for index in range(len(base_layers))]
    locks = {
        str(number): f"sha256:{hashlib.sha256(f'{session}-{number}'.encode()).hexdigest()}"
        for number in (1, 2, 3)
    }
    locks["c"] = current
    sizes = {"d1": 100, "f1": 10, "d2": 200, "f2": 20, "d3": 300, "f3": 30, "fc": 40, "u": 50}
    made = {role: _layer(tmp_path, role, size, session) for role, size in sizes.items()}

    def labels(number: str) -> dict[str, str]:
        return {
            "dev.reprobuild.lock": locks[number],
            "dev.reprobuild.version": "0.1.0",
            "org.opencontainers.image.title": name,
        }

    def chain(*roles: str) -> tuple[list[str], list[str]]:
        return base_layers + [made[role][0] for role in roles], base_files + [
            made[role][1].name for role in roles
        ]

    images: dict[str, tuple[str, bytes, list[str]]] = {}
    for number in "123":
        deps_ids, deps_files = chain(f"d{number}")
        final_ids, final_files = chain(f"d{number}", f"f{number}")
        images[f"d{number}"] = (
            f"{name}:deps-k{number}",
            _config(deps_ids, labels(number)),
            deps_files,
        )
        images[f"f{number}"] = (
            final_reference(name, locks[number]),
            _config(final_ids, labels(number)),
            final_files,
        )
    current_ids, current_files = chain("d2", "fc")
    images["fc"] = (
        final_reference(name, current),
        _config(current_ids, labels("c")),
        current_files,
    )
    unlabelled_ids, unlabelled_files = chain("u")
    images["u"] = (
        final_reference(name, "sha256:" + "0" * 64),
        _config(unlabelled_ids, {}),
        unlabelled_files,
    )
    ids = {
        role: f"sha256:{hashlib.sha256(config).hexdigest()}"
        for role, (_, config, _) in images.items()
    }
    container = ""
    try:
        _load(engine_client, list(images.values()), [path for _, path in made.values()])
        # Loaded images carry no LastTagTime; tagging them again, oldest lock first, dates them.
        for role in ("d1", "f1", "d2", "f2", "d3", "f3", "fc"):
            engine_client.tag(ids[role], images[role][0])
        created = engine_client.client.containers.create(
            ids["f1"], ["true"], name=f"reprobuild-test-gc-{session}"
        )
        container = created.id
        created.start()
        assert created.wait(timeout=60)["StatusCode"] == 0
        yield Scene(tmp_path / "project", name, current, int(base["Size"]), locks, ids, container)
    finally:
        if container:
            with contextlib.suppress(NotFound):
                engine_client.client.api.remove_container(container, force=True)
        for image_id in ids.values():
            engine_client.remove_image(image_id)


def _gc(project: Path, *args: str) -> Any:
    return CliRunner().invoke(cli, ["-C", str(project), "gc", *args])


def _remaining(engine: Engine, scene: Scene) -> set[str]:
    return {role for role, image_id in scene.ids.items() if engine.image_id(image_id)}


def test_gc_lists_then_removes_the_earlier_locks_images(
    engine_client: Engine, scene: Scene
) -> None:
    name, ids, base = scene.name, scene.ids, scene.base_size
    width = len(name) + 13

    def line(verdict: str, reference: str, role: str, size: int, note: str) -> str:
        short = ids[role][:19]
        return f"  {verdict:<7}  {reference:<{width}}  {short}  {size_text(base + size):>8}  {note}"

    reference = {
        "fc": final_reference(name, scene.current),
        **{f"f{number}": final_reference(name, scene.locks[number]) for number in "123"},
        **{f"d{number}": f"{name}:deps-k{number}" for number in "123"},
    }
    kept = "the newest earlier lock (--keep 1)"
    listing = [
        f"{name}: current lock {scene.current[:19]}, 3 earlier locks",
        line("current", reference["fc"], "fc", 240, "the current lock"),
        line("current", reference["d2"], "d2", 200, f"the dependencies of {reference['fc']}"),
        line("keep", reference["f3"], "f3", 330, kept),
        line("keep", reference["d3"], "d3", 300, kept),
        line("remove", reference["f2"], "f2", 220, "frees 20 B"),
        line("skip", reference["f1"], "f1", 110, f"used by container {_container(scene)}"),
        line("remove", reference["d1"], "d1", 100, "frees 0 B"),
    ]

    dry = _gc(scene.project, "--dry-run", "--keep", "1")
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.splitlines() == [*listing, "dry run: would remove 2 images, freeing 20 B"]
    assert _remaining(engine_client, scene) == set(ids)

    # The engine's own count agrees: what only one image holds (`docker system df -v`).
    unique = {
        image["Id"]: image["Size"] - image["SharedSize"]
        for image in engine_client.client.df()["Images"]
        if image["Id"] in ids.values()
    }
    assert [unique[ids[role]] for role in ("f2", "d1", "f1", "d2", "fc")] == [20, 0, 10, 0, 40]

    removed = _gc(scene.project, "--keep", "1")
    assert removed.exit_code == 0, removed.output
    assert removed.stdout.splitlines() == [*listing, "removed 2 images, freed 20 B"]
    assert removed.stderr.splitlines() == [
        f"  removed {reference['f2']}",
        f"  removed {reference['d1']}",
    ]
    assert _remaining(engine_client, scene) == {"f1", "d2", "d3", "f3", "fc", "u"}
    assert engine_client.image_id(reference["d1"]) is None
    assert engine_client.image_id(reference["f2"]) is None

    # The container gone, lock 1's image goes too, and with nothing else holding its layer
    # (the dependencies image went first), it frees both of its own layers.
    engine_client.client.api.remove_container(scene.container, force=True)
    everything = _gc(scene.project)
    assert everything.exit_code == 0, everything.output
    assert everything.stdout.splitlines()[-4:] == [
        line("remove", reference["f3"], "f3", 330, "frees 30 B"),
        line("remove", reference["d3"], "d3", 300, "frees 300 B"),
        line("remove", reference["f1"], "f1", 110, "frees 110 B"),
        "removed 3 images, freed 440 B",
    ]
    assert _remaining(engine_client, scene) == {"d2", "fc", "u"}
    assert engine_client.image_id(final_reference(name, "sha256:" + "0" * 64)) == ids["u"]

    nothing = _gc(scene.project, "--dry-run")
    assert nothing.exit_code == 0, nothing.output
    assert nothing.stdout.splitlines()[-1] == "nothing to remove"


def _container(scene: Scene) -> str:
    return f"reprobuild-test-gc-{scene.name.rsplit('-', 1)[1]} (exited)"
