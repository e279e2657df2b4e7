"""The dependencies image of the packaged template, assembled: the engine builds the stage the
Python layers go on and the steps after them; reprobuild writes the Python layers between them
from the lock's verified wheels (build/pylayer.py) and loads the whole image in one `docker
load`.

So no wheel is sent to the engine, no install stage or copy of a layer is left in it, and a
Python layer the engine already holds at the same place (another lock's, another project's) is
neither made nor sent again. The result is the image a plain `docker build` of the rendered
Dockerfile's `deps` stage gives once normalised: the same layers (the Python ones in the
canonical form normalisation writes them in) and the same config and history.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from builder import files, layout, scratch, tarstream
from builder.build import imagecache, normalise, pylayer
from builder.build.image import Normalised, build_normalised, confirm_loaded, exported_config
from builder.engine.sdk import BuildEvent, Engine
from builder.errors import NormaliseError
from builder.render import plan
from builder.render.templates import DockerfileStages

Note = Callable[[str], None]


@dataclass(frozen=True)
class Steps:
    """What the engine built: the system stage and the steps after the Python layers, each
    normalised and loaded under a name this assembly removes when done."""

    system: Normalised
    system_reference: str
    finish: Normalised
    finish_reference: str


def assemble(
    engine: Engine,
    build_plan: plan.BuildPlan,
    stages: DockerfileStages,
    reference: str,
    *,
    wheels: pylayer.Wheels,
    no_cache: bool,
    note: Note,
    event: Callable[[BuildEvent], None],
) -> Normalised:
    """Build the dependencies image as `reference`, its Python layers made from `wheels`.
    Everything the engine made on the way (the two builds with their steps, as each is
    normalised; the two normalised images, the newer first) is removed, whatever happens."""
    assert stages.system is not None and stages.finish is not None  # the packaged template
    made: list[str] = []
    try:
        steps = _engine_steps(
            engine, build_plan, stages, no_cache=no_cache, made=made, note=note, event=event
        )
        with ExitStack() as stack:
            root = _workroot()
            stack.enter_context(files.writing(root, WORKDIR_REMEDY, verb="write in", within=root))
            workdir = Path(stack.enter_context(_workdir()))
            image_id = _load(
                engine,
                build_plan,
                steps,
                reference,
                wheels,
                no_cache=no_cache,
                workdir=workdir,
                stack=stack,
                note=note,
            )
    finally:
        for name in reversed(made):
            engine.remove_image(name)
    return Normalised(
        image_id,
        (),
        steps.system.rewritten + steps.finish.rewritten,
        steps.system.scanned_bytes + steps.finish.scanned_bytes,
    )


def _engine_steps(
    engine: Engine,
    build_plan: plan.BuildPlan,
    stages: DockerfileStages,
    *,
    no_cache: bool,
    made: list[str],
    note: Note,
    event: Callable[[BuildEvent], None],
) -> Steps:
    assert stages.system is not None and stages.finish is not None
    system_reference = f"{build_plan.name}:system-{stages.key}"
    finish_reference = f"{build_plan.name}:finish-{stages.key}"
    note("dependencies: the system stage")
    system = build_normalised(
        engine,
        _dockerfile(stages.system),
        event=event,
        no_cache=no_cache,
        parent=build_plan.base,
        epoch=build_plan.epoch,
        reference=system_reference,
        note=note,
    )
    made.append(system_reference)
    note("dependencies: the steps after the Python layers")
    finish = build_normalised(
        engine,
        _dockerfile(f"FROM {system_reference}\n{stages.finish}"),
        event=event,
        no_cache=no_cache,
        parent=system_reference,
        epoch=build_plan.epoch,
        reference=finish_reference,
        note=note,
    )
    made.append(finish_reference)
    return Steps(system, system_reference, finish, finish_reference)


def _dockerfile(text: str) -> Iterator[bytes]:
    """A build context that holds only a Dockerfile."""
    data = text.encode()
    yield from tarstream.member(tarstream.file_info("Dockerfile", len(data)), io.BytesIO(data))
    yield tarstream.END


WORKDIR_REMEDY = (
    "set XDG_CACHE_HOME to a folder on a filesystem with room (the Python layers are made "
    "under it, as large as the installed packages)."
)


def _workroot() -> Path:
    return files.cache_root() / "tmp"


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    """Where the Python layers' trees are installed: beside the wheel cache (on disk, not a
    tmpfs: the torch stack is gigabytes). What killed builds left there goes first."""
    root = _workroot()
    root.mkdir(parents=True, exist_ok=True)
    scratch.sweep(root)
    with scratch.folder(root, "layers-") as folder:
        yield folder


@dataclass
class _Layer:
    """One layer of the assembled image: held by the engine (no file), made here as the archive
    is sent (installed, streamed, its tree then deleted), or taken from the finish build's
    export (a file)."""

    diff_id: str
    make: Callable[[], pylayer.MadeLayer] | None = None
    made: pylayer.MadeLayer | None = None
    handle: IO[bytes] | None = None
    size: int = 0


def _load(
    engine: Engine,
    build_plan: plan.BuildPlan,
    steps: Steps,
    reference: str,
    wheels: pylayer.Wheels,
    *,
    no_cache: bool,
    workdir: Path,
    stack: ExitStack,
    note: Note,
) -> str:
    system_doc = _config(engine, steps.system.image_id, note)
    finish_doc = _config(engine, steps.finish.image_id, note)
    below = list(system_doc["rootfs"]["diff_ids"])
    python = _python_layers(
        engine,
        build_plan,
        below,
        wheels=wheels,
        no_cache=no_cache,
        workdir=workdir,
        note=note,
    )
    finish_ids = list(finish_doc["rootfs"]["diff_ids"])[len(below) :]
    finish = _finish_layers(engine, steps.finish.image_id, finish_ids, workdir, stack)
    layers = [_Layer(diff_id) for diff_id in below] + python + finish
    inspected = engine.inspect_image(steps.finish.image_id)
    own_history = (finish_doc.get("history") or [])[len(system_doc.get("history") or []) :]
    configs: list[bytes] = []

    def config() -> bytes:
        copies = [normalise.Step(normalise.layer_copy(layer.diff_id), "", True) for layer in python]
        after = [
            normalise.Step(
                entry.get("created_by", ""), entry.get("comment", ""), not entry.get("empty_layer")
            )
            for entry in own_history
        ]
        diff_ids = [layer.diff_id for layer in layers]
        document = normalise.config(
            system_doc, inspected, copies + after, build_plan.epoch, diff_ids
        )
        configs.append(document)
        return document

    note(f"dependencies: loading {reference} into the engine")
    engine.load_stream(_archive(layers, config, reference), "the dependencies image")
    image_id = confirm_loaded(engine, reference, configs[0])
    for layer in python:
        if layer.made is not None:
            pylayer.keep(layer.made.key, pylayer.KnownLayer(layer.diff_id, layer.made.files_size))
    return image_id


def _config(engine: Engine, image_id: str, note: Note) -> dict[str, Any]:
    """The config of an image normalisation loaded: kept by it, else (a cache that could not be
    written) read from an export."""
    raw = imagecache.config(image_id, note) or exported_config(engine, image_id)
    document: dict[str, Any] = json.loads(raw)
    return document


def _python_layers(
    engine: Engine,
    build_plan: plan.BuildPlan,
    below: list[str],
    *,
    wheels: pylayer.Wheels,
    no_cache: bool,
    workdir: Path,
    note: Note,
) -> list[_Layer]:
    """Each Python layer: held where the engine already has it on the same layers below (it then
    needs no file), else made from the wheels. Once one is made, every one above it is made too:
    the engine holds a layer only on the layers it was loaded on."""
    # Python layers are only ever loaded into dependencies images, which carry the lock label.
    chains = [image.layers for image in engine.images(label=layout.LOCK_LABEL)]
    chain = list(below)
    layers: list[_Layer] = []
    making = no_cache
    for layer in build_plan.layers:
        key = pylayer.layer_key(build_plan, layer)
        known = pylayer.known(key, note)
        if not making and known is not None and _held(chains, [*chain, known.diff_id]):
            note(f"dependencies: {layer.name}, layer {known.diff_id[7:19]}, held by the engine")
            layers.append(_Layer(known.diff_id))
            chain.append(known.diff_id)
            continue
        making = True
        layers.append(_Layer("", make=_maker(build_plan, layer, wheels, workdir, note)))
    return layers


def _maker(
    build_plan: plan.BuildPlan,
    layer: plan.PythonLayer,
    wheels: pylayer.Wheels,
    workdir: Path,
    note: Note,
) -> Callable[[], pylayer.MadeLayer]:
    def make() -> pylayer.MadeLayer:
        count = len(layer.packages)
        note(f"dependencies: installing {layer.name} ({count} wheel{'' if count == 1 else 's'})")
        return pylayer.make(build_plan, layer, wheels, workdir)

    return make


def _held(chains: list[tuple[str, ...]], chain: list[str]) -> bool:
    wanted = tuple(chain)
    return any(layers[: len(wanted)] == wanted for layers in chains)


def _finish_layers(
    engine: Engine, image_id: str, diff_ids: list[str], workdir: Path, stack: ExitStack
) -> list[_Layer]:
    """The finish build's own layers, as files, from its export (they go on other layers below
    in the assembled image, so the engine needs their bytes again)."""
    wanted = set(diff_ids)
    found: dict[str, tuple[Path, int]] = {}
    with engine.saved_members(image_id) as archive:
        for index, member in enumerate(archive):
            if not (member.isreg() and _is_layer(member.name)):
                continue
            path = workdir / f"finish-{index}.tar"
            with path.open("wb") as target:
                writer = tarstream.copy_hashed(tarstream.data(archive, member), target)
            diff_id = f"sha256:{writer.digest.hexdigest()}"
            if diff_id in wanted:
                found[diff_id] = (path, writer.size)
            else:
                path.unlink()
    missing = [diff_id for diff_id in diff_ids if diff_id not in found]
    if missing:
        raise NormaliseError(f"the export of {image_id} lacks its layers {missing}")
    return [
        _Layer(d, handle=stack.enter_context(found[d][0].open("rb")), size=found[d][1])
        for d in diff_ids
    ]


def _is_layer(name: str) -> bool:
    return name.endswith("/layer.tar") or name.startswith("blobs/sha256/")


def _archive(layers: list[_Layer], config: Callable[[], bytes], reference: str) -> Iterator[bytes]:
    """A `docker load` archive with the layers first (a made layer's diff ID is known once it
    is written), then the config and the manifest; the engine reads the manifest after it has
    the whole archive. A held layer has no file."""
    names = [f"layers/{index:03d}.tar" for index in range(len(layers))]
    for name, layer in zip(names, layers, strict=True):
        if layer.make is not None:
            layer.made = made = layer.make()
            size = made.tar_size
            yield tarstream.file_info(name, size).tobuf(
                tarfile.PAX_FORMAT, "utf-8", "surrogateescape"
            )
            yield from made.stream()
            layer.diff_id = made.diff_id
            pylayer.discard(made)
            if size % tarfile.BLOCKSIZE:
                yield tarfile.NUL * (tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE)
        elif layer.handle is not None:
            yield from tarstream.member(tarstream.file_info(name, layer.size), layer.handle)
    config_bytes = config()
    config_name = f"{hashlib.sha256(config_bytes).hexdigest()}.json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [reference], "Layers": names}])
    yield from tarstream.member(
        tarstream.file_info(config_name, len(config_bytes)), io.BytesIO(config_bytes)
    )
    yield from tarstream.member(
        tarstream.file_info("manifest.json", len(manifest)), io.BytesIO(manifest.encode())
    )
    yield tarstream.END
