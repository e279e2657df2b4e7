"""Turn records into text for people. Returns strings or rich renderables; never prints.

rich is imported inside the functions that need it, so the plain `resolve` path stays fast.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from builder.check.doctor import FAIL, OK, WARN, DoctorReport
from builder.codeset import size_text
from builder.knowledge import AMD64, Knowledge, TorchBuild
from builder.resolve.resolve import Resolution, arch_summary
from builder.resolve.target import gpu_label

if TYPE_CHECKING:
    from pathlib import Path

    from rich.table import Table

    from builder.build.buildrecord import BuildRecord
    from builder.build.gc import GcEntry, GcPlan, GcResult
    from builder.check.diff import Entry, FileDifference, ImageDiff
    from builder.knowledge.refresh import RefreshReport
    from builder.lock.lockfile import CurrentLock
    from builder.lock.model import Lock
    from builder.publish.findings import Verification


def shows_platform(resolutions: tuple[Resolution, ...]) -> bool:
    """Whether `resolve` names each block's platform: unless it is linux/amd64 alone."""
    return [resolution.platform for resolution in resolutions] != [AMD64]


def resolutions_json(resolutions: tuple[Resolution, ...]) -> object:
    """`resolve --json`: one object for one platform, a list of them for several."""
    documents = [resolution.to_dict() for resolution in resolutions]
    return documents[0] if len(documents) == 1 else documents


def resolution_text(resolution: Resolution, platform: bool = False) -> str:
    """The chosen build and its facts; with `platform`, a line naming the image platform."""
    build = resolution.build
    origin = "PyPI default" if build.pypi_default else "variant index"
    index = "PyPI" if build.index == "pypi" else build.index
    lines = [
        f"{resolution.name}: torch {build.label} ({origin}) for Python {resolution.python}",
        *([f"  platform   {resolution.platform}"] if platform else []),
        f"  install    {resolution.pin} from {index}",
    ]
    lines.extend(
        f"  with       {pairing.pin} ({pairing.reason})" for pairing in resolution.companions
    )
    if build.cuda is None:
        lines.append("  CUDA       none (CPU-only build)")
    else:
        lines.append(
            f"  CUDA       {build.cuda} (runtime {build.cuda_runtime or 'unknown'}), "
            f"cuDNN {build.cudnn or 'unknown'}, NCCL {build.nccl or 'unknown'}"
        )
        full = f"; full CUDA {build.cuda} toolkit features from {resolution.toolkit_driver}"
        lines.append(
            f"  driver     >= {resolution.min_driver} (CUDA {build.cuda.major}.x minor-version "
            f"compatibility){full if resolution.toolkit_driver else ''}"
        )
        lines.append(f"  kernels    {arch_summary(build)}")
    lines.append(f"  target     {resolution.target.describe()}")
    for covered in resolution.coverage:
        lines.append(f"    {gpu_label(covered.gpu)}: {covered.via} kernels")
    lines.append(f"  knowledge  {resolution.knowledge_version}")
    lines.extend(f"  note: {note}" for note in resolution.notes)
    return "\n".join(lines)


def pairing_lines(resolution: Resolution) -> list[str]:
    """`resolve --explain`: each companion, the torch release it pairs with, and the source."""
    if not resolution.companions:
        return []
    width = max(len(f"{p.package} {p.version}") for p in resolution.companions)
    return ["Companions, paired with the chosen torch:"] + [
        f"  {f'{p.package} {p.version}':<{width}}  pairs with torch {p.torch} ({p.reason}; "
        f"source: {p.source})"
        for p in resolution.companions
    ]


def candidates_table(resolution: Resolution) -> Table:
    from rich.table import Table

    table = Table(title="Candidates, in order of preference", title_justify="left")
    table.add_column("build")
    table.add_column("index")
    table.add_column("verdict")
    table.add_column("why")
    for verdict in resolution.verdicts:
        if verdict.build == resolution.build:
            state, why = "[green]chosen[/]", "; ".join(verdict.notes) or "first eligible"
        elif verdict.eligible:
            state, why = (
                "eligible",
                "ranked lower (PyPI default, then newer CUDA, then newer torch)",
            )
        else:
            state, why = "[red]rejected[/]", "; ".join(verdict.rejections)
        table.add_row(verdict.build.label, short_index(verdict.build.index), state, why)
    return table


def builds_table(builds: list[TorchBuild], knowledge: Knowledge) -> Table:
    from rich.table import Table

    table = Table(title=f"knowledge {knowledge.version}", title_justify="left")
    for column in (
        "build",
        "platform",
        "index",
        "CUDA",
        "runtime",
        "cuDNN",
        "NCCL",
        "kernels",
        "Pythons",
        "read",
    ):
        table.add_column(column, no_wrap=column in ("build", "platform", "index", "Pythons"))
    for build in builds:
        table.add_row(
            build.label + (" *" if build.pypi_default else ""),
            build.platform,
            short_index(build.index),
            str(build.cuda or "-"),
            build.cuda_runtime or "-",
            build.cudnn or "-",
            build.nccl or "-",
            arch_summary(build),
            python_range(build.pythons),
            build.read,
        )
    table.caption = "* PyPI default build.  Sources: `reprobuild knowledge show ... --json`."
    return table


def short_index(index: str) -> str:
    return "PyPI" if index == "pypi" else "/".join(index.rstrip("/").split("/")[-2:])


def python_range(pythons: tuple[str, ...]) -> str:
    return f"{pythons[0]}-{pythons[-1]}" if len(pythons) > 1 else "".join(pythons)


def gpus_table(knowledge: Knowledge) -> Table:
    from rich.table import Table

    table = Table(title="GPU names the spec accepts in target.gpus", title_justify="left")
    table.add_column("capability")
    table.add_column("name")
    table.add_column("also")
    table.add_column("platform")
    for model in knowledge.gpus:
        table.add_row(
            model.capability.sm, model.name, ", ".join(model.aliases), model.platform or "any"
        )
    table.caption = "platform: the image platform the GPU's machine runs (Grace: Arm CPU)."
    return table


_MARKS = {OK: "[green]ok  [/]", WARN: "[yellow]warn[/]", FAIL: "[red]FAIL[/]"}


def doctor_lines(report: DoctorReport) -> list[str]:
    lines = [f"{_MARKS.get(c.status, '    ')} {c.topic:<15} {c.detail}" for c in report.checks]
    if report.image is not None:
        verdict = "[green]runs here[/]" if report.runs_here else "[red]will NOT run here[/]"
        lines.append(f"image {report.image}: {verdict}")
    return lines


def refresh_lines(report: RefreshReport, written: str) -> list[str]:
    lines = [
        f"wrote {written}: {len(report.added)} added, {len(report.changed)} changed, "
        f"{len(report.unchanged)} unchanged, {len(report.kept)} kept from the shipped data"
    ]
    if report.added:
        lines.append(f"added: {', '.join(report.added)}")
    if report.changed:
        lines.append(f"changed: {', '.join(report.changed)}")
    if report.unmeasured:
        lines.append(
            "compiled architectures not measured yet (the resolver will not promise GPU "
            f"coverage for them): {', '.join(report.unmeasured)}"
        )
    pairs = report.companions
    lines.append(
        f"companions.json: {len(pairs.added)} added, {len(pairs.changed)} changed, "
        f"{len(pairs.unchanged)} unchanged, {len(pairs.kept)} kept from the shipped data"
    )
    if pairs.added:
        lines.append(f"pairs added: {', '.join(pairs.added)}")
    if pairs.changed:
        lines.append(f"pairs changed: {', '.join(pairs.changed)}")
    lines.extend(f"kept as shipped, index did not answer: {text}" for text in report.unreachable)
    return lines


def count(number: int, noun: str) -> str:
    """`1 wheel`, `24 wheels`."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def lock_summary(written: CurrentLock) -> str:
    """One line for a lock of one platform; a line per platform under the file for several."""
    each = written.lock.each_platform()
    if len(each) == 1:
        return f"wrote {written.path}: {_pinned(each[0])}"
    return "\n".join(
        [f"wrote {written.path}:", *(f"  {lock.platform}: {_pinned(lock)}" for lock in each)]
    )


def _pinned(lock: Lock) -> str:
    wheels, packages = len(lock.python.packages), len(lock.system.packages)
    return (
        f"torch {lock.resolution['torch']['label']}, {count(wheels, 'wheel')}, "
        f"base {lock.base.image or lock.base.reference}, {count(packages, 'system package')}"
    )


def build_lines(record: BuildRecord, path: Path) -> list[str]:
    size = sum(layer.size for layer in record.layers) / 1e9
    several = bool(record.other_platforms)
    shown = f" ({record.platform})" if several or record.platform != AMD64 else ""
    lines = [
        f"built {record.image}{shown}",
        f"  image ID {record.image_id} ({size:.2f} GB, {len(record.layers)} layers)",
    ]
    for other in record.other_platforms:
        lines.append(f"built {other.image} ({other.platform})")
        lines.append(f"  image ID {other.image_id}")
    if record.pushed:
        lines.append(f"  pushed {record.pushed}; reprobuild.def now bootstraps from it")
    if record.pushed_index:
        lines.append(f"  pushed the index of {', '.join(record.platforms)}: {record.pushed_index}")
    if record.normalisation.get("rewritten"):
        noise = len(record.normalisation["rewritten"])
        lines.append(f"  normalised: {noise} noisy entries removed or redated")
    lines.append(f"  record {path}")
    return lines


CHECK_WIDTH = len("fingerprints")  # one column for every check, whichever ran


def verify_lines(result: Verification) -> list[str]:
    width = max(CHECK_WIDTH, *(len(finding.check) for finding in result.findings))
    out = [f"{f.status:<4} {f.check:<{width}}  {f.detail}" for f in result.findings]
    verdict = "verified" if not result.failed else "NOT verified"
    unchecked = any(f.check == "fingerprints" and f.status == "skip" for f in result.findings)
    if not result.failed and unchecked:
        verdict += " (fingerprints not compared)"
    out.append(f"{result.reference}: {verdict}")
    return out


CLIP = 120


def diff_text(report: ImageDiff, max_files: int = 200) -> str:
    """The report as plain text; at most `max_files` file lines (0: all of them)."""
    names = [f"A: {report.image_a} ({_short(report.id_a)})"]
    names.append(f"B: {report.image_b} ({_short(report.id_b)})")
    if report.identical:
        return "\n".join([*names, "identical: both names are the same image"])
    sections = [names, _config_lines(report), _layer_lines(report), _file_lines(report, max_files)]
    return "\n\n".join("\n".join(lines) for lines in sections)


def _config_lines(report: ImageDiff) -> list[str]:
    if not report.config:
        return ["config: the same fields and values (the documents differ only in encoding)"]
    lines = [f"config: {count(len(report.config), 'field')} differ"]
    for difference in report.config:
        lines.append(f"  {difference.path}")
        lines += [f"    A: {_value(difference.a)}", f"    B: {_value(difference.b)}"]
    return lines


def _value(text: str | None) -> str:
    if text is None:
        return "(absent)"
    return text if len(text) <= CLIP else text[: CLIP - 3] + "..."


def _layer_lines(report: ImageDiff) -> list[str]:
    count_a = sum(layer.a is not None for layer in report.layers)
    count_b = sum(layer.b is not None for layer in report.layers)
    counts = f"A has {count_a}, B has {count_b}"
    differing = sum(not layer.equal for layer in report.layers)
    lines = [f"layers: {counts}; {differing} of {len(report.layers)} differ"]
    for layer in report.layers:
        if layer.equal:
            lines.append(f"  [{layer.index}] same     {_short(layer.a)}")
        else:
            lines.append(f"  [{layer.index}] differs  A {_short(layer.a)}  B {_short(layer.b)}")
    return lines


def _file_lines(report: ImageDiff, max_files: int) -> list[str]:
    if report.first_differing_layer is None:
        return ["files: every layer is the same; only the config differs"]
    index = report.first_differing_layer
    header = f"files in layer {index}, the first that differs: "
    if not report.files:
        return [header + "the same entries (the tars differ in order or padding)"]
    lines = [header + f"{count(len(report.files), 'path')} differ"]
    shown = report.files if max_files == 0 else report.files[:max_files]
    lines += [_file_line(difference) for difference in shown]
    if len(shown) < len(report.files):
        lines.append(f"  ... {len(report.files) - len(shown)} more (--max-files 0 lists all)")
    return lines


def _file_line(difference: FileDifference) -> str:
    if difference.kind != "changed" or difference.a is None or difference.b is None:
        return f"  {difference.kind:<9}  {difference.path}"
    changes = "; ".join(
        f"{name}: {_attribute(difference.a, name)} -> {_attribute(difference.b, name)}"
        for name in difference.attributes
    )
    return f"  changed    {difference.path}  {changes}"


def _attribute(entry: Entry, name: str) -> str:
    value = getattr(entry, name)
    if name == "mode":
        return f"{value:04o}"
    if name == "mtime":
        return _time(value)
    if name == "content":
        return _short(value) if value else "(none)"
    return _value(json.dumps(value) if name in ("linkname", "xattrs") else str(value))


def _time(mtime: float) -> str:
    try:
        moment = datetime.fromtimestamp(mtime, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return str(mtime)
    # Sub-second differences come from PAX headers; keep them visible.
    spec = "seconds" if mtime == int(mtime) else "microseconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def _short(digest: str | None) -> str:
    if digest is None:
        return "(none)"
    algorithm, _, hexdigest = digest.partition(":")
    return f"{algorithm}:{hexdigest[:12]}" if hexdigest else digest[:12]


def gc_lines(plan: GcPlan, dry_run: bool) -> list[str]:
    """The project's images with what gc does with each, and what it frees (or would)."""
    if not plan.entries:
        return [f"{plan.name}: the engine holds no image built from a lock of this project"]
    earlier = count(plan.earlier_locks, "earlier lock")
    lines = [f"{plan.name}: current lock {_short(plan.lock)}, {earlier}"]
    width = max(len(entry.reference) for entry in plan.entries)
    lines += [_gc_line(entry, width, plan.exact) for entry in plan.entries]
    going = plan.removals
    frees = f"{'' if plan.exact else 'up to '}{size_text(plan.frees)}"
    if not going:
        lines.append("nothing to remove")
    elif dry_run:
        lines.append(f"dry run: would remove {count(len(going), 'image')}, freeing {frees}")
    return lines


def gc_result_lines(result: GcResult) -> list[str]:
    lines = [
        f"  refused  {refusal.entry.reference}: {refusal.reason}" for refusal in result.refused
    ]
    if result.removed:
        freed = f"{'' if result.exact else 'up to '}{size_text(result.freed)}"
        lines.append(f"removed {count(len(result.removed), 'image')}, freed {freed}")
    return lines


def _gc_line(entry: GcEntry, width: int, exact: bool) -> str:
    frees = f"frees {'' if exact else 'up to '}{size_text(entry.frees)}"
    note = frees if entry.verdict == "remove" else entry.reason
    others = [tag for tag in entry.tags if tag != entry.reference]
    if others:
        note += f"; also named {', '.join(others)}"
    return (
        f"  {entry.verdict:<7}  {entry.reference:<{width}}  {_short(entry.image_id)}  "
        f"{size_text(entry.size):>8}  {note}"
    )
