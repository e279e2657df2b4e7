"""The `reprobuild` command: parse, call one stage, print. No logic lives here.

Modules beyond click are imported inside each command so that `reprobuild resolve` does not pay
for rich, requests, docker or NVML.
"""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from builder import __version__, launch
from builder.errors import ReprobuildError

if TYPE_CHECKING:
    from collections.abc import Callable

    from builder.knowledge import Knowledge
    from builder.lock.lockfile import LockState
    from builder.lock.stage import LockOptions
    from builder.resolve.resolve import Resolution
    from builder.spec.check import LoadedSpec


@dataclass(frozen=True)
class Options:
    project: Path
    knowledge_dir: Path | None

    def knowledge(self) -> Knowledge:
        from builder import knowledge

        return knowledge.load(self.knowledge_dir)


def _note(text: str) -> None:
    click.echo(f"note: {text}", err=True)


def _console() -> Any:
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal:  # pipes and CI logs: keep tables whole rather than squeezed
        console = Console(highlight=False, width=200)
    return console


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="reprobuild")
@click.option(
    "-C",
    "--project",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(),
    show_default=True,
    help="Project directory holding reprobuild.toml or pyproject.toml [tool.reprobuild].",
)
@click.option(
    "--knowledge",
    "knowledge_dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar=launch.KNOWLEDGE_VARIABLE,
    help="Use the knowledge base in this directory instead of the shipped one.",
)
@click.pass_context
def cli(context: click.Context, project: Path, knowledge_dir: Path | None) -> None:
    """Reproducible ML training images: resolve torch/CUDA/driver, lock every input, render."""
    context.obj = Options(project, knowledge_dir)


def _load_spec(options: Options, knowledge: Knowledge) -> LoadedSpec:
    from builder.spec import check as spec

    loaded = spec.load(options.project, knowledge)
    for text in loaded.notes:
        _note(text)
    return loaded


def _resolve(options: Options, knowledge: Knowledge, loaded: LoadedSpec) -> Resolution:
    from builder.resolve import resolve, target

    if loaded.spec.target.host:
        from builder.engine.host import probe_nvidia

        chosen_target = target.from_host(probe_nvidia())
    else:
        chosen_target = target.from_spec(loaded.spec.target)
    return resolve.resolve(loaded.spec, chosen_target, knowledge)


@cli.command("resolve")
@click.option("--explain", is_flag=True, help="Also show every candidate and its verdict.")
@click.option("--json", "as_json", is_flag=True, help="Print the resolution as JSON.")
@click.pass_obj
def resolve_command(options: Options, explain: bool, as_json: bool) -> None:
    """Choose the torch build (CUDA, cuDNN, NCCL, driver floor) for the project spec."""
    knowledge = options.knowledge()
    resolution = _resolve(options, knowledge, _load_spec(options, knowledge))
    if as_json:
        click.echo(json.dumps(resolution.to_dict(), indent=2))
        return
    from builder.cli.present import resolution_text

    click.echo(resolution_text(resolution))
    if explain:
        from builder.cli.present import candidates_table

        _console().print(candidates_table(resolution))


@cli.command("lock")
@click.option(
    "--check", "check_only", is_flag=True, help="Only verify the lock is current; exit 1 if not."
)
@click.option(
    "--upgrade", is_flag=True, help="Re-resolve everything even if the spec did not change."
)
@click.option(
    "--index-url",
    default="https://pypi.org/simple",
    show_default=True,
    help="Python package index for the closure.",
)
@click.option(
    "--debian-mirror",
    help="Archive apt resolves system packages from (default: the distribution's snapshot archive "
    "at the lock time, snapshot.debian.org or snapshot.ubuntu.com, so a rebuild years later "
    "fetches the same bytes).",
)
@click.option("--debian-security-mirror", help="Debian security archive (default: derived).")
@click.pass_obj
def lock_command(
    options: Options,
    check_only: bool,
    upgrade: bool,
    index_url: str,
    debian_mirror: str | None,
    debian_security_mirror: str | None,
) -> None:
    """Pin every input in reprobuild.lock: hashed Python closure, base digest, system packages."""
    from builder.cli.present import count
    from builder.lock import lockfile
    from builder.lock.stage import LockOptions

    knowledge = options.knowledge()
    loaded = _load_spec(options, knowledge)
    state = lockfile.inspect_at(loaded.path, loaded.table, read_lock=check_only or not upgrade)
    path = state.path
    if check_only:
        lockfile.current(state)
        click.echo(f"{path} is up to date with the spec")
        return
    if not upgrade and state.reason is None:
        click.echo(f"{path} is up to date with the spec (use --upgrade to re-resolve)")
        return
    lock_options = LockOptions(index_url, debian_mirror, debian_security_mirror)
    lock = _write_new_lock(options, knowledge, loaded, state, lock_options).lock
    wheels, packages = len(lock.python.packages), len(lock.system.packages)
    click.echo(
        f"wrote {path}: torch {lock.resolution['torch']['label']}, {count(wheels, 'wheel')}, "
        f"base {lock.base.image or lock.base.reference}, {count(packages, 'system package')}"
    )


def _write_new_lock(
    options: Options,
    knowledge: Knowledge,
    loaded: LoadedSpec,
    state: LockState,
    lock_options: LockOptions,
) -> Any:
    """Resolve, lock and write the lock file atomically; return the current lock written."""
    from dataclasses import replace

    from builder.files import write_atomic
    from builder.lock import lockfile
    from builder.lock import stage as locker

    resolution = _resolve(options, knowledge, loaded)
    lock = locker.make_lock(
        loaded,
        spec_digest=state.spec_digest,
        resolution=resolution,
        knowledge=knowledge,
        options=lock_options,
        progress=_note_progress,
    )
    text = lockfile.dumps(lock)
    write_atomic(state.path, text)
    return lockfile.current(replace(state, lock=lock, text=text))


def _note_progress(text: str) -> None:
    click.echo(f"  {text}", err=True)


@cli.command("render")
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Build context directory to write (default: .reprobuild/context in the project).",
)
@click.option(
    "--from-image",
    help="Bootstrap the Apptainer definition from this built image (name@sha256:...). "
    "Default: the image `reprobuild build --push` pushed for this lock, if any.",
)
@click.option(
    "--standalone",
    is_flag=True,
    help="Apptainer definition that rebuilds from the base in %post (sites without Docker).",
)
@click.pass_obj
def render_command(
    options: Options, output: Path | None, from_image: str | None, standalone: bool
) -> None:
    """Render the Dockerfile, Apptainer definition and build context from reprobuild.lock."""
    from builder.build import buildrecord
    from builder.lock import lockfile
    from builder.render import context, plan
    from builder.render import templates as render

    if from_image is not None and "@sha256:" not in from_image:
        raise click.BadParameter("give the built image by digest: name@sha256:<64 hex>")
    if from_image is not None and standalone:
        raise click.UsageError("--from-image and --standalone exclude each other: choose one.")
    current = lockfile.read_current(options.project)
    project = current.project
    if from_image is None and not standalone:
        from_image = buildrecord.pushed_build(project, current.digest)
    build_plan = plan.plan(current.lock, current.digest)
    rendered = render.render(build_plan, current.digest, project, from_image)
    texts = context.files(build_plan, rendered)
    written = context.write(output or project / context.DEFAULT_OUTPUT, texts, project, build_plan)
    layers = len(build_plan.layers)
    source = (
        f"from the built image {from_image}"
        if from_image
        else "standalone (`reprobuild build --push REF` gives one from the built image)"
    )
    click.echo(
        f"wrote {written}: Dockerfile, reprobuild.def ({source}), .dockerignore, "
        f"{layers} Python layers"
    )


@cli.command("fetch")
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Wheelhouse directory (default: .reprobuild/wheels in the project).",
)
@click.option("--quiet", is_flag=True, help="No progress display.")
@click.pass_obj
def fetch_command(options: Options, output: Path | None, quiet: bool) -> None:
    """Download the lock's wheels into a wheelhouse, each verified against its sha256."""
    from builder.lock import lockfile
    from builder.render import wheelhouse

    current = lockfile.read_current(options.project)
    lock, project = current.lock, current.project
    destination = output or project / ".reprobuild" / "wheels"
    if quiet:
        report = wheelhouse.fetch(lock, project, destination, lambda *_: None)
    else:
        report = _fetch_with_progress(lock, project, destination)
    megabytes = report.bytes_fetched / 1e6
    click.echo(
        f"{destination}: {len(report.fetched)} fetched ({megabytes:.1f} MB), "
        f"{len(report.cached)} already present, all verified against reprobuild.lock"
    )


def _fetch_with_progress(lock: Any, project: Path, destination: Path) -> Any:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from builder.render import wheelhouse

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
    )
    with Progress(*columns, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def advance(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total or None)
            bar.update(tasks[name], completed=done)

        return wheelhouse.fetch(lock, project, destination, advance)


@cli.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--spec/--no-spec",
    "use_spec",
    default=True,
    help="Judge the project's resolved image against this host (default when a spec exists).",
)
@click.pass_obj
def doctor_command(options: Options, as_json: bool, use_spec: bool) -> None:
    """Read this host (NVIDIA driver, GPUs, Docker engine) and judge the resolved image."""
    from builder.check import doctor
    from builder.engine import host
    from builder.spec import file as specfile

    knowledge = options.knowledge()
    resolution = None
    if use_spec and specfile.has_spec(options.project):
        resolution = _resolve(options, knowledge, _load_spec(options, knowledge))
    report = doctor.examine(
        host.probe_nvidia(sm_counts=True), host.probe_engine(), resolution, knowledge
    )
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        from builder.cli.present import doctor_lines

        console = _console()
        for line in doctor_lines(report):
            console.print(line, soft_wrap=True)
    if report.runs_here is False:
        sys.exit(1)


@cli.group("knowledge")
def knowledge_group() -> None:
    """Show or refresh the GPU compatibility knowledge base."""


@knowledge_group.command("show")
@click.argument("requirement", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the rows as stored, with sources.")
@click.pass_obj
def knowledge_show(options: Options, requirement: str | None, as_json: bool) -> None:
    """Print the torch builds matching REQUIREMENT (e.g. torch==2.5.1, 2.5.*, '>=2.7')."""
    from builder.knowledge.query import matching

    knowledge = options.knowledge()
    builds = matching(knowledge, requirement)
    if as_json:
        click.echo(json.dumps([build.to_dict() for build in builds], indent=2))
        return
    from builder.cli.present import builds_table

    _console().print(builds_table(builds, knowledge))


@knowledge_group.command("gpus")
@click.pass_obj
def knowledge_gpus(options: Options) -> None:
    """List the GPU names accepted in target.gpus and their compute capabilities."""
    from builder.cli.present import gpus_table

    _console().print(gpus_table(options.knowledge()))


@knowledge_group.command("refresh")
@click.option(
    "--pypi-url",
    default="https://pypi.org/simple",
    show_default=True,
    help="PEP 503 simple index holding the PyPI-default torch wheels.",
)
@click.option(
    "--pytorch-url",
    default="https://download.pytorch.org/whl",
    show_default=True,
    help="Base of the PyTorch variant indexes (<base>/cu124, <base>/cpu, ...).",
)
@click.option(
    "--variant",
    "variants",
    multiple=True,
    help="Variant index to read (repeatable). Default: every variant already known.",
)
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the knowledge base here instead of where it was loaded from.",
)
@click.pass_obj
def knowledge_refresh(
    options: Options,
    pypi_url: str,
    pytorch_url: str,
    variants: tuple[str, ...],
    output: Path | None,
) -> None:
    """Regenerate the torch rows from package-index metadata (stable order, diffable)."""
    from builder.engine.http import Getter
    from builder.knowledge import refresh, store

    knowledge = options.knowledge()
    chosen = variants or tuple(b.variant for b in knowledge.builds if not b.pypi_default)
    today = datetime.now(timezone.utc).date().isoformat()
    existing = [build.to_dict() for build in knowledge.builds]
    click.echo(
        f"reading {pypi_url} and {len(set(chosen))} variant indexes under {pytorch_url} ...",
        err=True,
    )
    try:
        with Getter() as getter:
            rows, report = refresh.refresh(
                getter, existing, refresh.sources(pypi_url, pytorch_url, chosen), today
            )
    except ReprobuildError as error:
        raise ReprobuildError(
            f"offline: {error}\nThe knowledge base {knowledge.version} was kept unchanged."
        ) from None
    written = store.write(knowledge.directory, output or knowledge.directory, refresh.dump(rows))
    from builder.cli.present import refresh_lines

    for line in refresh_lines(report, str(written)):
        click.echo(line)


@cli.command("diff")
@click.argument("image_a")
@click.argument("image_b")
@click.option(
    "--max-files",
    type=click.IntRange(min=0),
    default=200,
    show_default=True,
    help="List at most this many differing files (0: all).",
)
def diff_command(image_a: str, image_b: str, max_files: int) -> None:
    """Explain why two images in the engine differ: config fields, layers, files.

    Exits 0 when both name the same image and 1 when they differ, like diff.
    """
    from builder.check import diff as imagediff
    from builder.engine import sdk as engine

    with contextlib.closing(engine.connect()) as client:
        report = imagediff.diff_images(client, image_a, image_b)
    click.echo(imagediff.render(report, max_files))
    if not report.identical:
        sys.exit(1)


def main() -> None:
    """Entry point: run the CLI; turn our errors into one message and an exit code."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except ReprobuildError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


@cli.command("build")
@click.option(
    "--no-cache",
    is_flag=True,
    help="Build every step again, the deps stage too (the digest must not move).",
)
@click.option(
    "--push",
    "push_to",
    metavar="REF",
    help="Push to REF (registry/name:tag) and record the manifest digest.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["docker", "sif"]),
    default="docker",
    show_default=True,
    help="docker: an image in the engine; sif: an Apptainer image (needs apptainer).",
)
@click.option("--quiet", is_flag=True, help="Print only the result.")
@click.option("--plain", is_flag=True, help="One line per step, no live display (CI logs).")
@click.option(
    "--debian-mirror",
    help="Archive for system packages when the lock must be (re)made (see `reprobuild lock`).",
)
@click.pass_obj
def build_command(
    options: Options,
    no_cache: bool,
    push_to: str | None,
    output_format: str,
    quiet: bool,
    plain: bool,
    debian_mirror: str | None,
) -> None:
    """Lock if needed, render, build with the Docker engine (the deps stage once per lock, then the
    image on it), normalise, push; write the record."""
    from builder.build import build, buildrecord, sif
    from builder.engine import sdk as engine
    from builder.render import wheelhouse

    if output_format == "sif":
        sif.check_ready(push_to)
    current = _current_or_new_lock(options, debian_mirror)
    with contextlib.closing(engine.connect()) as client, _build_display(quiet, plain) as progress:
        record = build.build_lock(
            client,
            current,
            wheel_cache=wheelhouse.default_cache(),
            no_cache=no_cache,
            push=push_to,
            progress=progress,
        )
    path = buildrecord.write(current.project, record)
    size = sum(layer.size for layer in record.layers) / 1e9
    click.echo(
        f"built {record.image}\n  image ID {record.image_id} "
        f"({size:.2f} GB, {len(record.layers)} layers)"
    )
    if record.pushed:
        click.echo(f"  pushed {record.pushed}; reprobuild.def now bootstraps from it")
    if record.normalisation.get("rewritten"):
        click.echo(
            f"  normalised: {len(record.normalisation['rewritten'])} noisy entries "
            "removed or redated"
        )
    click.echo(f"  record {path}")
    if output_format == "sif":
        made = sif.build_for(current.project, record.image, _note_progress)
        click.echo(f"  SIF {made.path} ({made.size / 1e9:.2f} GB, sha256 {made.sha256})")


def _current_or_new_lock(options: Options, debian_mirror: str | None) -> Any:
    """The current lock; a missing or stale one is (re)made first. A tampered one is refused."""
    from builder.lock import lockfile
    from builder.lock.stage import LockOptions

    state = lockfile.inspect(options.project)
    if state.reason is None:
        return lockfile.current(state)
    _note(f"{state.path.name} is {state.reason}: locking first")
    knowledge = options.knowledge()
    loaded = _load_spec(options, knowledge)
    return _write_new_lock(
        options, knowledge, loaded, state, LockOptions(debian_mirror=debian_mirror)
    )


def _build_display(quiet: bool, plain: bool) -> Any:
    from builder.cli.progress import BuildDisplay

    mode = "quiet" if quiet else "plain" if plain or not sys.stderr.isatty() else "live"
    return BuildDisplay(mode)


def _gpus(_context: click.Context, _parameter: click.Parameter, value: str | None) -> str | None:
    problem = None if value is None else launch.gpus_problem(value)
    if problem is not None:
        raise click.BadParameter(problem)
    return value


def _gpus_option(
    what: str, default: str | None = "all"
) -> Callable[[click.decorators.FC], click.decorators.FC]:
    """--gpus all|N: the engine's device requests (its NVIDIA runtime)."""
    none = "" if default else "; none by default"
    return click.option(
        "--gpus",
        default=default,
        show_default=default is not None,
        metavar="all|N",
        callback=_gpus,
        help=f"{what} (the engine's NVIDIA runtime){none}.",
    )


@cli.command("smoke")
@click.argument("image", required=False)
@_gpus_option("GPUs to give the container")
@click.option("--cpu", is_flag=True, help="CPU mode: no GPU needed; proves the plumbing only.")
@click.option(
    "--no-canary", is_flag=True, help="Skip the canary (the check's power stays unshown)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def smoke_command(
    options: Options, image: str | None, gpus: str, cpu: bool, no_canary: bool, as_json: bool
) -> None:
    """Prove inside IMAGE that deterministic kernels give bit-identical tensors on this host.

    IMAGE defaults to the project's last build (reprobuild.build.json); one the engine lacks is
    pulled. Exits with the payload's status: 0 pass, 1 fingerprints differ, 3 the canary showed
    no power on this GPU, 4 a precondition failed (GPU, driver, arch, locked versions).
    """
    from builder.build import buildrecord
    from builder.check import smoke as smokehost
    from builder.engine import sdk as engine
    from builder.smoke.describe import text

    named = image or buildrecord.read(options.project)
    with contextlib.closing(engine.connect()) as client:
        chosen = buildrecord.image_to_run(client, options.project, named)
        result = smokehost.run_noted(
            client, chosen, gpus=None if cpu else gpus, note=_note, canary=not no_canary
        )
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        click.echo(f"image {result.image} ({result.image_id})\n{text(result.report)}")
    if result.exit_code:
        sys.exit(result.exit_code)


@cli.command(
    "run",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@_gpus_option("GPUs to give the container", default=None)
@click.option(
    "--image",
    metavar="REF",
    help="Run this image (pulled by digest if the engine lacks it) instead of the last build.",
)
@click.option(
    "--outputs",
    type=click.Path(file_okay=False, path_type=Path),
    help="Host folder mounted writable at /outputs (default: runs/<run>/outputs).",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def run_command(
    options: Options,
    gpus: str | None,
    image: str | None,
    outputs: Path | None,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND inside the built image and record the run under runs/.

    The image runs by ID; the project is mounted read-only at /workspace (the working
    directory) and the outputs folder writable at /outputs; the command runs as your user.
    Ctrl-C and SIGTERM reach the command. Exits with the command's exit code.

        reprobuild run --gpus all -- python train.py --epochs 3
    """
    from builder.run import run

    plan = run.RunPlan(
        options.project, image or None, list(_training_command(command)), outputs=outputs, gpus=gpus
    )
    sys.exit(launch.run_and_report(plan))


@cli.command("publish")
@click.option(
    "--to",
    "push_to",
    metavar="REF",
    help="Push the last build to REF (registry/name:tag) first; needed when it was never pushed.",
)
@_gpus_option("GPUs the smoke test runs on")
@click.option(
    "--cpu", is_flag=True, help="Smoke-test in CPU mode (the manifest then says no GPU was used)."
)
@click.option(
    "--smoke-report",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Use this `reprobuild smoke --json` report of the build (e.g. from a GPU host) instead "
    "of running the smoke test here (excludes --cpu).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for reprobuild.manifest.json and REPRODUCE.md (default: the project).",
)
@click.pass_obj
def publish_command(
    options: Options,
    push_to: str | None,
    gpus: str,
    cpu: bool,
    smoke_report: Path | None,
    output: Path | None,
) -> None:
    """Write the manifest a paper publishes: the pushed image by digest, its lock, its smoke
    report and fingerprint key, the commands to pull, verify and run it, a CITATION.cff entry
    and a README badge (reprobuild.manifest.json and REPRODUCE.md).

        reprobuild publish --to registry.example.org/lab/model:paper
    """
    from builder.build import buildrecord
    from builder.engine import sdk as engine
    from builder.lock import lockfile
    from builder.publish import publish

    if smoke_report is not None and cpu:
        raise click.UsageError("--smoke-report and --cpu exclude each other: choose one.")
    current = lockfile.read_current(options.project)
    record = buildrecord.read(current.project)
    with contextlib.closing(engine.connect()) as client:
        document = publish.prepare(
            client,
            current,
            record,
            push_to=push_to,
            smoke=publish.SmokeSource(smoke_report, None if cpu else gpus),
            save=lambda pushed: buildrecord.write(current.project, pushed),
            note=_note,
        )
    manifest_path, reproduce_path = publish.write(output or current.project, document)
    click.echo(
        f"published {document['image']['reference']}\n  manifest {manifest_path}\n"
        f"  {reproduce_path}\n  badge: {document['badge']}"
    )
    if weak := publish.weak_proof(document["smoke"]):
        _note(weak)


@cli.command("verify")
@click.argument("subject", metavar="MANIFEST|IMAGE@DIGEST")
@_gpus_option("GPUs the smoke test runs on")
@click.option("--cpu", is_flag=True, help="Smoke-test in CPU mode (no GPU needed).")
@click.option("--no-smoke", is_flag=True, help="Check digests and labels only.")
@click.option(
    "--rebuild",
    is_flag=True,
    help="Also rebuild the project's lock with --no-cache and compare the digest (run it in a "
    "checkout of the published commit).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.pass_obj
def verify_command(
    options: Options,
    subject: str,
    gpus: str,
    cpu: bool,
    no_smoke: bool,
    rebuild: bool,
    as_json: bool,
) -> None:
    """Check a published image: pull it by digest, compare its config digest and lock label
    with the manifest, re-run the smoke test and compare fingerprints where the fingerprint key
    matches; with --rebuild, rebuild the lock and compare the digest.

    Exits 0 when every check holds (warnings included) and 1 when one fails.

        reprobuild verify reprobuild.manifest.json
    """
    from builder.engine import sdk as engine
    from builder.engine.registry import RegistryClient
    from builder.publish import verify

    target = verify.read_subject(subject, options.project)
    display = _build_display(quiet=False, plain=True) if rebuild else contextlib.nullcontext()
    with (
        contextlib.closing(engine.connect()) as client,
        RegistryClient() as registry,
        display as progress,
    ):
        steps = verify.Steps(
            smoke=not no_smoke,
            gpus=None if cpu else gpus,
            rebuild=verify.rebuilder(client, options.project, progress) if rebuild else None,
        )
        result = verify.verify(client, registry, target, steps)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        click.echo("\n".join(verify.lines(result)))
    if result.failed:
        sys.exit(1)


_EXPORT_SETTINGS = {"ignore_unknown_options": True, "allow_interspersed_args": False}


def _export_value(
    _context: click.Context, parameter: click.Parameter, value: str | None
) -> str | None:
    from builder.publish import export

    problem = export.value_problem(str(parameter.name), value)
    if problem is not None:
        raise click.BadParameter(problem)
    return value


def _job_options(command: click.decorators.FC) -> click.decorators.FC:
    """The options both exports take, and the training command after --."""
    decorators = (
        click.option(
            "--nodes",
            type=click.IntRange(min=1),
            default=1,
            show_default=True,
            help="Nodes to run on; more than one: torchrun's c10d rendezvous on the first node.",
        ),
        click.option(
            "--gpus-per-node",
            type=click.IntRange(min=1),
            default=1,
            show_default=True,
            help="GPUs on each node; torchrun starts one process per GPU.",
        ),
        click.option(
            "-o",
            "--output",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Write the job to FILE (atomically) instead of printing it.",
        ),
        click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED),
    )
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def _training_command(command: tuple[str, ...]) -> tuple[str, ...]:
    """COMMAND as given after --. A `--` still in it means that an unknown option came first
    (a typo such as --node) and was taken as the command: refuse it rather than run it."""
    if command[0].startswith("-") and "--" in command:
        raise click.UsageError(f"no such option: {command[0]} (options go before --)")
    return command


def _emit(text: str, output: Path | None, next_step: str) -> None:
    from builder.publish import export

    if output is None:
        click.echo(text, nl=False)
        return
    export.write(output, text)
    _note(f"wrote {output}; {next_step} {output}")


@cli.group("export")
def export_group() -> None:
    """Write a cluster job that runs a training command in the pushed build, by digest."""


@export_group.command("slurm", context_settings=_EXPORT_SETTINGS)
@_job_options
@click.option(
    "--time", metavar="TIME", callback=_export_value, help="Time limit, e.g. 04:00:00 (#SBATCH)."
)
@click.option("--partition", callback=_export_value, help="Partition to submit to (#SBATCH).")
@click.option(
    "--cpus-per-task",
    type=click.IntRange(min=1),
    help="CPUs for each node's task (#SBATCH, and given to srun).",
)
@click.option(
    "--sif",
    metavar="PATH",
    help="SIF to run, pulled there first when missing. Default: $REPROBUILD_SIF, else the name "
    "`reprobuild build --format sif` gives it, in the submit directory.",
)
@click.pass_obj
def export_slurm(
    options: Options,
    nodes: int,
    gpus_per_node: int,
    output: Path | None,
    time: str | None,
    partition: str | None,
    cpus_per_task: int | None,
    sif: str | None,
    command: tuple[str, ...],
) -> None:
    """Write an sbatch script that runs COMMAND with torchrun in the pushed build.

    The script pulls the image by digest into a SIF once, when the SIF is missing, then srun
    starts one `apptainer exec --nv --cleanenv` task per node with the lock's determinism
    environment, outputs bound at /outputs. COMMAND is what torchrun runs: a script and its
    arguments, or -m MODULE and its arguments.

    \b
        reprobuild export slurm --nodes 2 --gpus-per-node 4 -o job.sh -- train.py --epochs 3
        sbatch job.sh
    """
    from builder.publish import export

    job = export.Job(_training_command(command), nodes, gpus_per_node)
    text = export.slurm(
        options.project, job, export.SlurmOptions(time, partition, cpus_per_task, sif)
    )
    _emit(text, output, "submit it with sbatch")


@export_group.command("kubernetes", context_settings=_EXPORT_SETTINGS)
@_job_options
@click.option(
    "--namespace", callback=_export_value, help="Namespace of the Job (default: kubectl's)."
)
@click.pass_obj
def export_kubernetes(
    options: Options,
    nodes: int,
    gpus_per_node: int,
    output: Path | None,
    namespace: str | None,
    command: tuple[str, ...],
) -> None:
    """Write a Kubernetes Job that runs COMMAND with torchrun in the pushed build.

    One node: a Job with `torchrun --standalone`. Several: an Indexed Job, one pod per node,
    and a headless Service through which the pods meet at pod 0 for torchrun's rendezvous.
    Pods run as the image's non-root user with the lock's determinism environment, an emptyDir
    at /outputs and a memory-backed /dev/shm. COMMAND is what torchrun runs: a script and its
    arguments, or -m MODULE and its arguments.

    \b
        reprobuild export kubernetes --nodes 2 --gpus-per-node 8 -o job.yaml -- train.py
        kubectl apply -f job.yaml
    """
    from builder.publish import export

    job = export.Job(_training_command(command), nodes, gpus_per_node)
    text = export.kubernetes(options.project, job, namespace)
    _emit(text, output, "apply it with kubectl apply -f")
