"""`reprobuild build` interrupted in each of its phases (Ctrl-C, SIGKILL), damaged cache entries,
and two builds of one project at once: on the real engine and registry.

Every build here is the command as users run it (`reprobuild -C PROJECT build --plain`), a
subprocess whose progress lines are read as they come. The signal goes when the line that opens
the phase appears; where the phase waits on the network (the lock's index, a wheel download, the
registry), a local stand-in holds that connection open, so the signal lands inside the phase
however fast the machine is, and a phase that ended before the signal fails the test (a line of a
later phase was printed) instead of passing unnoticed.

After each interruption: exit code 130 and "interrupted" for Ctrl-C, no traceback; no record
written, or the previous one unchanged; no name of this project (or of the push) on an image
other than the complete ones; no cache entry that claims work that did not finish; no temporary
file in the project; no container of the build left. Then the same command succeeds and gives
the image ID of an uninterrupted build of the same lock (built once per session), and leaves
nothing behind: no scratch files, no unnamed images of this project.

The project is the small spec of test_build.py (a stand-in torch wheel over the bootstrapped
Debian base), its wheels served over HTTP from this session, under its own name so that no other
test touches its images.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import re
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from builder import layout, tarstream
from builder.build import buildrecord, imagecache, normalise, projectlock
from builder.build.image import build_normalised
from builder.engine.registry import RegistryClient
from builder.engine.sdk import BuildEvent
from builder.errors import BuildFailed
from builder.lock import lockfile
from builder.reference import ImageReference
from builder.render import wheelhouse
from tests.infra import REGISTRY
from tests.integration.test_build import SPEC, served_project
from tests.standins import WAIT_S, BuildRun

NAME = "reprobuild-test/interrupt"
TITLE = f"{layout.TITLE_LABEL}={NAME}"
TORCH = "torch-2.5.1-py3-none-any.whl"
TORCH_PAYLOAD = 30_000_000  # bytes of the stand-in torch: a load and an install that take a while
PROJECT_FILES = ("reprobuild.toml", "train.py", lockfile.LOCK_FILE)
NO_CACHE = ("--no-cache",)
FINISH = "dependencies: the steps after the Python layers"


# Local stand-ins that hold a connection open.


class WheelServer:
    """The lock's wheels over HTTP. `hold_next` makes the next download of a file send half of it
    and wait (`held` is set then) until `release`, then break off."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.holding: str | None = None
        self.held = threading.Event()
        self.released = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                name = self.path.lstrip("/")
                path = server.folder / name
                if "/" in name or not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if server.holding == name:
                    server.holding = None
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    server.held.set()
                    server.released.wait(WAIT_S)
                    self.close_connection = True
                    return
                self.wfile.write(data)

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def hold_next(self, name: str) -> None:
        self.held.clear()
        self.released.clear()
        self.holding = name

    def release(self) -> None:
        self.holding = None
        self.released.set()

    def close(self) -> None:
        self.release()
        self.http.shutdown()
        self.http.server_close()


class Relay:
    """A TCP relay on 127.0.0.1 to `target` (None: nowhere, as a proxy that never answers). A
    connection whose client sends `hold_on` (b"": at once) is held from there on: nothing more
    passes, `held` is set, until `release`, which closes the held connections and lets later
    ones through."""

    def __init__(self, target: tuple[str, int] | None, hold_on: bytes = b"") -> None:
        self.target = target
        self.hold_on: bytes | None = hold_on
        self.held = threading.Event()
        self.released = threading.Event()
        self.sockets: list[socket.socket] = []  # open: shut down on release
        self.closing: list[socket.socket] = []  # every one made: closed on close
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.sockets.append(client)
            self.closing.append(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        if self.target is None:
            self._hold()
            return
        try:
            upstream = socket.create_connection(self.target)
        except OSError:
            return
        self.sockets.append(upstream)
        self.closing.append(upstream)
        back = threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True)
        back.start()
        self._pump(client, upstream, True)
        back.join()

    def _pump(self, source: socket.socket, sink: socket.socket, watched: bool) -> None:
        try:
            while data := source.recv(65536):
                if watched and self.hold_on is not None and self.hold_on in data:
                    self._hold()
                    break
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def _hold(self) -> None:
        self.held.set()
        self.released.wait(WAIT_S)

    def release(self) -> None:
        """Close what is held; later connections pass."""
        self.hold_on = None
        self.released.set()
        for held in list(self.sockets):
            with contextlib.suppress(OSError):
                held.shutdown(socket.SHUT_RDWR)
        self.sockets.clear()

    def close(self) -> None:
        self.release()
        self.listener.close()
        for connection in self.closing:
            connection.close()


# A build as a subprocess, read line by line.


def group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


# The project, its wheels and the reference build.


@dataclass(frozen=True)
class Reference:
    """The uninterrupted build every interrupted one must end at."""

    project: Path  # its spec, code and lock: each test's project is a copy
    cache: Path  # the reprobuild cache it filled ($XDG_CACHE_HOME)
    record: buildrecord.BuildRecord
    deps_id: str
    lock: lockfile.CurrentLock

    @property
    def diff_ids(self) -> set[str]:
        return {layer.diff_id for layer in self.record.layers}


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WheelServer]:
    server = WheelServer(tmp_path_factory.mktemp("served-wheels"))
    yield server
    server.close()


def environment(root: Path, cache: Path, **extra: str) -> dict[str, str]:
    (root / "tmp").mkdir(exist_ok=True)
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "TMPDIR": str(root / "tmp"), **extra}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        if name not in extra:
            env.pop(name, None)
    return env


@pytest.fixture(scope="session")
def reference(
    tmp_path_factory: pytest.TempPathFactory,
    wheels: WheelServer,
    engine_client: Any,
    test_base: str,
) -> Iterator[Reference]:
    forget_the_project_images(engine_client)  # what an aborted session of these tests left
    root = tmp_path_factory.mktemp("interrupt-reference")
    payload = random.Random(7).randbytes(TORCH_PAYLOAD)
    project = served_project(root / "project", NAME, payload, wheels.folder, wheels.url)
    cache = root / "cache"
    with BuildRun(project, environment(root, cache)) as run:
        assert run.finish() == 0, run.output
    record = buildrecord.read(project)
    assert record.dependencies is not None
    deps_id = engine_client.image_id(record.dependencies)
    assert deps_id is not None
    yield Reference(project, cache, record, deps_id, lockfile.read_current(project))
    forget_the_project_images(engine_client)


def forget_the_project_images(engine_client: Any) -> None:
    """Remove every image of this file's own project (no other test builds one): the untagged
    ones that carry its label (a killed build's steps, newest first: a step goes once the steps
    built on it have), then the named ones by ID, with the push names these tests gave them."""
    for _ in range(10):
        unnamed = [
            image["Id"]
            for image in engine_client.client.api.images(all=True, filters={"label": TITLE})
            if not image.get("RepoTags") or image["RepoTags"] == ["<none>:<none>"]
        ]
        for image_id in unnamed:
            engine_client.remove_image(image_id)
        if not unnamed:
            break
    for image_id in set(project_tags(engine_client, NAME).values()):
        engine_client.remove_image(image_id)


@dataclass
class Setup:
    root: Path
    project: Path
    cache: Path
    env: dict[str, str]


def set_up(tmp_path: Path, reference: Reference, *, warm: bool, **extra: str) -> Setup:
    """A copy of the reference's project; a cache of its own, empty or (`warm`) holding what the
    reference's normalisation read (configs, layers found clean), not its images' names nor its
    Python layers, so that every phase still runs."""
    project = tmp_path / "project"
    project.mkdir()
    for name in PROJECT_FILES:
        shutil.copy2(reference.project / name, project / name)
    cache = tmp_path / "cache"
    if warm:
        for part in ("configs", "clean"):
            shutil.copytree(
                reference.cache / "reprobuild" / "images" / part,
                cache / "reprobuild" / "images" / part,
            )
    return Setup(tmp_path, project, cache, environment(tmp_path, cache, **extra))


# What an interrupted build may leave, and what it must not.


def project_tags(engine_client: Any, repository: str) -> dict[str, str]:
    """Each name of `repository` in the engine, with the image it names."""
    found = {}
    for image in engine_client.client.api.images(name=repository):
        for tag in image.get("RepoTags") or []:
            if tag.startswith(f"{repository}:"):
                found[tag] = image["Id"]
    return found


def assert_only_complete_images_named(
    engine_client: Any, reference: Reference, *, killed: bool = False
) -> None:
    """Every name of the project names the image or the dependencies image of the lock, as an
    uninterrupted build made them: none names a half-built image, none has moved. A killed build
    may leave the names of the two normalised parts of the dependencies image (the next build
    removes them); each names a complete, normalised image, all of whose layers are the lock's."""
    complete = {reference.record.image: reference.record.image_id}
    complete[reference.record.dependencies or ""] = reference.deps_id
    created = engine_client.client.api.inspect_image(reference.deps_id)["Created"]
    parts = (f"{NAME}:system-", f"{NAME}:finish-")
    for tag, image_id in project_tags(engine_client, NAME).items():
        if killed and tag.startswith(parts):
            image = engine_client.client.api.inspect_image(image_id)
            assert image["Created"] == created, tag
            assert set(image["RootFS"]["Layers"]) <= reference.diff_ids, tag
        else:
            assert complete.get(tag) == image_id, f"{tag} names {image_id}"


def assert_no_unnamed_images_of_the_project(engine_client: Any, reference: Reference) -> None:
    labelled = engine_client.client.api.images(all=True, quiet=True, filters={"label": TITLE})
    assert set(labelled) == {reference.record.image_id, reference.deps_id}


def containers_created(engine_client: Any, since: float) -> list[str]:
    events = engine_client.client.api.events(
        since=int(since) - 1,
        until=int(time.time()) + 1,
        filters={"type": "container", "event": "create"},
        decode=True,
    )
    return [event["id"] for event in events]


def assert_no_build_containers_left(engine_client: Any, since: float) -> None:
    """The build step containers made since `since` all go (the engine cancels a build whose
    client went, and removes its containers): none stays behind, stopped or running. Other
    tests' builds may make such containers too; theirs go as well, within seconds."""
    left: list[str] = []
    deadline = time.monotonic() + 60
    for container in containers_created(engine_client, since):
        while time.monotonic() < deadline:
            found = engine_client.client.api.containers(all=True, filters={"id": container})
            if not found:
                break
            if "reprobuild-step" not in " ".join(found[0].get("Command", "").split()):
                break  # not a build step of reprobuild's Dockerfiles
            time.sleep(0.5)
        else:
            left.append(container)
    assert left == [], f"build containers left behind: {left}"


class CacheAudit:
    """What each entry of the reprobuild cache claims, held against the complete build: a wheel
    its lock's sha256 (and a stamp that still matches its wheel, only for a wheel that hashes
    so), a config its ID, a layer found clean one of the complete image's layers, a name the
    image built under it, a Python layer one of the image's layers."""

    def __init__(self, reference: Reference) -> None:
        self.reference = reference
        self.wanted = {p.filename: p.sha256 for p in reference.lock.lock.python.packages}
        record = reference.record
        deps = record.dependencies or ""
        self.named = {record.image: record.image_id, deps: reference.deps_id}
        # The two normalised parts of the dependencies image, removed once it is made.
        self.parts = {deps.replace(":deps-", f":{part}-") for part in ("system", "finish")}
        self.names = {
            hashlib.sha256(name.encode()).hexdigest(): name for name in {*self.named, *self.parts}
        }
        self.problems: list[str] = []

    def entry(self, root: Path, path: Path) -> None:
        relative = path.relative_to(root)
        kind = relative.parts[0] if relative.parts[0] != "images" else relative.parts[1]
        check = {
            "wheels": self.stamp if wheelhouse.STAMPS in relative.parts else self.wheel,
            "configs": self.config,
            "clean": self.clean,
            "names": self.name,
            "layers": self.layer,
        }.get(kind)
        problem = check(path) if check else "not a cache entry"
        if problem:
            self.problems.append(f"{relative}: {problem}")

    def wheel(self, path: Path) -> str | None:
        if hashlib.sha256(path.read_bytes()).hexdigest() != self.wanted.get(path.name):
            return "a wheel that does not match the lock"
        return None

    def stamp(self, path: Path) -> str | None:
        wheel_path = path.parent.parent / path.name
        digest, *stat = path.read_text().split()
        status = wheel_path.stat()
        current = [str(status.st_size), str(status.st_mtime_ns), str(status.st_ino)]
        if digest != self.wanted.get(path.name):
            return "a stamp of another sha256"
        if stat == current and hashlib.sha256(wheel_path.read_bytes()).hexdigest() != digest:
            return "a stamp for a wheel that does not hash so"
        return None

    def config(self, path: Path) -> str | None:
        if hashlib.sha256(path.read_bytes()).hexdigest() != path.stem:
            return "a config that does not hash to its name"
        return None

    def clean(self, path: Path) -> str | None:
        rules, diff_id = path.parent.name, f"sha256:{path.name}"
        key = f"{rules} {diff_id}"
        since = imagecache.read_sealed(path, "clean", key, self.problems.append, "")
        if rules != normalise.RULES or since is None:
            return "an unreadable clean mark"
        if diff_id not in self.reference.diff_ids:
            return "a layer found clean that no complete image holds"
        return None

    def name(self, path: Path) -> str | None:
        name = self.names.get(path.name, "")
        value = imagecache.read_sealed(path, "name", name, self.problems.append, "")
        if name in self.parts and value is not None:
            config = path.parent.parent / "configs" / f"{value.removeprefix('sha256:')}.json"
            layers = (
                json.loads(config.read_bytes())["rootfs"]["diff_ids"] if config.is_file() else []
            )
            if not layers or not set(layers) <= self.reference.diff_ids:
                return f"names {value}, not a complete part of the dependencies image"
        elif value != self.named.get(name):
            return f"names {value}, not the image built under it"
        return None

    def layer(self, path: Path) -> str | None:
        value = imagecache.read_sealed(path, "layer", path.name, self.problems.append, "")
        if value is None or value.split()[0] not in self.reference.diff_ids:
            return f"a Python layer no complete image holds ({value})"
        return None


def assert_cache_truthful(cache: Path, reference: Reference, *, swept: bool) -> None:
    """Every entry of the reprobuild cache holds what it claims (`CacheAudit`); no temporary
    file; with `swept`, no scratch a build left (a killed build's goes on the next build)."""
    root = cache / "reprobuild"
    audit = CacheAudit(reference)
    for path in sorted(root.rglob("*")) if root.is_dir() else []:
        relative = path.relative_to(root)
        if path.is_dir() or relative.parts[0] == "templates":
            continue
        if path.name.endswith(".tmp"):
            audit.problems.append(f"{relative}: a temporary file")
        elif relative.parts[0] == "tmp" or path.name.startswith(wheelhouse.STAGING):
            if swept:
                audit.problems.append(f"{relative}: scratch a build left")
        else:
            audit.entry(root, path)
    assert audit.problems == [], "\n".join(audit.problems)


def assert_project_clean(setup: Setup, reference: Reference, record_before: bytes | None) -> None:
    """The project holds its own files, unchanged; the record as it was (or none); the build's
    lock file whole; a whole context or none; no temporary file."""
    for name in PROJECT_FILES:
        assert (setup.project / name).read_bytes() == (reference.project / name).read_bytes()
    record = setup.project / layout.RECORD_FILE
    if record_before is None:
        assert not record.exists(), record.read_text()
    else:
        assert record.read_bytes() == record_before
    extra = sorted(
        str(path.relative_to(setup.project))
        for path in setup.project.rglob("*")
        if path.name not in (*PROJECT_FILES, layout.RECORD_FILE)
        and not path.is_relative_to(setup.project / ".reprobuild" / "context")
    )
    assert extra in ([], [".reprobuild", str(projectlock.LOCK_FILE)]), extra
    held = setup.project / projectlock.LOCK_FILE
    if held.exists():
        assert held.read_text() == "" or held.read_text().strip().isdigit()
    context = setup.project / ".reprobuild" / "context"
    if context.exists():
        assert (context / "Dockerfile").is_file() and (context / "code").is_dir()


def assert_no_traceback(run: BuildRun) -> None:
    assert "Traceback" not in run.output and "Exception ignored" not in run.output, run.output


def assert_rebuilt(run: BuildRun, setup: Setup, reference: Reference) -> buildrecord.BuildRecord:
    code = run.finish()
    assert code == 0, run.output
    assert_no_traceback(run)
    assert "waiting for another build" not in run.output  # the killed build's lock went with it
    record = buildrecord.read(setup.project)
    assert record.image_id == reference.record.image_id
    assert record.lock == reference.record.lock
    return record


# The phases.


@dataclass(frozen=True)
class Phase:
    name: str
    trigger: str  # the line that opens it
    later: tuple[str, ...]  # lines of what comes after it: none may come once the signal went
    warm: bool = True  # start from a cache that holds what normalisation read before
    options: tuple[str, ...] = ()


PHASES = (
    # The spec changed since the lock: the build locks first, and uv waits on the index.
    Phase("lock", "python: resolving the closure", ("python: ", "wheels: verifying")),
    # The stand-in torch download stops half way.
    Phase("download", f"wheels: downloading {TORCH}", ("code: ",)),
    # The engine runs the system stage's RUN step (--no-cache: never a step another build left).
    Phase("deps", "RUN export SOURCE_DATE_EPOCH", ("[5/5]", "normalising: "), options=NO_CACHE),
    # The export of the built system stage is read (an empty cache: every layer is checked).
    Phase("normalise", "normalising: reading the built image", (FINISH,), warm=False),
    # The dependencies image, its Python layers made as they are sent, goes to `docker load`.
    Phase("load", "dependencies: loading", ("building the image on its dependencies",)),
    # The registry (behind a relay) holds the first upload.
    Phase("push", "pushing ", ("built ",)),
)
SIGNALS = (signal.SIGINT, signal.SIGKILL)


@dataclass
class Interruption:
    """One phase interrupted one way: the project, what holds the phase open, what the build
    found before it ran."""

    phase: Phase
    how: signal.Signals
    setup: Setup
    options: tuple[str, ...]
    held: threading.Event
    relay: Relay | None = None
    pushed: str = ""
    record_before: bytes | None = None


class StandIns:
    """The session's wheel server, and this test's relays (closed when it ends)."""

    def __init__(self, wheels: WheelServer) -> None:
        self.wheels = wheels
        self.relays: list[Relay] = []

    def relay(self, target: tuple[str, int] | None, hold_on: bytes = b"") -> Relay:
        self.relays.append(Relay(target, hold_on))
        return self.relays[-1]


@pytest.fixture
def stand_ins(wheels: WheelServer) -> Iterator[StandIns]:
    made = StandIns(wheels)
    yield made
    wheels.release()
    for relay in made.relays:
        relay.close()


def prepare(
    tmp_path: Path, phase: Phase, how: signal.Signals, reference: Reference, stand_ins: StandIns
) -> Interruption:
    relay, extra, options, pushed = None, {}, phase.options, ""
    if phase.name == "lock":
        relay = stand_ins.relay(None)
        proxy = f"http://127.0.0.1:{relay.port}"
        extra = {"HTTPS_PROXY": proxy, "HTTP_PROXY": proxy, "NO_PROXY": "127.0.0.1,localhost"}
    if phase.name == "push":
        host, port = REGISTRY.rsplit(":", 1)
        relay = stand_ins.relay((host, int(port)), hold_on=b"POST /v2/")
        pushed = f"127.0.0.1:{relay.port}/test/interrupt-{how.name.lower()}:v1"
        options = ("--push", pushed)
    held = relay.held if relay is not None else threading.Event()
    if phase.name == "download":
        stand_ins.wheels.hold_next(TORCH)
        held = stand_ins.wheels.held
    if relay is None and phase.name != "download":
        held.set()
    setup = set_up(tmp_path, reference, warm=phase.warm, **extra)
    if phase.name == "lock":
        (setup.project / "reprobuild.toml").write_text(SPEC + 'packages = ["numpy==2.1.3"]\n')
    interruption = Interruption(phase, how, setup, options, held, relay, pushed)
    if how == signal.SIGKILL:  # a killed build finds a previous record; an interrupted one, none
        buildrecord.write(setup.project, replace(reference.record, engine_version="previous"))
        interruption.record_before = (setup.project / layout.RECORD_FILE).read_bytes()
    return interruption


def interrupt(interruption: Interruption, stand_ins: StandIns) -> BuildRun:
    """Run the build, signal it when the phase's line has come (and its stand-in holds it), and
    check how it ended."""
    phase, how = interruption.phase, interruption.how
    with BuildRun(interruption.setup.project, interruption.setup.env, *interruption.options) as run:
        try:
            run.wait_for(phase.trigger, also=interruption.held)
            run.interrupt(how)
            code = run.finish()
        finally:
            stand_ins.wheels.release()
            if interruption.relay is not None:
                interruption.relay.release()
    if how == signal.SIGINT:
        assert code == 130, run.output
        assert run.output.splitlines()[-1] == "interrupted", run.output
        assert_no_traceback(run)
    else:
        assert code == -signal.SIGKILL, run.output
    later = [line for line in run.after(phase.trigger) for text in phase.later if text in line]
    assert later == [], f"the signal came after the {phase.name} phase:\n{run.output}"
    return run


def check_left(
    interruption: Interruption, run: BuildRun, reference: Reference, engine: Any
) -> None:
    phase, how, setup = interruption.phase, interruption.how, interruption.setup
    if phase.name == "lock":
        (setup.project / "reprobuild.toml").write_text(SPEC)
    assert_project_clean(setup, reference, interruption.record_before)
    assert_only_complete_images_named(engine, reference, killed=how == signal.SIGKILL)
    if phase.name == "push":
        names = project_tags(engine, interruption.pushed.rsplit(":", 1)[0])
        if how == signal.SIGINT:  # the name the push gave is taken back
            assert names == {}
        else:
            assert set(names.values()) <= {reference.record.image_id}
    assert_cache_truthful(setup.cache, reference, swept=how == signal.SIGINT)
    # A killed lock leaves its uv running a while (the lock stage's), with its temporary folder.
    if how == signal.SIGINT or phase.name != "lock":
        assert list((setup.root / "tmp").iterdir()) == []
    assert_no_build_containers_left(engine, run.started)


def check_rebuilt(interruption: Interruption, reference: Reference, engine: Any) -> None:
    setup = interruption.setup
    # The same command, but that the deps phase's --no-cache goes: a plain build uses (and then
    # removes) the step images the engine had made when the build was killed.
    options = tuple(option for option in interruption.options if option not in NO_CACHE)
    with BuildRun(setup.project, setup.env, *options) as again:
        record = assert_rebuilt(again, setup, reference)
    if interruption.pushed:
        assert record.manifest_digest is not None
        repository = interruption.pushed.split("/", 1)[1]
        with RegistryClient() as registry:
            served = registry.resolve(ImageReference.parse(f"{REGISTRY}/{repository}"))
        assert served.digest == record.manifest_digest
        engine.untag(interruption.pushed)
    assert_project_clean(setup, reference, (setup.project / layout.RECORD_FILE).read_bytes())
    assert_cache_truthful(setup.cache, reference, swept=True)
    assert_only_complete_images_named(engine, reference)
    assert_no_unnamed_images_of_the_project(engine, reference)


@pytest.mark.parametrize(
    "case",
    [(phase, how) for phase in PHASES for how in SIGNALS],
    ids=[f"{phase.name}-{how.name}" for phase in PHASES for how in SIGNALS],
)
def test_an_interrupted_build_leaves_nothing_half_done_and_builds_again(
    tmp_path: Path,
    case: tuple[Phase, signal.Signals],
    reference: Reference,
    stand_ins: StandIns,
    engine_client: Any,
) -> None:
    phase, how = case
    interruption = prepare(tmp_path, phase, how, reference, stand_ins)
    run = interrupt(interruption, stand_ins)
    check_left(interruption, run, reference, engine_client)
    check_rebuilt(interruption, reference, engine_client)


# Damaged cache entries.


def flip(path: Path, at: int, *, unseen: bool = False) -> None:
    """Change one byte of `path` in place; `unseen`: keeping its size, inode and dates, as a bit
    flipped on disk does (the wheel cache's stamp then still matches)."""
    status = path.stat()
    with path.open("r+b") as handle:
        handle.seek(at)
        byte = handle.read(1)
        handle.seek(at)
        handle.write(bytes([byte[0] ^ 0x01]))
    if unseen:
        os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))


def test_damaged_cache_entries_are_found_by_their_hash_and_redone(
    tmp_path: Path, reference: Reference, engine_client: Any
) -> None:
    """From the reference's whole cache, one byte changed in each wheel (one where the wheel
    cache's stamp sees it, one where it cannot) and in every image-cache entry: each is found by
    its hash, said, and fetched, read or built again; the image is the same."""
    setup = set_up(tmp_path, reference, warm=False)
    root = setup.cache / "reprobuild"
    shutil.copytree(reference.cache / "reprobuild", root)
    wheels = root / "wheels"
    # The copies are new files: verified and stamped, as the reference's build left its own.
    wheelhouse.fetch(reference.lock.lock, setup.project, wheels, lambda *_: None)
    flip(wheels / "tinypkg-1.0-py3-none-any.whl", 100)
    flip(wheels / TORCH, TORCH_PAYLOAD // 2, unseen=True)
    entries = [
        *(root / "images" / "configs").iterdir(),
        *(root / "images" / "clean" / normalise.RULES).iterdir(),
        *(root / "images" / "names").iterdir(),
        *(root / "layers").iterdir(),
    ]
    for entry in entries:
        flip(entry, 3)

    with BuildRun(setup.project, setup.env) as run:
        record = assert_rebuilt(run, setup, reference)
    lines = [line for _, line in run.lines]
    fetch_time = lines[: next(i for i, line in enumerate(lines) if "code: " in line)]
    install_time = run.after("dependencies: installing torch")
    damaged = "does not match the lock's sha256"
    assert any(f"tinypkg-1.0-py3-none-any.whl in {wheels} {damaged}" in line for line in fetch_time)
    assert not any(TORCH in line and damaged in line for line in fetch_time)
    assert any(f"{TORCH} in {wheels} {damaged}" in line for line in install_time)
    for name in ("tinypkg-1.0-py3-none-any.whl", TORCH):
        assert any(f"wheels: downloading {name}" in line for line in lines)
    warned = [line for line in lines if "warning: the cache entry" in line]
    for kind in ("images/configs/", "images/clean/", "images/names/", "/layers/"):
        assert any(kind in line and "is damaged" in line for line in warned), (kind, warned)
    assert f"dependencies: {reference.record.dependencies}, built before" not in run.output
    assert record == replace(reference.record, engine_version=record.engine_version)
    assert_cache_truthful(setup.cache, reference, swept=True)
    assert_no_unnamed_images_of_the_project(engine_client, reference)


# Two builds of one project at once.


@pytest.mark.parametrize("first_ends", ["finishes", "is killed"])
def test_two_builds_of_one_project_take_turns(
    tmp_path: Path, first_ends: str, reference: Reference, engine_client: Any
) -> None:
    """The second waits for the first (naming the lock file and the first's pid) and builds once
    the first has ended: finished, or killed (the kernel drops its lock). A third, Ctrl-C'd while
    it waits, ends at once and leaves the lock as it was. The record is whole, the image the
    same."""
    setup = set_up(tmp_path, reference, warm=True)
    lock_file = setup.project / projectlock.LOCK_FILE
    with BuildRun(setup.project, setup.env) as first:
        first.wait_for("wheels: verifying")  # it holds the lock from before its first line
        with BuildRun(setup.project, setup.env) as second:
            second.wait_for("waiting for another build")
            waiting = next(line for _, line in second.lines if "waiting for another" in line)
            assert f"(pid {first.process.pid})" in waiting and str(lock_file) in waiting
            with BuildRun(setup.project, setup.env) as third:  # Ctrl-C while it waits
                third.wait_for("waiting for another build")
                third.interrupt(signal.SIGINT)
                assert third.finish() == 130, third.output
            assert third.output.splitlines()[-1] == "interrupted"
            assert_no_traceback(third)
            assert lock_file.read_text() == f"{first.process.pid}\n"  # the holder's, untouched
            if first_ends == "is killed":
                first.interrupt(signal.SIGKILL)
            first_code = first.finish()
            first_last = first.lines[-1][0]
            second_code = second.finish()
    assert first_code == (0 if first_ends == "finishes" else -signal.SIGKILL), first.output
    assert second_code == 0, second.output
    assert_no_traceback(second)
    assert second.wait_for("wheels: verifying") > first_last  # it built only after the first
    text = (setup.project / layout.RECORD_FILE).read_text()
    record = buildrecord.read(setup.project)
    assert text == buildrecord.dumps(record)
    assert record.image_id == reference.record.image_id
    assert f"  image ID {record.image_id} " in second.output
    if first_ends == "finishes":
        assert f"  image ID {record.image_id} " in first.output
    assert lock_file.read_text() == ""
    assert_cache_truthful(setup.cache, reference, swept=True)
    assert_no_unnamed_images_of_the_project(engine_client, reference)


# The engine's own step images.


def only_a_dockerfile(text: str) -> Iterator[bytes]:
    data = text.encode()
    yield from tarstream.member(tarstream.file_info("Dockerfile", len(data)), io.BytesIO(data))
    yield tarstream.END


@pytest.mark.parametrize("ends", ["interrupted", "failed"])
def test_an_engine_build_that_ends_part_way_leaves_none_of_its_step_images(
    ends: str, engine_client: Any, test_base: str
) -> None:
    """The step images the classic builder made before the build stopped (Ctrl-C in the middle
    of a step, or a failed step) are removed with it; an image it did not make (FROM's) stays.
    The steps are this test's own (an ENV no other build has), so no other build shares them."""
    own = f"ENV REPROBUILD_TEST={time.time_ns()}\nRUN echo one > /one\n"
    last = "RUN sleep 60\n" if ends == "interrupted" else "RUN false\n"
    events: list[BuildEvent] = []

    def follow(event: BuildEvent) -> None:
        events.append(event)
        if ends == "interrupted" and event.instruction.startswith("RUN sleep") and event.line:
            raise KeyboardInterrupt  # as Ctrl-C does, once the step runs

    with pytest.raises(KeyboardInterrupt if ends == "interrupted" else BuildFailed):
        build_normalised(
            engine_client,
            only_a_dockerfile(f"FROM {test_base}\n{own}{last}"),
            event=follow,
            no_cache=True,
            parent=test_base,
            epoch=0,
            reference=f"{NAME}:never",
            note=lambda _: None,
        )
    made = [found[1] for e in events if (found := re.fullmatch(r"---> (\w{12})", e.line.strip()))]
    from_image, *steps = made
    assert len(steps) == 2  # the ENV and the first RUN
    assert engine_client.image_id(from_image) is not None
    assert [engine_client.image_id(step) for step in steps] == [None, None]
    assert not engine_client.has_image(f"{NAME}:never")
