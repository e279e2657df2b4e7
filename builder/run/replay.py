"""`reprobuild replay RUN_DIR | MANIFEST`: the recorded run again, and where it diverges.

The recorded command runs in the recorded image (by ID, or pulled by digest) with the recorded
data (every input's digest checked before the start: a changed, added or missing file is named
and nothing runs), the recorded variables (a secret's value taken from this environment again),
the recorded torch thread count, /dev/shm size, GPUs and trace interval. The replay is a run of
its own, recorded under runs/ with `replay_of` naming the original; its comparison with the
original is written beside it (replay.json): exit code, every output file, the trace's first
differing step, and the fingerprint key, whose differing parts are named because identical bits
are promised only for an identical key.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder import layout, source
from builder.errors import EngineError, ReplayError, ReplayPrecondition, RunInputError
from builder.files import write_output
from builder.run import datadigest, inputs, runrecord
from builder.run.run import Outcome, RunPlan, execute

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from builder.engine.wire import Wire

REPLAY_FILE = "replay.json"
MANIFEST_RUNS = "runs"  # the manifest's list of published runs (builder/publish/publish.py)
THREADS_VARIABLE = "REPROBUILD_THREADS"
IDENTICAL, DIFFERS = 0, 1


@dataclass(frozen=True)
class RecordedRun:
    """A run to replay: its record, each input's file listing, its trace entries, where it was
    read, and the image to pull when the engine lacks it (a manifest's name@sha256)."""

    record: runrecord.RunRecord
    listings: dict[str, list[list[Any]] | None]
    trace: list[dict[str, Any]] | None
    origin: str
    pull: str | None
    from_manifest: bool
    project: str | None = None  # a run folder's project (runs/<run> in it); None from a manifest


def recorded_runs(path: Path) -> list[RecordedRun]:
    """The run a run folder (or its run.json) holds, or the runs a manifest publishes."""
    if path.is_dir() or path.name == runrecord.RECORD_FILE:
        folder = path if path.is_dir() else path.parent
        record = runrecord.read(folder)
        listings = {name: runrecord.read_listing(folder, name) for name in record.data}
        trace = _entries(read_trace(folder / runrecord.TRACE_FILE), record, str(folder))
        project = str(folder.resolve().parent.parent)
        return [RecordedRun(record, listings, trace, str(folder), record.pushed, False, project)]
    return manifest_runs(path)


def manifest_runs(path: Path) -> list[RecordedRun]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReplayError(
            f"{path} does not exist: give a run folder (runs/<run>) or a manifest "
            f"({layout.MANIFEST_FILE}) that `reprobuild publish --run` wrote."
        ) from None
    except (OSError, ValueError, RecursionError) as error:
        raise ReplayError(f"{path} is unreadable ({error}); give another manifest.") from None
    published = document.get(MANIFEST_RUNS) if isinstance(document, dict) else None
    if not published:
        raise ReplayError(
            f"{path} publishes no run: the author publishes one with `reprobuild publish --run "
            "runs/<run>`; without it there is nothing to replay (`reprobuild verify` checks the "
            "image)."
        )
    image = document.get("image")
    reference = image.get("reference") if isinstance(image, dict) else None
    if not isinstance(reference, str) or not isinstance(published, list):
        raise ReplayError(
            f"{path} is damaged (its image reference or its runs are not what `reprobuild "
            "publish` writes): get the file again from where the paper published it."
        )
    runs = []
    for index, run in enumerate(published):
        where = f"{path} (run {index + 1})"
        if not isinstance(run, dict) or not isinstance(run.get("data_listings"), dict):
            raise ReplayError(f"{where} is not a published run; the manifest was edited.")
        record = runrecord.from_document(run.get("record"), where)
        listings = run["data_listings"]
        trace = _entries(run.get("trace_entries"), record, where)
        runs.append(
            RecordedRun(
                record, {name: runrecord.as_listing(listings.get(name)) for name in record.data},
                trace, where, reference, True,
            )
        )  # fmt: skip
    return runs


def _entries(trace: object, record: runrecord.RunRecord, where: str) -> list[dict[str, Any]] | None:
    """A run's trace entries, which a traced run must have: a replay compares them."""
    if record.trace is None:
        return None
    if not isinstance(trace, list) or not all(isinstance(entry, dict) for entry in trace):
        raise ReplayError(
            f"{where}: the run was traced, but its trace entries are missing or damaged, so the "
            "replay could not name where it parts from the run. Restore them (trace.jsonl in a "
            "run folder, trace_entries in a manifest)."
        )
    return trace


def read_trace(path: Path) -> list[dict[str, Any]] | None:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]
    except (OSError, ValueError, RecursionError):
        return None


# Before the start: data, variables, image.


def checked_data(
    run: RecordedRun,
    moved: Mapping[str, str],
    known: set[str],
    progress: Callable[[str], None] | None = None,
) -> list[inputs.DataMount]:
    """The recorded data at its recorded (or moved) place, each digest checked against the
    record; ReplayPrecondition naming what changed. `known`: the data names of every run
    replayed (a --data may be another run's)."""
    unknown = sorted(set(moved) - known)
    if unknown:
        names = ", ".join(sorted(known)) or "none"
        raise RunInputError(
            f"--data {unknown[0]}: the run recorded no data of that name (it recorded: "
            f"{names}). Give --data NAME=PATH for a recorded NAME."
        )
    mounts = []
    for name, recorded in sorted(run.record.data.items()):
        path = moved.get(name, recorded.path)
        if not os.path.exists(path):
            raise ReplayPrecondition(
                f"data {name!r}: {path} does not exist here. The run needs it ({recorded.files} "
                f"file(s), {recorded.bytes} bytes, {recorded.root}); give its place: "
                f"--data {name}=PATH."
            )
        if progress is not None:
            files = f"{recorded.files} file{'' if recorded.files == 1 else 's'}"
            progress(f"checking data {name!r} ({files}, {recorded.bytes} bytes)")
        current = datadigest.digest_data(name, path)
        if current.root != recorded.root:
            raise ReplayPrecondition(_changed_data(name, path, run, current))
        mounts.append(inputs.DataMount(name, os.path.realpath(path), recorded.mode == "rw"))
    return mounts


def _changed_data(name: str, path: str, run: RecordedRun, current: datadigest.Digest) -> str:
    recorded = run.record.data[name]
    listing = run.listings.get(name)
    head = f"data {name!r} at {path} is not the data the run had ({recorded.root})"
    if listing is None or not datadigest.verify_listing(recorded.root, listing):
        return (
            f"{head}: its digest is {current.root}, and the record keeps no intact file list to "
            "name the files. Give the recorded data: --data NAME=PATH."
        )
    differences = datadigest.compare(listing, current)
    return (
        f"{head}: {differences.describe(subject=f'the recorded data {name!r}')} "
        f"Restore those files, or point --data {name}=PATH at the recorded data."
    )


def replay_environment(
    record: runrecord.RunRecord,
    changed: Mapping[str, str] | None = None,
    source: Mapping[str, str] | None = None,
) -> inputs.Environment:
    """The recorded variables, the secrets' values from this environment (each must be set),
    the recorded torch thread count (so a host with other cores uses the same), and the
    variables `changed` on purpose (`replay --env`), which the report names."""
    source = os.environ if source is None else source
    missing = [name for name in record.secrets if name not in source]
    if missing:
        listed = ", ".join(missing)
        raise ReplayPrecondition(
            f"the run was given the secret{'s' if len(missing) > 1 else ''} {listed}, whose "
            f"value{'s are' if len(missing) > 1 else ' is'} never recorded: set "
            f"{'them' if len(missing) > 1 else 'it'} in this environment (export {missing[0]}=...)."
        )
    values = {name: source[name] if value is None else value for name, value in record.env.items()}
    if record.threads is not None:
        values.setdefault(THREADS_VARIABLE, str(record.threads))
    values.update(changed or {})
    secrets = frozenset(name for name in values if inputs.is_secret(name, record.secrets))
    return inputs.Environment(values, secrets)


def replay_plan(
    run: RecordedRun,
    project: str,
    data: list[inputs.DataMount],
    gpus: str | None,
    changed: Mapping[str, str] | None = None,
) -> RunPlan:
    """The recorded run as a plan: the image by ID (a manifest's by its pulled digest), the
    code the run had (the project mounted as it was, or the image's own for a manifest)."""
    record = run.record
    return RunPlan(
        run.project or project,
        record.image_id if not run.from_manifest else run.pull,
        record.command,
        gpus=record.gpus_requested if gpus is None else gpus,
        data=data,
        environment=replay_environment(record, changed),
        shm_size=record.shm_size,
        trace=None if record.trace is None else record.trace.interval,
        mount_code=record.code_mounted and not run.from_manifest,
        replay_of=run.origin,
    )


def same_code(run: RecordedRun) -> str | None:
    """ReplayPrecondition when the project a run folder's replay mounts is not at the run's
    commit or has changes the run did not have; a note (or None) otherwise."""
    record = run.record
    if run.from_manifest or not record.code_mounted or record.git_commit is None:
        return None
    commit, dirty = source.git_state(Path(run.project or "."))
    if commit != record.git_commit or (dirty and not record.git_dirty):
        now = f"{commit or 'no commit'}{' with uncommitted changes' if dirty else ''}"
        raise ReplayPrecondition(
            f"the project's code is not the run's: the run was of commit {record.git_commit}, "
            f"the project is now at {now}. Check out {record.git_commit} (and set aside your "
            "changes: git stash) to replay it."
        )
    if record.git_dirty:
        return (
            "the run had uncommitted changes, which were not recorded: the replay runs the "
            "project as it is now."
        )
    return None


def available_image(wire: Wire, run: RecordedRun) -> None:
    """The recorded image in the engine, pulled by digest when missing; ReplayPrecondition when
    it cannot be had or is not the recorded one."""
    record = run.record
    if wire.image_id(record.image_id) is not None:
        return
    if run.pull is None:
        raise ReplayPrecondition(
            f"image {record.image_id[:19]} of the run is not in this engine and was never "
            "pushed, so it cannot be pulled: rebuild it (`reprobuild build`) or replay from a "
            "published manifest."
        )
    try:
        pulled = wire.ensure_image(run.pull)
    except EngineError as error:
        raise ReplayPrecondition(f"the run's image cannot be had: {error}") from None
    if pulled != record.image_id:
        raise ReplayPrecondition(
            f"{run.pull} is image {pulled[:19]}, not the run's {record.image_id[:19]}: the "
            "manifest was edited, or names another image. Replay from the original manifest."
        )


# After the end: the comparison.


@dataclass(frozen=True)
class Comparison:
    exit_codes: tuple[int, int]
    identical_files: int
    differing: list[str]
    missing: list[str]
    extra: list[str]
    trace_entries: tuple[int, int] | None  # original's, replay's; None: no trace to compare
    first_differing_step: dict[str, Any] | None
    key_differences: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    @property
    def identical(self) -> bool:
        same_trace = self.first_differing_step is None
        files = not (self.differing or self.missing or self.extra)
        return self.exit_codes[0] == self.exit_codes[1] and files and same_trace


def compare(
    original: runrecord.RunRecord,
    original_trace: list[dict[str, Any]] | None,
    replayed: runrecord.RunRecord,
    replayed_trace: list[dict[str, Any]] | None,
) -> Comparison:
    before = {entry.path: entry.sha256 for entry in original.outputs.entries}
    after = {entry.path: entry.sha256 for entry in replayed.outputs.entries}
    common = sorted(set(before) & set(after))
    traces = None
    first = None
    if original_trace is not None:
        got = replayed_trace or []
        traces = (len(original_trace), len(got))
        first = first_trace_difference(original_trace, got)
    return Comparison(
        exit_codes=(original.exit_code, replayed.exit_code),
        identical_files=sum(before[path] == after[path] for path in common),
        differing=[path for path in common if before[path] != after[path]],
        missing=sorted(set(before) - set(after)),
        extra=sorted(set(after) - set(before)),
        trace_entries=traces,
        first_differing_step=first,
        key_differences=key_differences(original.key, replayed.key),
    )


TRACE_FIELDS = ("step", "optimizer", "params", "state")


def first_trace_difference(
    original: list[dict[str, Any]], replayed: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """The first entry where the traces part: its step and optimizer and what differs there
    (parameters, optimizer state, or an entry one side lacks); None when they agree."""
    for index in range(max(len(original), len(replayed))):
        if index >= len(replayed):
            return {**_where(original[index]), "differs": ["missing from the replay"]}
        if index >= len(original):
            return {**_where(replayed[index]), "differs": ["not in the original"]}
        parts = [
            name for name in TRACE_FIELDS if original[index].get(name) != replayed[index].get(name)
        ]
        if parts:
            return {**_where(original[index]), "differs": parts}
    return None


def _where(entry: dict[str, Any]) -> dict[str, Any]:
    return {"step": entry.get("step"), "optimizer": entry.get("optimizer")}


def key_differences(
    original: dict[str, Any] | None, replayed: dict[str, Any] | None
) -> dict[str, tuple[Any, Any]]:
    """The fingerprint key's parts that differ (GPU, driver, library versions, CPU, cores)."""
    before, after = original or {}, replayed or {}
    return {
        name: (before.get(name), after.get(name))
        for name in sorted(set(before) | set(after))
        if before.get(name) != after.get(name)
    }


@dataclass(frozen=True)
class ReplayOutcome:
    run: Outcome
    comparison: Comparison
    origin: str
    changed: dict[str, str | None]  # variables set on purpose, not as recorded (secrets: None)

    @property
    def code(self) -> int:
        return IDENTICAL if self.comparison.identical else DIFFERS


def replay(
    wire: Wire,
    run: RecordedRun,
    plan: RunPlan,
    output: Callable[[bytes, bool], None],
    changed: Mapping[str, str] | None = None,
) -> ReplayOutcome:
    """Run the plan, compare with the recorded run, write the comparison beside the replay's
    own record."""
    available_image(wire, run)
    outcome = execute(wire, plan, output)
    folder = Path(outcome.record).parent
    replayed = runrecord.read(folder)
    trace = read_trace(folder / runrecord.TRACE_FILE) if replayed.trace else None
    comparison = compare(run.record, run.trace, replayed, trace)
    shown = {name: replayed.env.get(name) for name in sorted(changed or {})}
    document = {
        "replay_of": run.origin,
        "identical": comparison.identical,
        "changed_env": shown,
        **asdict(comparison),
    }
    write_output(folder / REPLAY_FILE, json.dumps(document, indent=2, sort_keys=True) + "\n")
    return ReplayOutcome(outcome, comparison, run.origin, shown)


def replay_all(
    wire: Wire,
    source: Path,
    project: str,
    *,
    moved: Mapping[str, str],
    gpus: str | None,
    changed: Mapping[str, str] | None,
    output: Callable[[bytes, bool], None],
    note: Callable[[str], None],
    done: Callable[[ReplayOutcome], None],
) -> int:
    """Replay each run `source` holds (`done` gets each outcome as it ends): every run's code,
    data and secrets checked before the first starts. 0 when all are identical, else 1."""
    runs = recorded_runs(source)
    known = {name for run in runs for name in run.record.data}
    plans = []
    for run in runs:
        if warning := same_code(run):
            note(warning)
        mounts = checked_data(run, moved, known, note)
        plans.append((run, replay_plan(run, project, mounts, gpus, changed)))
    code = IDENTICAL
    for run, plan in plans:
        outcome = replay(wire, run, plan, output, changed)
        done(outcome)
        code = max(code, outcome.code)
    return code
