"""`reprobuild build` on real parts: the engine's classic builder, the normaliser, the registry.

The small images here install a stand-in `torch` wheel (a few bytes, built in the test) over the
bootstrapped Debian base from the local registry, so each build takes seconds; the real torch
image is built once, in test_torch_image.py. Package versions come from deb.debian.org.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from builder import layout, tarstream
from builder.build import build, buildrecord, normalise
from builder.build.image import exported_config, normalise_image
from builder.cli.main import cli
from builder.engine.registry import RegistryClient
from builder.engine.sdk import BuildEvent
from builder.lock import lockfile
from builder.lock.model import BaseLock, Lock, LockedPackage
from builder.reference import ImageReference
from builder.render import plan
from builder.spec.file import locate
from tests.infra import BASE, DEBIAN_MIRROR, REGISTRY
from tests.integration.conftest import unnamed_since
from tests.locks import WHEEL_TIME, make_lock, tiny_wheel

SPEC = 'name = "lab/small"\npython = "3.11"\ntorch = "2.5.1"\ncpu_only = true\n'


def base_lock() -> BaseLock:
    with RegistryClient() as client:
        resolved = client.resolve(ImageReference.parse(BASE))
    image = f"{BASE.rsplit(':', 1)[0]}@{resolved.digest}"
    return BaseLock("registry", BASE, "3.11.2", "bookworm", image=image, digest=resolved.digest)


def small_project(folder: Path, system: tuple[str, ...] = ()) -> Path:
    """A spec, its code, two wheels and a lock whose spec hash matches: ready to build."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "reprobuild.toml").write_text(SPEC)
    (folder / "train.py").write_text("print('training')\n")
    wheels = folder / "wheels"
    wheels.mkdir(exist_ok=True)
    packages = (tiny_wheel(wheels, "torch", "2.5.1"), tiny_wheel(wheels, "tinypkg", "1.0"))
    lock = make_lock(cuda=None, label="2.5.1+cpu", packages=packages, base=base_lock())
    lock = replace(lock, system=replace(lock.system, mirror=DEBIAN_MIRROR, security_mirror=None))
    if system:
        lock = replace(lock, system=replace(lock.system, requested=system, packages=system))
    write_lock(folder, lock)
    return folder


def write_lock(folder: Path, lock: Lock) -> None:
    spec_path, table, _ = locate(folder)
    lock = replace(lock, spec_hash=lockfile.spec_hash_at(spec_path, table))
    (folder / lockfile.LOCK_FILE).write_text(lockfile.dumps(lock))


def served_wheel(folder: Path, name: str, version: str, payload: bytes, url: str) -> LockedPackage:
    """A stand-in wheel in `folder`, whose files `url` serves, with `payload` as its data."""
    path = folder / f"{name}-{version}-py3-none-any.whl"
    members = {
        f"{name}/__init__.py": f"__version__ = {version!r}\n".encode(),
        f"{name}-{version}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
        ),
        f"{name}-{version}.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
        f"{name}-{version}.dist-info/RECORD": b"",
    }
    if payload:
        members[f"{name}/lib/payload.bin"] = payload
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in members.items():
            archive.writestr(zipfile.ZipInfo(member, WHEEL_TIME), data)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return LockedPackage(name, version, f"{url}/{path.name}", digest, path.stat().st_size)


def served_project(folder: Path, name: str, torch: bytes, wheels: Path, url: str) -> Path:
    """A project of SPEC named `name`, locked on a stand-in torch of `torch` bytes and a tiny
    package, their wheels in `wheels`, served at `url`; from the Debian mirror."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "reprobuild.toml").write_text(SPEC)
    (folder / "train.py").write_text("print('training')\n")
    packages = (
        served_wheel(wheels, "torch", "2.5.1", torch, url),
        served_wheel(wheels, "tinypkg", "1.0", b"", url),
    )
    lock = make_lock(cuda=None, label="2.5.1+cpu", packages=packages, base=base_lock())
    lock = replace(
        lock,
        system=replace(lock.system, mirror=DEBIAN_MIRROR, security_mirror=None),
        resolution={**lock.resolution, "name": name},
    )
    write_lock(folder, lock)
    return folder


class Recorder:
    def __init__(self) -> None:
        self.notes: list[str] = []
        self.events: list[BuildEvent] = []
        self.sent: list[int] = []  # bytes of context sent so far, per report

    def progress(self) -> build.Progress:
        return build.Progress(
            self.notes.append, self.events.append, lambda *_: None, self.sent.append
        )


def build_project(client: Any, project: Path, cache: Path, no_cache: bool = True) -> Any:
    recorder = Recorder()
    record = build.build_lock(
        client,
        lockfile.read_current(project),
        wheel_cache=cache,
        no_cache=no_cache,
        push=None,
        progress=recorder.progress(),
    )
    return record, recorder


def made(record: buildrecord.BuildRecord) -> list[str]:
    """The names a build left in the engine: the image and the image of its deps stage."""
    return [record.image, *([record.dependencies] if record.dependencies else [])]


@pytest.fixture
def cleanup(engine_client: Any) -> Iterator[list[str]]:
    """Names of images a test made; removed afterwards, with the untagged images its builds
    left (only those: never an image the engine held before the test)."""
    before = {image["Id"] for image in engine_client.client.api.images(all=True)}
    names: list[str] = []
    yield names
    for name in names:
        engine_client.remove_image(name)
    for _ in range(5):  # a step image goes once the images built on it have gone
        for image_id in unnamed_since(engine_client, before):
            engine_client.remove_image(image_id)


def test_clean_rebuilds_give_one_image_id_and_one_manifest_digest(
    tmp_path: Path,
    engine_client: Any,
    test_base: str,
    cleanup: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An empty reprobuild cache: the first build reads every layer from an export, the second
    # reads none (all known clean by diff ID); both paths must give one image.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    project = small_project(tmp_path / "project", system=("libgomp1=12.2.0-14+deb12u1",))
    cache = tmp_path / "cache"
    first, first_run = build_project(engine_client, project, cache)
    cleanup += made(first)
    pushed_first = build.push_image(engine_client, first, f"{REGISTRY}/test/small:one", print)
    second, second_run = build_project(engine_client, project, cache)
    assert second.image_id == first.image_id
    assert second.layers == first.layers
    # The engine builds two parts of the deps stage (the system stage, the steps after the Python
    # layers), each read once; the Python layers are written by reprobuild, never read back.
    assert first_run.notes.count("normalising: reading the built image") == 2
    assert "normalising: reading the built image" not in second_run.notes
    # Delete what the builds made and the base, then build once more: the base is pulled again
    # by digest and every step runs from nothing (builds keep no cache images).
    assert first.dependencies is not None
    for name in (first.image, f"{REGISTRY}/test/small:one", first.dependencies, first.base):
        engine_client.remove_image(name)
    assert not engine_client.has_image(first.base)
    third, _ = build_project(engine_client, project, cache)
    cleanup += [*made(third), f"{REGISTRY}/test/small:two", f"{REGISTRY}/test/small:three"]
    assert third.image_id == first.image_id
    pushed_again = build.push_image(engine_client, third, f"{REGISTRY}/test/small:two", print)
    pushed_twice = build.push_image(engine_client, third, f"{REGISTRY}/test/small:three", print)
    assert pushed_again.manifest_digest == pushed_first.manifest_digest
    assert pushed_twice.manifest_digest == pushed_first.manifest_digest
    assert first.normalisation["rewritten"] == []  # the rendered Dockerfile writes clean layers
    config = engine_client.client.api.inspect_image(first.image_id)
    assert config["Created"] == "2026-11-22T00:00:00Z"
    # The engine shows the fields the normaliser dropped as empty: no container ID, no hostname.
    assert config["Container"] == "" and config["DockerVersion"] == ""
    assert config["ContainerConfig"]["Hostname"] == "" and config["Config"]["Hostname"] == ""
    assert first.base_layers == 1 and len(first.layers) == 8


def test_code_only_change_rebuilds_one_layer(
    tmp_path: Path, engine_client: Any, test_base: str, cleanup: list[str]
) -> None:
    project = small_project(tmp_path / "project")
    cache = tmp_path / "cache"
    before, _ = build_project(engine_client, project, cache)
    cleanup += made(before)
    (project / "train.py").write_text("print('training, changed')\n")
    after, recorder = build_project(engine_client, project, cache, no_cache=False)
    pairs = zip(before.layers, after.layers, strict=True)
    changed = [index for index, (old, new) in enumerate(pairs) if old != new]
    assert changed == [len(before.layers) - 1]
    steps = {event.step for event in recorder.events if not event.line}
    cached = {event.step for event in recorder.events if event.cached}
    runs = [e.instruction for e in recorder.events if not e.line and e.step not in cached]
    # The build's own image is removed once normalised, so the payload is copied again (bytes
    # reprobuild wrote: the same layer); nothing runs.
    copies = ("COPY code/", "COPY reprobuild/image/")
    assert all(not i.startswith(("RUN", "COPY")) or i.startswith(copies) for i in runs)
    assert len(steps) == recorder.events[0].steps
    # The deps stage was not built again, the wheels were not sent (the context sent is the
    # payload and the code: kilobytes, the smoke payload's sources most of them), and no layer
    # was read back from an export: the payload and the code are copied from the context, and
    # every other layer was checked before.
    assert f"dependencies: {before.dependencies}, built before" in recorder.notes
    assert recorder.sent[-1] < 300_000
    assert "normalising: reading the built image" not in recorder.notes
    assert after.dependencies == before.dependencies and after.base_layers == before.base_layers


def test_a_build_leaves_only_the_images_it_names(
    tmp_path: Path, engine_client: Any, test_base: str, cleanup: list[str]
) -> None:
    """No install stage, no step images, no copy of a Python layer: the engine gains the image
    and its dependencies image, and only the bytes of their new layers."""
    project = small_project(tmp_path / "project", system=("libgomp1=12.2.0-14+deb12u1",))
    before = {image["Id"] for image in engine_client.client.api.images(all=True)}
    record, _ = build_project(engine_client, project, tmp_path / "cache")
    cleanup += made(record)
    after = {image["Id"] for image in engine_client.client.api.images(all=True)}
    assert record.dependencies is not None
    base = engine_client.image_id(record.base)  # pulled again if an earlier test removed it
    assert after - before - {base} == {record.image_id, engine_client.image_id(record.dependencies)}
    assert (
        engine_client.client.api.inspect_image(record.dependencies)["Config"]["Labels"][
            "dev.reprobuild.lock"
        ]
        == record.lock
    )


def test_a_relock_keeps_the_layers_whose_inputs_did_not_change(
    tmp_path: Path, engine_client: Any, test_base: str, cleanup: list[str]
) -> None:
    """A re-lock that adds a package (and takes a later archive snapshot) keeps the venv, torch,
    user and payload layers: their diff IDs do not move, and the torch layer is neither installed
    nor sent again. Only the closure and the code (which holds the lock) change."""
    project = small_project(tmp_path / "project", system=("libgomp1=12.2.0-14+deb12u1",))
    cache = tmp_path / "cache"
    before, _ = build_project(engine_client, project, cache, no_cache=False)
    cleanup += made(before)
    lock = lockfile.read_current(project).lock
    extra = tiny_wheel(project / "wheels", "extrapkg", "2.0")
    later = replace(lock.system, snapshot="2026-12-01T00:00:00Z")
    packages = (*lock.python.packages, extra)
    write_lock(project, replace(lock, python=replace(lock.python, packages=packages), system=later))
    after, recorder = build_project(engine_client, project, cache, no_cache=False)
    cleanup += made(after)
    assert after.lock != before.lock and after.dependencies != before.dependencies
    own = before.base_layers
    same = [a == b for a, b in zip(before.layers[own:], after.layers[own:], strict=True)]
    # venv, torch, the rest of the closure, system packages, user and hook, payload, code
    assert same == [True, True, False, False, True, True, False]
    assert any(note.startswith("dependencies: torch, layer ") for note in recorder.notes)
    assert "dependencies: installing torch (1 wheel)" not in recorder.notes
    assert "dependencies: installing The other dependencies (2 wheels)" in recorder.notes


def test_a_deps_name_moved_to_another_image_is_built_again(
    tmp_path: Path, engine_client: Any, test_base: str, cleanup: list[str]
) -> None:
    project = small_project(tmp_path / "project")
    before, _ = build_project(engine_client, project, tmp_path / "cache")
    cleanup += made(before)
    assert before.dependencies is not None
    engine_client.tag(before.base, before.dependencies)  # the name now names the base
    after, recorder = build_project(engine_client, project, tmp_path / "cache", no_cache=False)
    assert "building the dependencies (stage deps)" in recorder.notes
    assert after.image_id == before.image_id


def test_the_two_pass_build_is_the_normalised_one_pass_build_of_its_dockerfile(
    tmp_path: Path, engine_client: Any, test_base: str, cleanup: list[str]
) -> None:
    """`reprobuild build` builds the deps stage, then the image on it; a plain build of the whole
    rendered Dockerfile, normalised, is the same image. Its config is written from the engine's
    inspect and history; here it is also derived the other way, by editing the raw config of an
    export, and the two agree byte for byte."""
    project = small_project(tmp_path / "project")
    record, _ = build_project(engine_client, project, tmp_path / "cache")
    cleanup += made(record)
    context_dir = project / ".reprobuild" / "context"
    built = engine_client.build(tarstream.folder_stream(context_dir), lambda _: None, False)
    epoch = plan.plan(lockfile.read_current(project).lock, record.lock).epoch
    one_pass = normalise_image(
        engine_client,
        built,
        parent=record.base,
        epoch=epoch,
        reference="lab/small:one-pass",
        note=lambda _: None,
        rescan=True,
    )
    cleanup.append("lab/small:one-pass")
    assert one_pass.image_id == record.image_id
    assert one_pass.layers == record.layers and one_pass.rewritten == ()
    raw = json.loads(exported_config(engine_client, built))
    base_history = len(engine_client.client.api.history(record.base))
    for key in ("container", "container_config", "docker_version"):
        del raw[key]
    del raw["config"]["Hostname"], raw["config"]["Image"]
    raw["created"] = normalise.iso_time(epoch)
    for entry in raw["history"][base_history:]:
        entry["created"] = raw["created"]
    # The Python layers, copied from the install stage, are written in the canonical form (the
    # form reprobuild writes them in from the wheels), and their history names them by it.
    canonical = [layer.diff_id for layer in record.layers]
    assert raw["rootfs"]["diff_ids"] != canonical
    raw["rootfs"]["diff_ids"] = canonical
    adding = [entry for entry in raw["history"] if not entry.get("empty_layer")]
    for entry, diff_id in zip(adding, canonical, strict=True):
        if normalise.STAGE_COPY.search(entry["created_by"]):
            entry["created_by"] = normalise.layer_copy(diff_id)
    edited = json.dumps(raw, sort_keys=True, separators=(",", ":")).encode()
    assert f"sha256:{hashlib.sha256(edited).hexdigest()}" == record.image_id


def test_noise_from_a_template_override_is_normalised_away(
    tmp_path: Path, engine_client: Any, test_base: str, cleanup: list[str]
) -> None:
    project = small_project(tmp_path / "project")
    override = project / "reprobuild-templates"
    override.mkdir()
    packaged = Path(__file__).parents[2] / "templates" / "Dockerfile.j2"
    noisy_step = (
        "RUN touch /opt/built-at && mkdir -p /root/.cache && date > /root/.cache/stamp"
        " && python3 -m compileall -q /opt/reprobuild/payload\n"
        # Two steps that redate the same files to the epoch give two clean layers with one diff
        # ID above the noisy one: the export holds that layer once.
        + "RUN touch -d @{{ plan.epoch }} /opt /opt/reprobuild/expect.json\n"
        * 2
    )
    text = packaged.read_text().replace("WORKDIR {{ code }}\n", noisy_step + "WORKDIR {{ code }}\n")
    (override / "Dockerfile.j2").write_text(text)
    cache = tmp_path / "cache"
    first, _ = build_project(engine_client, project, cache)
    cleanup += made(first)
    second, _ = build_project(engine_client, project, cache)
    assert second.image_id == first.image_id
    diff_ids = [layer.diff_id for layer in first.layers]
    assert len(diff_ids) - len(set(diff_ids)) == 1
    rewritten = first.normalisation["rewritten"]
    assert "opt/built-at: dated after the lock's epoch" in rewritten
    # One .pyc per payload module plus 7 other entries; the record keeps the first five.
    payload = len(list((Path(__file__).parents[2] / "builder" / "smoke").glob("*.py")))
    assert rewritten[-1] == f"... {payload + 7 - 5} more"
    assert any(line.endswith(".pyc: build-time noise") for line in rewritten)


def test_failing_step_names_the_step_command_and_output_and_writes_no_record(
    tmp_path: Path, engine_client: Any, test_base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = small_project(tmp_path / "project", system=("libgomp1=0.0-does-not-exist",))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    result = CliRunner().invoke(cli, ["-C", str(project), "build", "--plain"])
    assert result.exit_code == 1, result.output
    message = str(result.exception) if result.exception else result.output
    assert "step 2/4 failed: RUN" in message and "apt-get install" in message
    assert "E: Version '0.0-does-not-exist' for 'libgomp1' was not found" in message
    assert not (project / layout.RECORD_FILE).exists()


def test_build_command_writes_the_record(
    tmp_path: Path, engine_client: Any, test_base: str, cleanup: list[str], monkeypatch: Any
) -> None:
    project = small_project(tmp_path / "project")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    # apptainer cannot be installed here: a stand-in "builds" the SIF as a copy of the definition.
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "apptainer").write_text(
        '#!/bin/sh\nprintf "%s\\n" "$@" > "$(dirname "$0")/args"\n'
        'echo "INFO:    Starting build..."\ncp "$4" "$3"\n'
    )
    (tools / "apptainer").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    target = f"{REGISTRY}/test/record:v1"
    argv = ["-C", str(project), "build", "--quiet", "--push", target, "--format", "sif"]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, result.output
    record = buildrecord.read(project)
    cleanup += [*made(record), target]
    assert record.image.startswith("lab/train:")
    assert result.output.startswith(f"built {record.image}\n  image ID {record.image_id} (")
    assert record.pushed == f"{REGISTRY}/test/record@{record.manifest_digest}"
    assert f"  pushed {record.pushed}; reprobuild.def now bootstraps from it\n" in result.output
    definition = project / ".reprobuild" / "context" / "reprobuild.def"
    assert definition.read_text().startswith(f"Bootstrap: docker\nFrom: {record.pushed}\n")
    sif = project / (record.image.replace("/", "-").replace(":", "-") + ".sif")
    assert sif.read_text() == definition.read_text()
    assert (tools / "args").read_text().splitlines() == [
        "build",
        "--force",
        str(sif.with_name(f".{sif.name}.partial")),
        str(definition),
    ]
    digest = hashlib.sha256(sif.read_bytes()).hexdigest()
    assert f"  SIF {sif} (0.00 GB, sha256 {digest})\n" in result.output
    assert record.lock == lockfile.file_digest(project / lockfile.LOCK_FILE)
    assert record.engine_version == engine_client.version()
    assert [layer.diff_id for layer in record.layers] == engine_client.client.api.inspect_image(
        record.image
    )["RootFS"]["Layers"]
    labels = engine_client.client.api.inspect_image(record.image)["Config"]["Labels"]
    assert labels["dev.reprobuild.lock"] == record.lock


def test_no_engine_is_one_clear_paragraph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = small_project(tmp_path / "project")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no.sock")
    result = CliRunner().invoke(cli, ["-C", str(project), "build"])
    assert result.exit_code == 1
    assert str(result.exception) == (
        f"no Docker engine answers at unix://{tmp_path}/no.sock ({tmp_path}/no.sock: No such file "
        "or directory). Start one: on Debian `apt-get install docker.io` then `dockerd &` (or "
        "`systemctl start docker`); or set DOCKER_HOST to a running engine."
    )
    assert not (project / layout.RECORD_FILE).exists()
