"""Turn records into text for people. Returns strings or rich renderables; never prints.

rich is imported inside the functions that need it, so the plain `resolve` path stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from builder.check.doctor import FAIL, OK, WARN, DoctorReport
from builder.knowledge import Knowledge, TorchBuild
from builder.resolve.resolve import Resolution, arch_summary
from builder.resolve.target import gpu_label

if TYPE_CHECKING:
    from rich.table import Table

    from builder.knowledge.refresh import RefreshReport


def resolution_text(resolution: Resolution) -> str:
    build = resolution.build
    origin = "PyPI default" if build.pypi_default else "variant index"
    index = "PyPI" if build.index == "pypi" else build.index
    lines = [
        f"{resolution.name}: torch {build.label} ({origin}) for Python {resolution.python}",
        f"  install    {resolution.pin} from {index}",
    ]
    if build.cuda is None:
        lines.append("  CUDA       none (CPU-only build)")
    else:
        lines.append(
            f"  CUDA       {build.cuda} (runtime {build.cuda_runtime or 'bundled'}), "
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
        "index",
        "CUDA",
        "runtime",
        "cuDNN",
        "NCCL",
        "kernels",
        "Pythons",
        "read",
    ):
        table.add_column(column, no_wrap=column in ("build", "index", "Pythons"))
    for build in builds:
        table.add_row(
            build.label + (" *" if build.pypi_default else ""),
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
    for model in knowledge.gpus:
        table.add_row(model.capability.sm, model.name, ", ".join(model.aliases))
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
    lines.extend(f"kept as shipped, index did not answer: {text}" for text in report.unreachable)
    return lines


def count(number: int, noun: str) -> str:
    """`1 wheel`, `24 wheels`."""
    return f"{number} {noun}{'' if number == 1 else 's'}"
