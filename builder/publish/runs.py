"""`publish --run RUN_DIR`: a training run embedded in the manifest, so a reader can replay it.

A published run is its record (command, data names with digests, variable names, output
digests, trace, fingerprint key; never a secret's value), each data input's file listing (so a
replay names the file that changed) and the trace's entries (so it names the first differing
step). Only a run of the published image whose code is the image's own can be published: the
reader's replay runs the code in the image, so a run of uncommitted or other code could not be
reproduced from it.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from builder import layout
from builder.errors import PublishError, ReplayError
from builder.reference import ImageReference
from builder.run import replay, runrecord

if TYPE_CHECKING:
    from builder.build.buildrecord import BuildRecord


class PublishedRun(TypedDict):
    record: dict[str, Any]  # runrecord.RunRecord's JSON form, read back by runrecord
    data_listings: dict[str, list[list[Any]]]
    trace_entries: list[dict[str, Any]] | None


def published_runs(folders: list[Path], record: BuildRecord) -> list[PublishedRun]:
    return [published_run(folder, record) for folder in folders]


def published_run(folder: Path, build: BuildRecord) -> PublishedRun:
    """The run in `folder`, checked to be one a reader can replay from the manifest."""
    if not (folder.is_dir() or folder.name == runrecord.RECORD_FILE):
        raise PublishError(
            f"--run {folder}: give a run folder (runs/<run>) that `reprobuild run` wrote."
        )
    try:
        (run,) = replay.recorded_runs(folder)
    except ReplayError as error:
        raise PublishError(f"--run {folder}: {error}") from None
    problem = unpublishable(run, build)
    if problem:
        raise PublishError(f"--run {folder}: {problem}")
    listings = {name: listing for name, listing in run.listings.items() if listing is not None}
    return {
        "record": asdict(run.record),
        "data_listings": listings,
        "trace_entries": run.trace,
    }


def unpublishable(run: replay.RecordedRun, build: BuildRecord) -> str | None:
    """Why a reader could not replay this run from the published image; None when they can."""
    record = run.record
    if record.image_id != build.image_id:
        return (
            f"the run used image {record.image_id[:19]}, not the published build "
            f"{build.image_id[:19]}. Run it again in this build (`reprobuild run`) and publish "
            "that run."
        )
    if record.exit_code != 0:
        return f"the run exited {record.exit_code}; publish a run that succeeded."
    missing = sorted(name for name in record.data if run.listings.get(name) is None)
    if missing:
        return f"the file listing of data {missing[0]!r} is gone from the run folder; run again."
    if record.code_mounted:
        same_code = (
            record.git_commit is not None
            and record.git_commit == build.git_commit
            and record.git_dirty is False
            and build.git_dirty is False
        )
        if not same_code:
            return (
                f"the run's code (commit {record.git_commit}, "
                f"{'with' if record.git_dirty else 'without'} uncommitted changes) is not the "
                f"code in the image (commit {build.git_commit}, "
                f"{'with' if build.git_dirty else 'without'} uncommitted changes), and a reader "
                "replays the image's code. Commit, `reprobuild build`, run again, and publish "
                "that run."
            )
    return None


def data_variable(name: str) -> str:
    """The shell variable REPRODUCE.md's commands read a data input's place from."""
    return "DATA_" + "".join(c if c.isalnum() else "_" for c in name).upper()


def replay_command(run: PublishedRun) -> str:
    """The one command that reproduces the run, each data input at the place the reader
    keeps it (a shell variable, so that the command runs as written once those are set)."""
    words = shlex.join(["reprobuild", "replay", layout.MANIFEST_FILE])
    for name in sorted(run["record"]["data"]):
        words += f' --data {shlex.quote(name)}="${data_variable(name)}"'
    return words


def reproduce_lines(runs: list[PublishedRun]) -> list[str]:
    """REPRODUCE.md's section on the published runs."""
    if not runs:
        return []
    lines = ["## Reproduce the training", ""]
    for run in runs:
        lines += _run_lines(run)
    return lines


def _run_lines(run: PublishedRun) -> list[str]:
    record = run["record"]
    command = shlex.join(record["command"])
    lines = [
        f"The run `{command}` (exit {record['exit_code']}, {record['started']}) in this image:",
        "",
    ]
    data = record["data"]
    if data:
        lines += [
            "The data it read, which you provide (each is checked by digest before the run "
            "starts; a changed, added or missing file is named). Set each variable to where "
            "you keep that data:",
            "",
            *(f"- `{data_variable(name)}`: the `{name}` data" for name in sorted(data)),
            "",
            "| name | mounted at | files | bytes | digest |",
            "|---|---|---|---|---|",
            *(
                f"| {name} | `{entry['inside']}` | {entry['files']} | {entry['bytes']} | "
                f"`{entry['root']}` |"
                for name, entry in sorted(data.items())
            ),
            "",
        ]
    names = sorted(record["env"])
    if names:
        secrets = [name for name in names if record["env"][name] is None]
        lines.append(f"Variables it was given: {', '.join(f'`{n}`' for n in names)}.")
        if secrets:
            lines.append(
                f"Set {', '.join(f'`{n}`' for n in secrets)} yourself: secret values are not "
                "published."
            )
        lines.append("")
    lines += [
        "The outputs it wrote, which a replay must give bit for bit:",
        "",
        "| file | bytes | sha256 |",
        "|---|---|---|",
        *(
            f"| `{entry['path']}` | {entry['size']} | `{entry['sha256']}` |"
            for entry in record["outputs"]["entries"]
        ),
        "",
    ]
    trace = record["trace"]
    if trace:
        lines += [
            f"Its trace holds {trace['entries']} hashes of the parameters and optimizer state, "
            f"one every {trace['interval']} optimizer steps (head `{trace['head']}`): a replay "
            "names the first step where it parts from them.",
            "",
        ]
    lines += [
        "Replay it (the image is pulled by digest; exit 0: identical, 1: differs, naming the "
        "files and the first differing step, 4: the data or image is not as recorded):",
        "",
        "```sh",
        replay_command(run),
        "```",
        "",
    ]
    key = record.get("key")
    if key:
        lines += [
            "It ran with this fingerprint key; identical bits are promised on an identical key:",
            "",
            "| key | value |",
            "|---|---|",
            *(f"| {name} | {_cell(value)} |" for name, value in sorted(key.items())),
            "",
        ]
    return lines


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text.replace("|", "\\|")


PRIVATE_DOMAINS = (".local", ".localhost", ".internal", ".lan", ".home.arpa")


def private_registry(pushed: str) -> str | None:
    """A note when the image is in a registry readers cannot reach (loopback or a private
    network); None for one they can."""
    registry = ImageReference.parse(pushed).registry.lower()
    host = registry[1:].split("]")[0] if registry.startswith("[") else registry.split(":")[0]
    try:
        private = not ipaddress.ip_address(host).is_global
    except ValueError:  # a name: this machine's, a local network's, or one without a domain
        private = host == "localhost" or "." not in host or host.endswith(PRIVATE_DOMAINS)
    if not private:
        return None
    return (
        f"the image is in {host}, a registry on this machine or a private network: readers of "
        "the paper cannot pull it. Publish to a registry they can reach (--to "
        "registry.example.org/lab/NAME:TAG)."
    )
