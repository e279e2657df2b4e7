"""Every loader of a file a user or a registry hands over, fuzzed: any bytes give the record or
the loader's one error (a ReprobuildError subclass whose message names the file and the fix),
never a traceback, and a record it gives is of the types it declares (a wrong type let through
is a traceback later, in whatever reads the record).

Three kinds of input for each: raw bytes (and a valid file with bytes cut, flipped or inserted),
valid syntax of the wrong shape (JSON or TOML with the real keys mixed in), and a valid document
mutated (keys dropped, types changed, values swapped, lists emptied). Examples are derandomized,
so a failure here fails the same way everywhere. The regression tests below them hold the
message each crash that the fuzzers found now gives.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import requests
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict

from builder import knowledge, layout
from builder.build import buildrecord, recordfile
from builder.build.buildrecord import BuildRecord, LayerRecord
from builder.check import smoke as check_smoke
from builder.engine import registry
from builder.engine.sdk import RunResult
from builder.errors import (
    LockFileError,
    PublishError,
    RecordError,
    RegistryError,
    ReplayError,
    ReprobuildError,
    SmokeError,
    SpecError,
    VerifyError,
)
from builder.lock import lockfile
from builder.lock.model import Lock
from builder.publish import findings, publish, verify
from builder.publish.runs import PublishedRun
from builder.reference import ImageReference
from builder.resolve.resolve import ResolutionRecord
from builder.run import datadigest, replay, runrecord
from builder.spec.check import load_spec
from builder.spec.model import Spec
from tests.locks import make_lock
from tests.records import CONFIG, MANIFEST, make_record

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

if typing.TYPE_CHECKING:
    from builder.check.smoke import ImageSmokeReport
    from builder.engine.sdk import Engine

FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
A, B, C = "a" * 64, "b" * 64, "c" * 64
LOCK_DIGEST = "sha256:" + "ef" * 32
PUSHED = f"registry.example.org/lab/model@{MANIFEST}"


# Valid documents: what each writer writes, the seeds of the mutations.


def valid_lock() -> Lock:
    return make_lock(system=("curl",))


def valid_build() -> BuildRecord:
    layers = (LayerRecord("sha256:" + "01" * 32, 1000), LayerRecord("sha256:" + "02" * 32, 24))
    return make_record(
        LOCK_DIGEST,
        pushed=PUSHED,
        layers=layers,
        pushed_tag="registry.example.org/lab/model:paper",
        git_commit="0123abcd",
        git_dirty=False,
        normalisation={"rewritten": ["usr/lib/x.pyc"], "scanned_bytes": 10},
    )


LISTING: list[list[Any]] = [["a.bin", 3, A], ["dir/b.bin", 5, B]]
LISTING_ROOT = datadigest.Digest.from_listing(LISTING).root
TRACE = [{"step": 5, "optimizer": 0, "params": A, "state": C}]


def valid_run() -> runrecord.RunRecord:
    process = runrecord.ProcessRecord(
        ["fit.py"], "0", "1", 0, False, 8, 8, ":4096:8", None, {"device": "cpu", "cores": 8}
    )
    entries = [runrecord.FileRecord("model.pt", 1, A)]
    return runrecord.RunRecord(
        format=runrecord.FORMAT,
        reprobuild="0.1.0",
        image="lab/model:x",
        image_id=CONFIG,
        pushed=PUSHED,
        lock=LOCK_DIGEST,
        command=["python", "fit.py"],
        code_mounted=False,
        git_commit=None,
        git_dirty=None,
        driver="550.54.15",
        gpus=["H100"],
        gpus_requested="all",
        user="1000:1000",
        data={"train": runrecord.DataRecord("/d", "/data/train", "ro", LISTING_ROOT, 2, 8)},
        env={"LR": "0.1", "WANDB_API_KEY": None},
        shm_size=2**30,
        tty=False,
        processes=[process],
        key={"device": "cpu", "cores": 8},
        outputs=runrecord.OutputsRecord("/o", "sha256:" + A, 1, 1, entries),
        logs={"stdout": runrecord.LogRecord("stdout.log", 3, C)},
        trace=runrecord.TraceRecord("trace.jsonl", 5, 1, A),
        started="2026-11-23T10:00:00Z",
        ended="2026-11-23T10:01:00Z",
        exit_code=0,
    )


def valid_process() -> dict[str, Any]:
    return {**asdict(valid_run().processes[0]), "started": 1.5}


def valid_smoke() -> ImageSmokeReport:
    report: dict[str, Any] = {
        "image": "lab/model:x",
        "image_id": CONFIG,
        "gpus": "all",
        "mode": "gpu",
        "verdict": "pass",
        "key": {"device": "cuda", "gpu": "NVIDIA H100 80GB HBM3", "torch": "2.5.1"},
        "preconditions": [{"name": "driver", "ok": True, "detail": "550.54.15"}],
        "kernels": {
            "matmul_fp32": {"runs": [A, A], "identical": True},
            "conv2d": {"runs": [B, B], "identical": True},
        },
        "errors": {},
        "skipped": {"index_add": "no deterministic implementation"},
        "canary": {"witnesses": 10, "differed": 7, "names": ["scatter_add"]},
        "seconds": {"matmul_fp32": 0.5, "conv2d": 0.25},
        "wall_s": 12.5,
    }
    return cast("ImageSmokeReport", report)


def published_run() -> PublishedRun:
    return {
        "record": asdict(valid_run()),
        "data_listings": {"train": LISTING},
        "trace_entries": TRACE,
    }


def valid_manifest() -> publish.Manifest:
    return publish.manifest(
        valid_build(),
        valid_lock(),
        lock_text="# lock\n",
        smoke=valid_smoke(),
        source=publish.Source("0123abcd", False),
        published="2026-11-23T10:00:00.000Z",
        runs=[published_run()],
    )


AMD64 = "sha256:" + "2" * 64
VALID_INDEX = {
    "schemaVersion": 2,
    "mediaType": registry.INDEX_TYPES[0],
    "manifests": [
        {"digest": "sha256:" + "3" * 64, "platform": {"os": "linux", "architecture": "arm64"}},
        {"digest": AMD64, "size": 7, "platform": {"os": "linux", "architecture": "amd64"}},
    ],
}
VALID_MANIFEST = {
    "schemaVersion": 2,
    "mediaType": registry.MANIFEST_TYPES[0],
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": CONFIG},
    "layers": [{"digest": "sha256:" + "4" * 64, "size": 10}],
}
VALID_CONFIG = {
    "architecture": "amd64",
    "os": "linux",
    "config": {"Env": ["PATH=/usr/bin", "PYTHON_VERSION=3.11.9"], "Labels": {"a": "b"}},
}
SPEC_TEXT = (Path(__file__).parents[2] / "images/example/reprobuild.toml").read_text()


# Strategies.


def _keys_of(*documents: object) -> list[str]:
    """Every key in `documents`, at any depth: the real keys the wrong shapes are made of."""
    found: set[str] = set()

    def visit(value: object) -> None:
        if isinstance(value, dict):
            found.update(value)
            for item in value.values():
                visit(item)
        elif isinstance(value, list | tuple):
            for item in value:
                visit(item)

    for document in documents:
        visit(document)
    return sorted(found) or ["name"]


def _scalars(*, toml: bool) -> st.SearchStrategy[Any]:
    found = (
        st.booleans()
        | st.integers()
        | st.sampled_from([0, -1, 2**63, 10**400])
        | st.floats(allow_nan=not toml, allow_infinity=not toml)
        | st.text(max_size=12)
        | st.sampled_from(["sha256:" + A, CONFIG, "pass", "gpu", "linux", "amd64", "1", "0"])
        | st.sampled_from(["", "/abs", "a\x00b", "x" * 300] + ([] if toml else ["\ud800"]))
    )
    return found if toml else st.none() | found


def _values(keys: list[str], *, toml: bool) -> st.SearchStrategy[Any]:
    names = st.sampled_from(keys) | st.text(max_size=6)
    return st.recursive(
        _scalars(toml=toml),
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(names, children, max_size=6)
        ),
        max_leaves=16,
    )


def _documents(keys: list[str], *, toml: bool = False) -> st.SearchStrategy[Any]:
    """Valid syntax of the wrong shape: tables of the real keys (and others) holding anything."""
    tables = st.dictionaries(st.sampled_from(keys), _values(keys, toml=toml), max_size=12)
    return tables if toml else tables | _values(keys, toml=False)


def _at(document: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        document = document[step]
    return document


def _path(draw: st.DrawFn, document: Any) -> tuple[Any, ...]:
    """A place in `document`: a top-level key half of the time, deeper the rest."""
    path: tuple[Any, ...] = ()
    node = document
    while isinstance(node, dict | list) and node and (not path or draw(st.booleans())):
        step = draw(st.sampled_from(list(node) if isinstance(node, dict) else range(len(node))))
        path, node = (*path, step), node[step]
    return path


@st.composite
def _mutated(draw: st.DrawFn, document: Any, keys: list[str], *, toml: bool = False) -> Any:
    """`document` with one to four edits: a key or item dropped, a value replaced (by another
    type, None, an empty or a wrapped one), a key added."""
    document = copy.deepcopy(document)
    values = _values(keys, toml=toml)
    for _ in range(draw(st.integers(1, 4))):
        path = _path(draw, document)
        old = _at(document, path)
        edit = draw(st.sampled_from(["drop", "value", "wrap", "text", "empty", "add", "null"]))
        if edit == "add" and isinstance(old, dict):
            old[draw(st.sampled_from(keys) | st.text(max_size=4))] = draw(values)
            continue
        if edit == "add" and isinstance(old, list):
            old.append(draw(values))
            continue
        replaced = {
            "wrap": [old],
            "text": str(old),
            "empty": type(old)() if isinstance(old, dict | list | str) else 0,
            "null": "" if toml else None,
        }
        new = replaced[edit] if edit in replaced else draw(values)
        if not path:
            document = new
        elif edit == "drop":
            del _at(document, path[:-1])[path[-1]]
        else:
            _at(document, path[:-1])[path[-1]] = new
    return document


@st.composite
def _edited_bytes(draw: st.DrawFn, data: bytes) -> bytes:
    """A valid file's bytes, cut short, with a byte changed, a run inserted or removed."""
    position = draw(st.integers(0, len(data)))
    edit = draw(st.sampled_from(["cut", "flip", "insert", "remove", "utf16"]))
    if edit == "cut":
        return data[:position]
    if edit == "flip" and position < len(data):
        return (
            data[:position]
            + bytes([data[position] ^ draw(st.integers(1, 255))])
            + data[position + 1 :]
        )
    if edit == "insert":
        return data[:position] + draw(st.binary(min_size=1, max_size=8)) + data[position:]
    if edit == "remove":
        return data[:position] + data[position + draw(st.integers(1, 16)) :]
    return data.decode().encode("utf-16")


def _deep(
    opening: bytes, inner: bytes, closing: bytes, prefix: bytes = b"", most: int = 100_000
) -> st.SearchStrategy[bytes]:
    """Nesting deeper than a recursive reader goes, left open or closed again."""
    depths = st.sampled_from([depth for depth in (300, 1_000, 3_000, 100_000) if depth <= most])
    return st.tuples(depths, st.booleans()).map(
        lambda deep: prefix + opening * deep[0] + (inner + closing * deep[0] if deep[1] else b"")
    )


JSON_DEEP = _deep(b"[", b"1", b"]") | _deep(b'{"a":', b"1", b"}")
TOML_DEEP = st.one_of(
    _deep(b"[", b"1", b"]", b"a = "),
    _deep(b"{b = ", b"1", b"}", b"a = "),
    # tomllib's memory grows with the square of a dotted key's length: 3,000 parts at most.
    _deep(b"a.", b"a = 1", b"", b"format = 1\n", most=3_000),
)


def _json(document: Any) -> bytes:
    return json.dumps(document).encode()


def json_inputs(valid: Any) -> st.SearchStrategy[bytes]:
    """The three kinds of input for a JSON file whose valid content is `valid`."""
    keys = _keys_of(valid)
    return st.one_of(
        st.binary(max_size=200),
        JSON_DEEP,
        _edited_bytes(_json(valid)),
        _documents(keys).map(_json),
        _mutated(valid, keys).map(_json),
    )


def _toml(document: dict[str, Any]) -> bytes:
    return tomli_w.dumps(document).encode()


# The contract.


def _hint_problem(value: Any, hint: Any, where: str) -> str | None:
    """Where `value` is not of the type `hint` (as a dataclass or a TypedDict declares it), or
    None. A TypedDict's keys are checked where present: the lock keeps the resolution's optional
    keys out, and its readers use .get() for them."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return None
    if origin in (typing.Union, types.UnionType):
        fits = any(_hint_problem(value, arg, where) is None for arg in args)
        return None if fits else f"{where} is {value!r}, not {hint}"
    if dataclasses.is_dataclass(hint) or typing.is_typeddict(hint):
        return _record_problem(value, hint, where)
    if origin in (list, tuple, dict):
        return _container_problem(value, origin, args, where)
    fits = value in args if origin is typing.Literal else _scalar_fits(value, hint)
    return None if fits else f"{where} is {value!r}, not {hint}"


def _record_problem(value: Any, hint: Any, where: str) -> str | None:
    hints = typing.get_type_hints(hint, localns=NAMES)
    if typing.is_typeddict(hint):
        if not isinstance(value, dict):
            return f"{where} is {value!r}, not a table"
        items = [(name, item) for name, item in value.items() if name in hints]
    else:
        if not isinstance(value, hint):
            return f"{where} is {value!r}, not a {hint.__name__}"
        items = [(field.name, getattr(value, field.name)) for field in dataclasses.fields(hint)]
    problems = (_hint_problem(item, hints[name], f"{where}.{name}") for name, item in items)
    return next((problem for problem in problems if problem), None)


def _container_problem(value: Any, origin: Any, args: tuple[Any, ...], where: str) -> str | None:
    if not isinstance(value, origin):
        return f"{where} is {value!r}, not a {origin.__name__}"
    if isinstance(value, dict):
        problems = (
            _hint_problem(key, args[0], f"{where} key")
            or _hint_problem(item, args[1], f"{where}[{key!r}]")
            for key, item in value.items()
        )
    else:
        problems = (
            _hint_problem(item, args[0], f"{where}[{index}]") for index, item in enumerate(value)
        )
    return next((problem for problem in problems if problem), None)


def _scalar_fits(value: Any, hint: Any) -> bool:
    if hint in (int, float) and isinstance(value, bool):
        return False
    return isinstance(value, int | float) if hint is float else isinstance(value, hint)


NAMES = {"ResolutionRecord": ResolutionRecord, "Digest": datadigest.Digest}


def holds(loaded: Any, hint: Any, where: str = "the record") -> None:
    problem = _hint_problem(loaded, hint, where)
    assert problem is None, problem


def loads_or_refuses(
    load: Callable[[], Any], error: type[ReprobuildError], use: Callable[[Any], object]
) -> None:
    """`load()` gives a record that `use` takes, or `error` with a one-paragraph message."""
    try:
        loaded = load()
    except error as refused:
        assert str(refused)
        return
    use(loaded)


# The loaders, each with what reads its record next.


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _sealed(document: Any) -> Any:
    """A lock document with its format and integrity as a writer leaves them, so that the
    mutation reaches the reading of the pins rather than the integrity check."""
    if isinstance(document, dict):
        document = {"format": lockfile.FORMAT, **document}
        document["integrity"] = lockfile._integrity(document)
    return document


_LOCK = lockfile.to_document(valid_lock())
_LOCK_KEYS = _keys_of(_LOCK)
LOCK_INPUTS = st.one_of(
    st.binary(max_size=200),
    TOML_DEEP,
    _edited_bytes(lockfile.dumps(valid_lock()).encode()),
    _documents(_LOCK_KEYS, toml=True).map(_sealed).map(_toml),
    _mutated(_LOCK, _LOCK_KEYS, toml=True)
    .filter(lambda document: isinstance(document, dict))
    .map(_sealed)
    .map(_toml),
)


@FUZZ
@given(data=LOCK_INPUTS)
def test_fuzz_lock(folder: Path, data: bytes) -> None:
    path = _write(folder / lockfile.LOCK_FILE, data)
    loads_or_refuses(lambda: lockfile.read(path), LockFileError, lambda lock: holds(lock, Lock))


@FUZZ
@given(data=json_inputs(json.loads(buildrecord.dumps(valid_build()))))
def test_fuzz_build_record(folder: Path, data: bytes) -> None:
    _write(folder / layout.RECORD_FILE, data)
    loads_or_refuses(
        lambda: buildrecord.read(folder), RecordError, lambda record: holds(record, BuildRecord)
    )


def _find(image_id: str) -> str:
    assert isinstance(image_id, str), f"the engine was asked for {image_id!r}"
    return image_id


@FUZZ
@given(data=json_inputs(json.loads(buildrecord.dumps(valid_build()))))
def test_fuzz_the_image_a_run_takes_from_the_build_record(folder: Path, data: bytes) -> None:
    _write(folder / layout.RECORD_FILE, data)

    def load() -> recordfile.ImageToRun:
        return recordfile.recorded_image(folder, recordfile.load(folder), _find, _find)

    def use(image: recordfile.ImageToRun) -> None:
        assert isinstance(image.reference, str) and isinstance(image.image_id, str)
        assert image.pushed is None or isinstance(image.pushed, str)

    loads_or_refuses(load, RecordError, use)


def _use_run(record: runrecord.RunRecord) -> None:
    holds(record, runrecord.RunRecord)
    replay.compare(record, None, record, None)
    replay.replay_environment(record, source=dict.fromkeys(record.env, "x"))


@FUZZ
@given(data=json_inputs(asdict(valid_run())))
def test_fuzz_run_record(folder: Path, data: bytes) -> None:
    _write(folder / runrecord.RECORD_FILE, data)
    loads_or_refuses(lambda: runrecord.read(folder), ReplayError, _use_run)


def _use_runs(runs: list[replay.RecordedRun]) -> None:
    for run in runs:
        _use_run(run.record)
        holds(run.listings, dict[str, list[list[Any]] | None], "the listings")
        for name, listing in run.listings.items():
            root = run.record.data[name].root
            if listing is not None and datadigest.verify_listing(root, listing):
                datadigest.compare(listing, datadigest.Digest.from_listing(LISTING))
        holds(run.trace, list[dict[str, Any]] | None, "the trace")
        if run.trace is not None:
            replay.first_trace_difference(run.trace, TRACE)


# Listings of the right shape with odd items: paths no file has, sizes, digests.
LISTINGS = st.lists(
    st.tuples(
        st.text(max_size=8) | st.sampled_from(["\ud800", "a\udcff", "/abs", "", "a\x00"]),
        st.integers(-1, 2**64),
        st.sampled_from([A, B, "x", "A" * 64]),
    ).map(list),
    max_size=4,
).map(_json)


@FUZZ
@given(
    listing=json_inputs(LISTING) | LISTINGS,
    trace=st.one_of(
        st.binary(max_size=200),
        JSON_DEEP,
        _edited_bytes(b"".join(_json(entry) + b"\n" for entry in TRACE)),
        st.lists(_documents(_keys_of(TRACE)).map(_json), max_size=3).map(b"\n".join),
    ),
)
def test_fuzz_run_folder_listings_and_trace(folder: Path, listing: bytes, trace: bytes) -> None:
    run = folder / "run"
    _write(run / runrecord.RECORD_FILE, _json(asdict(valid_run())))
    _write(run / runrecord.DATA_FOLDER / "train.json", listing)
    _write(run / runrecord.TRACE_FILE, trace)
    loads_or_refuses(lambda: replay.recorded_runs(run), ReplayError, _use_runs)


@FUZZ
@given(first=json_inputs(valid_process()), second=json_inputs(valid_process()))
def test_fuzz_process_reports(folder: Path, first: bytes, second: bytes) -> None:
    report = folder / "report"
    _write(report / "process-1.json", first)
    _write(report / "process-2.json", second)
    processes = runrecord.read_processes(report)
    holds(processes, list[runrecord.ProcessRecord], "the processes")
    runrecord.main_key(processes)


def _use_report(report: ImageSmokeReport) -> None:
    made = publish.manifest(
        valid_build(),
        valid_lock(),
        lock_text="# lock\n",
        smoke=report,
        source=publish.Source(None, None),
        published="2026-11-23T10:00:00.000Z",
        runs=[],
    )
    publish.reproduce_text(made)
    publish.weak_proof(report)


@FUZZ
@given(data=json_inputs(valid_smoke()))
def test_fuzz_smoke_report_file(folder: Path, data: bytes) -> None:
    path = _write(folder / "smoke.json", data)

    def load() -> ImageSmokeReport:
        return publish.check_smoke(publish.read_report(path), valid_build())

    loads_or_refuses(load, PublishError, _use_report)


@dataclass
class _Engine:
    """The engine calls the smoke run and verify make, answered from memory."""

    stdout: str = ""
    exit_code: int = 0

    def run(self, image: str, command: list[str], **options: Any) -> RunResult:
        return RunResult(self.exit_code, self.stdout, "")

    def ensure_image(self, reference: str) -> str:
        return CONFIG

    def inspect_image(self, reference: str) -> dict[str, Any]:
        return {"Id": CONFIG, "Config": {"Labels": {layout.LOCK_LABEL: LOCK_DIGEST}}}

    @staticmethod
    def platform() -> str:  # the images above say none: linux/amd64's, run natively
        return "linux/amd64"


def _payload_report() -> dict[str, Any]:
    report = dict(valid_smoke())
    for name in ("image", "image_id", "gpus"):
        del report[name]
    return report


@FUZZ
@given(data=json_inputs(_payload_report()), exit_code=st.sampled_from([0, 1, 3, 4, 127]))
def test_fuzz_smoke_report_from_the_payload(data: bytes, exit_code: int) -> None:
    engine = cast("Engine", _Engine(data.decode(errors="replace"), exit_code))
    image = recordfile.ImageToRun("lab/model:x", CONFIG, None)

    def use(ran: check_smoke.SmokeRun) -> None:
        check_smoke.report_text(ran.report)
        check_smoke.differing_kernels(ran.report)
        result = findings.Verification("m", PUSHED)
        verify.fingerprints(result, ran.to_dict(), valid_smoke())

    loads_or_refuses(lambda: check_smoke.run_smoke(engine, image, gpus="all"), SmokeError, use)


@dataclass
class _Registry:
    def resolve(
        self, reference: ImageReference, platform: str | None = None
    ) -> registry.ResolvedImage:
        return registry.ResolvedImage(reference, MANIFEST, None, CONFIG, ())


def _use_manifest(path: Path, manifest: publish.Manifest) -> None:
    engine, registry_client = cast("Engine", _Engine()), cast("Any", _Registry())
    steps = verify.Steps(smoke=False, gpus=None, rebuild=None)
    verify.verify_manifest(engine, registry_client, manifest, str(path), steps)


@FUZZ
@given(data=json_inputs(valid_manifest()))
def test_fuzz_published_manifest(folder: Path, data: bytes) -> None:
    path = _write(folder / layout.MANIFEST_FILE, data)
    loads_or_refuses(
        lambda: verify.read_subject(str(path), folder).manifest,
        VerifyError,
        lambda manifest: _use_manifest(path, manifest),
    )


@FUZZ
@given(data=json_inputs(valid_manifest()))
def test_fuzz_the_runs_a_manifest_publishes(folder: Path, data: bytes) -> None:
    path = _write(folder / layout.MANIFEST_FILE, data)
    loads_or_refuses(lambda: replay.recorded_runs(path), ReplayError, _use_runs)


class _Session:
    """A registry that serves fixed bytes: the manifest of the tag, the image's manifest, the
    config blob, a token (after a 401 when `challenge` is set)."""

    def __init__(self, answers: dict[str, bytes], challenge: str | None) -> None:
        self.headers: dict[str, str] = {}
        self.answers = answers
        self.challenge = challenge

    def get(self, url: str, headers: dict[str, str], **options: Any) -> requests.Response:
        response = requests.Response()
        response.status_code = 200
        response.headers = CaseInsensitiveDict()
        registry_url = url.startswith("https://registry.example.org/")
        if self.challenge is not None and registry_url and "Authorization" not in headers:
            response.status_code = 401
            response.headers["WWW-Authenticate"] = self.challenge
            response._content = b""
            return response
        target = url.rsplit("/", 1)[-1]
        kind = "token" if url.startswith("https://auth.") else url.rsplit("/", 2)[-2]
        if kind == "manifests" and target.startswith("sha256:"):
            response.headers["Docker-Content-Digest"] = target
            kind = "image"
        response._content = self.answers[kind]
        return response

    def close(self) -> None:
        pass


_REGISTRY_KEYS = _keys_of(VALID_INDEX, VALID_MANIFEST, VALID_CONFIG)


@FUZZ
@given(
    tag=json_inputs(VALID_INDEX) | json_inputs(VALID_MANIFEST),
    image=json_inputs(VALID_MANIFEST),
    config=json_inputs(VALID_CONFIG),
    token=st.binary(max_size=40) | _documents(["token", "access_token"]).map(_json),
    challenge=st.sampled_from([None, 'Bearer realm="https://auth.example.org/token",service="r"']),
)
def test_fuzz_registry_answers(
    tag: bytes, image: bytes, config: bytes, token: bytes, challenge: str | None
) -> None:
    answers = {"manifests": tag, "image": image, "blobs": config, "token": token}
    client = registry.RegistryClient(attempts=1)
    client._session = cast("requests.Session", _Session(answers, challenge))
    reference = ImageReference.parse("registry.example.org/lab/base:1")
    loads_or_refuses(
        lambda: client.resolve(reference),
        RegistryError,
        lambda resolved: holds(resolved, registry.ResolvedImage),
    )


_SPEC = tomllib.loads(SPEC_TEXT)
KB = knowledge.load()


@FUZZ
@given(
    data=st.one_of(
        st.binary(max_size=200),
        TOML_DEEP,
        _edited_bytes(SPEC_TEXT.encode()),
        _mutated(_SPEC, _keys_of(_SPEC), toml=True)
        .filter(lambda document: isinstance(document, dict))
        .map(_toml),
    )
)
def test_fuzz_spec(folder: Path, data: bytes) -> None:
    project = folder / "spec"
    _write(project / "reprobuild.toml", data)
    loads_or_refuses(
        lambda: load_spec(project, KB).spec, SpecError, lambda spec: isinstance(spec, Spec)
    )


# What the fuzzers found, a case each: the loader's own error and its exact message where there
# was a traceback (KeyError, TypeError, AttributeError, ValueError, RecursionError,
# UnicodeDecodeError, IndexError ...) or a record of the wrong types.

DEEP = b"[" * 100_000
TOO_DEEP = "maximum recursion depth exceeded while decoding a JSON array from a unicode string"
DROP = object()


def _changed(document: Any, path: str, value: Any) -> Any:
    """A copy of `document` with the value at `path` (keys and indexes joined by '/') set, or
    dropped for DROP."""
    document = copy.deepcopy(document)
    *parents, last = [int(step) if step.isdigit() else step for step in path.split("/")]
    where = _at(document, tuple(parents))
    if value is DROP:
        del where[last]
    else:
        where[last] = value
    return document


@pytest.mark.parametrize(
    ("path", "value", "clause"),
    [
        ("python", "x", 'has python = "x", not a table'),
        ("base", "x", 'has base = "x", not a table'),
        ("system", "x", 'has system = "x", not a table'),
        ("python/packages/0/size", "10", 'has python.packages[0].size = "10", not an integer'),
        ("determinism/seed", True, "has determinism.seed = true, not an integer"),
        ("resolution/torch", "2.5.1", 'has resolution.torch = "2.5.1", not a table'),
        ("system/packages/0", 2, "has system.packages[0] = 2, not a string"),
        ("base/colour", "red", "has the unknown key base.colour"),
        ("python/uv_version", DROP, "lacks python.uv_version"),
    ],
)
def test_a_lock_of_the_wrong_shape_is_named(path: str, value: Any, clause: str) -> None:
    with pytest.raises(LockFileError) as refused:
        lockfile.loads(tomli_w.dumps(_sealed(_changed(_LOCK, path, value))))
    assert str(refused.value) == f"reprobuild.lock {clause}; re-create it with `reprobuild lock`."


@pytest.mark.parametrize("text", ["a = " + "[" * 100_000, "format = 1\n" + "a." * 3_000 + "a = 1"])
def test_a_lock_too_deep_to_read_is_named(text: str) -> None:
    with pytest.raises(LockFileError) as refused:
        lockfile.loads(text)
    assert str(refused.value) == (
        "reprobuild.lock nests its arrays or tables too deeply to be a lock; re-create it with "
        "`reprobuild lock`."
    )


_BUILD = json.loads(buildrecord.dumps(valid_build()))


@pytest.mark.parametrize(
    ("path", "value", "clause"),
    [
        ("layers/0/size", "x", 'has layers[0].size = "x", not an integer'),
        ("git_dirty", "no", 'has git_dirty = "no", not a boolean or null'),
        ("normalisation/rewritten", "x", 'has normalisation.rewritten = "x", not an array'),
        ("image_id", DROP, "lacks image_id"),
    ],
)
def test_a_build_record_of_the_wrong_shape_is_named(
    tmp_path: Path, path: str, value: Any, clause: str
) -> None:
    written = _write(tmp_path / layout.RECORD_FILE, _json(_changed(_BUILD, path, value)))
    with pytest.raises(RecordError) as refused:
        buildrecord.read(tmp_path)
    assert str(refused.value) == f"{written} {clause}; run `reprobuild build` again."


@pytest.mark.parametrize(
    ("data", "clause"),
    [
        (DEEP, f"is unreadable ({TOO_DEEP})"),
        (_json(_changed(_BUILD, "image_id", 5)), "has image_id = 5, not a string"),
        (_json(_changed(_BUILD, "pushed", ["x"])), "has pushed = [...], not a string or null"),
    ],
)
def test_the_image_of_a_build_record_of_the_wrong_shape_is_named(
    tmp_path: Path, data: bytes, clause: str
) -> None:
    path = _write(tmp_path / layout.RECORD_FILE, data)
    with pytest.raises(RecordError) as refused:
        recordfile.recorded_image(tmp_path, recordfile.load(tmp_path), _find, _find)
    assert str(refused.value) == f"{path} {clause}; run `reprobuild build` again."


_RUN = asdict(valid_run())
RUN_AGAIN = "Give a record that `reprobuild run` wrote."


@pytest.mark.parametrize(
    ("path", "value", "clause"),
    [
        ("command/1", 1, "has command[1] = 1, not a string"),
        ("env/LR", 0.1, "has env.LR = 0.1, not a string or null"),
        ("trace/interval", DROP, "lacks trace.interval"),
        ("processes/0/threads", [8], "has processes[0].threads = [...], not an integer"),
        ("gpus", "H100", 'has gpus = "H100", not an array'),
        ("tty", "no", 'has tty = "no", not a boolean'),
        ("colour", "red", "has the unknown key colour"),
    ],
)
def test_a_run_record_of_the_wrong_shape_is_named(
    tmp_path: Path, path: str, value: Any, clause: str
) -> None:
    written = _write(tmp_path / runrecord.RECORD_FILE, _json(_changed(_RUN, path, value)))
    with pytest.raises(ReplayError) as refused:
        runrecord.read(tmp_path)
    assert str(refused.value) == f"{written} is damaged: it {clause}. {RUN_AGAIN}"


def test_a_run_record_too_deep_to_read_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path / runrecord.RECORD_FILE, DEEP)
    with pytest.raises(ReplayError) as refused:
        runrecord.read(tmp_path)
    assert str(refused.value) == f"{path} is unreadable ({TOO_DEEP}); give another run."


def test_a_listing_or_trace_too_deep_or_of_the_wrong_shape_is_none(tmp_path: Path) -> None:
    listing = _write(tmp_path / runrecord.DATA_FOLDER / "train.json", DEEP)
    trace = _write(tmp_path / runrecord.TRACE_FILE, DEEP)
    assert runrecord.read_listing(tmp_path, "train") is None
    assert replay.read_trace(trace) is None
    listing.write_text("[0]")
    assert runrecord.read_listing(tmp_path, "train") is None


def test_a_listed_path_no_file_name_decodes_to_is_malformed() -> None:
    item = ["\ud800", 3, A]
    with pytest.raises(ReplayError) as refused:
        datadigest.Digest.from_listing([item])
    assert str(refused.value) == (
        f"the recorded data listing is malformed: item 0 ({item!r}) has no relative path. The "
        "run record was edited or damaged; take the listing from an intact copy."
    )
    assert datadigest.verify_listing(LISTING_ROOT, [item]) is False


def test_process_reports_too_deep_or_of_the_wrong_types_are_left_out(tmp_path: Path) -> None:
    _write(tmp_path / "process-1.json", DEEP)
    _write(tmp_path / "process-2.json", _json({**valid_process(), "threads": "8"}))
    _write(tmp_path / "process-3.json", _json({**valid_process(), "started": 10**400}))
    _write(tmp_path / "process-4.json", _json(valid_process()))
    assert runrecord.read_processes(tmp_path) == [valid_run().processes[0]]


_MANIFEST = valid_manifest()


def test_a_manifest_too_deep_to_read_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path / layout.MANIFEST_FILE, DEEP)
    with pytest.raises(VerifyError) as refused:
        verify.read_manifest(path)
    assert str(refused.value) == (
        f"{path} is not a reprobuild manifest ({TOO_DEEP}): get the file again from where the "
        "paper published it."
    )
    with pytest.raises(ReplayError) as refused_too:
        replay.recorded_runs(path)
    assert str(refused_too.value) == f"{path} is unreadable ({TOO_DEEP}); give another manifest."


def test_a_published_run_of_the_wrong_shape_is_named(tmp_path: Path) -> None:
    path = tmp_path / layout.MANIFEST_FILE
    _write(path, _json(_changed(_MANIFEST, "runs/0/record/image", 5)))
    with pytest.raises(ReplayError) as refused:
        replay.recorded_runs(path)
    assert str(refused.value) == (
        f"{path} (run 1) is damaged: it has image = 5, not a string. {RUN_AGAIN}"
    )
    _write(path, _json(_changed(_MANIFEST, "runs/0/data_listings/train", 5)))
    (run,) = replay.recorded_runs(path)
    assert run.listings == {"train": None}


def test_a_smoke_report_too_deep_or_whose_canary_is_no_object_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "smoke.json", DEEP)
    with pytest.raises(PublishError) as refused:
        publish.read_report(path)
    assert str(refused.value) == (
        f"{path} is not a smoke report ({TOO_DEEP}): give the output of `reprobuild smoke --json`."
    )
    with pytest.raises(PublishError) as refused:
        publish.check_smoke(_changed(valid_smoke(), "canary", [7]), valid_build())
    assert str(refused.value) == (
        "the smoke report cannot be used: its 'canary' is not a dict. Give the output of "
        "`reprobuild smoke --json` for this build."
    )


_PAYLOAD = _payload_report()
ANY_VERDICT = 'not "pass" or "fail" or "unproven" or "precondition"'


@pytest.mark.parametrize(
    ("path", "value", "clause"),
    [
        ("key", DROP, "lacks key"),
        ("mode", DROP, "lacks mode"),
        ("key", [], "has key = [...], not an object"),
        ("preconditions", 5, "has preconditions = 5, not an array"),
        ("preconditions/0", [], "has preconditions[0] = [...], not an object"),
        ("preconditions/0/ok", DROP, "has preconditions without a name, ok and detail"),
        ("preconditions/0/name", None, "has a precondition whose name is not a string"),
        ("preconditions", DROP, "lacks preconditions"),
        ("kernels", DROP, "lacks kernels"),
        ("kernels", [], "has kernels = [...], not an object"),
        ("kernels/conv2d", [], "has kernels.conv2d = [...], not an object"),
        ("kernels/conv2d/identical", DROP, "lacks kernels.conv2d.identical"),
        ("kernels/conv2d/runs", DROP, "lacks kernels.conv2d.runs"),
        ("kernels/conv2d/runs", [], "has a kernel without runs"),
        ("kernels/conv2d/runs/0", 1, "has kernels.conv2d.runs[0] = 1, not a string"),
        ("errors", DROP, "lacks errors"),
        ("errors", [], "has errors = [...], not an object"),
        ("skipped", DROP, "lacks skipped"),
        ("skipped", [], "has skipped = [...], not an object"),
        ("canary", DROP, "lacks canary"),
        ("canary/differed", DROP, "has a canary without differed and witnesses"),
        ("canary", [1], "has canary = [...], not an object"),
        ("verdict", "maybe", f'has verdict = "maybe", {ANY_VERDICT}'),
        ("verdict", [], f"has verdict = [...], {ANY_VERDICT}"),
        ("wall_s", DROP, "lacks wall_s"),
    ],
)
def test_a_payload_report_of_the_wrong_shape_is_named(path: str, value: Any, clause: str) -> None:
    engine = cast("Engine", _Engine(json.dumps(_changed(_PAYLOAD, path, value))))
    image = recordfile.ImageToRun("lab/model:x", CONFIG, None)
    with pytest.raises(SmokeError) as refused:
        check_smoke.run_smoke(engine, image, gpus="all")
    assert str(refused.value) == (
        f"the smoke payload in lab/model:x wrote a report this reprobuild cannot read: it "
        f"{clause}. Rebuild the image with this reprobuild (`reprobuild build`); `docker run "
        "--rm IMAGE reprobuild-smoke --json` shows the report as written."
    )


def test_a_payload_output_too_deep_to_read_is_no_report() -> None:
    engine = cast("Engine", _Engine(DEEP.decode()))
    image = recordfile.ImageToRun("lab/model:x", CONFIG, None)
    with pytest.raises(SmokeError) as refused:
        check_smoke.run_smoke(engine, image, gpus="all")
    assert str(refused.value) == (
        f"the smoke payload in lab/model:x exited 0 without a report:\n{DEEP.decode()}\n"
        "Run `docker run --rm IMAGE reprobuild-smoke` to see its whole output."
    )


CHALLENGE = 'Bearer realm="https://auth.example.org/token",service="r"'


def _resolve(challenge: str | None = None, **answers: Any) -> registry.ResolvedImage:
    served = {"manifests": VALID_MANIFEST, "image": VALID_MANIFEST, "blobs": VALID_CONFIG}
    served |= {"token": {"token": "t"}, **answers}
    as_bytes = {name: a if isinstance(a, bytes) else _json(a) for name, a in served.items()}
    client = registry.RegistryClient(attempts=1)
    client._session = cast("requests.Session", _Session(as_bytes, challenge))
    return client.resolve(ImageReference.parse("registry.example.org/lab/base:1"))


NOT_JSON = (
    "it is not JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"
)
NOT_UTF8 = "it is not JSON ('utf-8' codec can't decode byte 0xff in position 0: invalid start byte)"
NOT_LISTED = "its manifests are not a list of objects"
NO_ENV = "its config.Env is not a list of strings"
NO_DIGEST = _changed(VALID_INDEX, "manifests/1/digest", DROP)


@pytest.mark.parametrize(
    ("answers", "what", "problem"),
    [
        ({"manifests": b"{"}, "a manifest", NOT_JSON),
        ({"manifests": b"\xff"}, "a manifest", NOT_UTF8),
        ({"manifests": DEEP}, "a manifest", f"it is not JSON ({TOO_DEEP})"),
        ({"manifests": []}, "a manifest", "it is not a JSON object"),
        ({"manifests": {"manifests": 5}}, "an index", NOT_LISTED),
        ({"manifests": {"manifests": [1]}}, "an index", NOT_LISTED),
        ({"manifests": NO_DIGEST}, "an index", "its linux/amd64 entry names no digest"),
        ({"blobs": b"{"}, "a config blob", NOT_JSON),
        ({"blobs": b"\xff"}, "a config blob", NOT_UTF8),
        ({"blobs": DEEP}, "a config blob", f"it is not JSON ({TOO_DEEP})"),
        ({"blobs": {"config": "x"}}, "a config blob", NO_ENV),
        ({"blobs": {"config": {"Env": 5}}}, "a config blob", NO_ENV),
        ({"challenge": CHALLENGE, "token": b"{"}, "a token answer", NOT_JSON),
        ({"challenge": CHALLENGE, "token": []}, "a token answer", "it is not a JSON object"),
    ],
)
def test_a_registry_answer_of_the_wrong_shape_is_named(
    answers: dict[str, Any], what: str, problem: str
) -> None:
    with pytest.raises(RegistryError) as refused:
        _resolve(**answers)
    assert str(refused.value) == (
        f"registry.example.org answered registry.example.org/lab/base:1 with {what} that is not "
        f"one ({problem}): the registry or something between us and it is broken. Lock from "
        "another network or registry mirror."
    )


def test_an_index_entry_or_a_manifest_of_the_wrong_shape_gives_the_message_it_gave() -> None:
    with pytest.raises(RegistryError) as refused:
        _resolve(manifests={"manifests": [{"platform": "linux/amd64"}]})
    assert str(refused.value) == (
        "registry.example.org/lab/base:1 has no linux/amd64 image (it has None/None); choose a "
        "base built for linux/amd64."
    )
    with pytest.raises(RegistryError) as refused:
        _resolve(manifests={"config": []})
    assert str(refused.value) == (
        "registry.example.org/lab/base:1: the manifest names no config blob, so it is not a "
        "container image: check the reference, or give the base by a digest of an image."
    )


def test_a_registry_answering_as_registries_do_resolves() -> None:
    resolved = _resolve(challenge=CHALLENGE, manifests=VALID_INDEX)
    index = f"sha256:{hashlib.sha256(_json(VALID_INDEX)).hexdigest()}"
    assert (resolved.digest, resolved.index_digest) == (AMD64, index)
    assert resolved.config_digest == CONFIG
    assert resolved.env_value("PYTHON_VERSION") == "3.11.9"


def test_a_spec_too_deep_to_read_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path / "reprobuild.toml", b"a = " + DEEP)
    with pytest.raises(SpecError) as refused:
        load_spec(tmp_path, KB)
    assert str(refused.value) == (
        f"{path}: 1 problem in the spec:\n  - nests arrays or tables too deeply to be read."
    )
