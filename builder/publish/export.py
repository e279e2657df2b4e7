"""What `reprobuild export slurm|kubernetes` share: the job, its checks, and the pushed build
it runs, pinned to its digest.

Every export reads the current lock and the last build's record and refuses a build that was not
pushed (a cluster cannot pull from this machine's engine) or that was made from another lock. A
job runs one platform's image (a build may have one per platform), by that image's own manifest
digest, so the nodes it lands on must have that image's CPU.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import jinja2

from builder import files, layout
from builder.build import buildrecord
from builder.build.buildrecord import BuildRecord, PlatformImage
from builder.errors import ExportError, ExportUsage
from builder.knowledge import MACHINES, PLATFORMS, architecture
from builder.lock import lockfile
from builder.render import plan, templates
from builder.run.args import DEFAULT_ENV

RENDEZVOUS_PORT = 29500
# What `reprobuild run` gives every command besides the lock's determinism variables.
RUN_DEFAULTS = (*DEFAULT_ENV, (layout.OUTPUTS_VARIABLE, layout.OUTPUTS))
# An Indexed Job's pods are hosts named <job>-<index>, one 63-character DNS label.
NAME_LIMIT = 57
LAUNCHER = re.compile(r"^(?:python[0-9.]*|torchrun)$")
_NOT_LABEL = re.compile(r"[^a-z0-9]+")
# One term of Slurm's --constraint: a feature name (with the brackets and parentheses of its
# grouping, ! of NOT) and a node count. No space, quote or '#': sbatch would split or cut the
# #SBATCH line there.
_FEATURE = r"[A-Za-z0-9_.()\[\]!-]+(?:\*\d+)?"
_FORMATS = {
    "time": (
        re.compile(r"^(?:(?:\d+-)?\d+(?::\d+){0,2}|UNLIMITED|INFINITE)$"),
        "give a Slurm time limit: minutes, HH:MM:SS or D-HH:MM:SS, e.g. 04:00:00.",
    ),
    "partition": (
        re.compile(r"^[A-Za-z0-9_.-]+(?:,[A-Za-z0-9_.-]+)*$"),
        "give a partition name, or several separated by commas.",
    ),
    "mem": (
        re.compile(r"^\d+[KMGT]?$"),
        "give a memory size per node: megabytes, or a number with K, M, G or T, e.g. 200G.",
    ),
    "namespace": (
        re.compile(r"^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$"),
        "a namespace is a DNS-1123 label: at most 63 lower-case letters, digits and '-'.",
    ),
    "constraint": (
        re.compile(rf"^{_FEATURE}(?:[&|]{_FEATURE})*$"),
        "give node features as Slurm's --constraint takes them: names (letters, digits, '_', "
        "'.', '-') joined by & (all) or | (any), e.g. aarch64 or 'gh200&ib'.",
    ),
}


@dataclass(frozen=True)
class Job:
    command: tuple[str, ...]  # what torchrun runs: a script and its args, or -m module args
    nodes: int = 1
    gpus_per_node: int = 1  # 0: a CPU job (Slurm only), one process per node
    platform: str | None = None  # the image's; None: the build's, when it has one platform

    @property
    def processes_per_node(self) -> int:
        """What torchrun starts on each node: one process per GPU."""
        return max(self.gpus_per_node, 1)


@dataclass(frozen=True)
class Pushed:
    """The current lock's last build, as a cluster pulls it."""

    reference: str  # registry/name@sha256:... of the platform's own manifest
    image: str  # the local name:tag it was built as
    name: str  # a DNS-1123 label from the image name: job, service and log names
    lock_digest: str
    env: tuple[tuple[str, str], ...]  # the determinism environment in plan order, RUN_DEFAULTS
    platform: str  # linux/amd64 or linux/arm64

    @property
    def architecture(self) -> str:
        """The platform's CPU as Kubernetes and OCI name it: amd64, arm64."""
        return architecture(self.platform)

    @property
    def machine(self) -> str:
        """The platform's CPU as `uname -m` names it: x86_64, aarch64."""
        return MACHINES[self.platform]


def value_problem(option: str, value: str | None) -> str | None:
    """What is wrong with a --time, --partition, --mem, --constraint or --namespace value; None
    when it is fine."""
    if value is None:
        return None
    pattern, text = _FORMATS[option]
    return None if pattern.match(value) else f"{value!r}: {text}"


def dns_label(text: str) -> str:
    """`lab/ResNet_train` -> `lab-resnet-train`, at most NAME_LIMIT characters."""
    label = _NOT_LABEL.sub("-", text.lower()).strip("-")[:NAME_LIMIT].rstrip("-")
    return label or "reprobuild"


def pushed_target(project: Path, platform: str | None = None) -> Pushed:
    """The current lock's pushed build, its image of `platform` (default: the build's only
    one); refused when ambiguous, of a platform not built, unpushed or of another lock."""
    current = lockfile.read_current(project)
    record = buildrecord.read(current.project)
    image = _chosen_image(record, platform, current.lock.platforms)
    reference = _pushed_reference(record, image, current.project, current.digest)
    build_plan = plan.plan(current.lock.on_or_first(image.platform), current.digest)
    return Pushed(
        reference=reference,
        image=image.image,
        name=dns_label(build_plan.name),
        lock_digest=current.digest,
        env=plan.determinism_env(build_plan.env) + RUN_DEFAULTS,
        platform=image.platform,
    )


def _chosen_image(
    record: BuildRecord, platform: str | None, locked: tuple[str, ...]
) -> PlatformImage:
    """The record's image of `platform`; with None, its only one. `locked`: the lock's
    platforms, for the way to a platform not built."""
    own = PlatformImage(
        record.platform, record.image, record.image_id, record.manifest_digest, record.pushed
    )
    images = {image.platform: image for image in (own, *record.other_platforms)}
    if platform is None and len(images) > 1:
        raise ExportError(_ambiguous(record.platforms))
    found = images.get(platform or record.platform)
    if found is None:
        raise ExportError(_not_built(str(platform), record.platforms, locked))
    return found


def _ambiguous(platforms: tuple[str, ...]) -> str:
    choices = " or ".join(
        f"--platform {platform} ({MACHINES.get(platform, platform)} nodes)"
        for platform in platforms
    )
    return (
        f"the last build has images for {' and '.join(platforms)}, and a job runs one of them: "
        f"give {choices}."
    )


def _not_built(platform: str, platforms: tuple[str, ...], locked: tuple[str, ...]) -> str:
    choices = " or ".join(f"--platform {built}" for built in platforms)
    build = (
        "run `reprobuild build --push REGISTRY/NAME:TAG` (every platform of the lock)"
        if platform in locked
        else f'add "{platform}" to `platforms` in the spec and run `reprobuild build --push '
        "REGISTRY/NAME:TAG` (it locks again first)"
    )
    return (
        f"the last build has no {platform} image, only {', '.join(platforms)}: {build}, then "
        f"export again; or run a platform it has: {choices}."
    )


def _pushed_reference(
    record: BuildRecord, image: PlatformImage, project: Path, lock_digest: str
) -> str:
    if image.pushed is None:
        raise ExportError(
            f"the last build, {image.image}, was not pushed, and a cluster cannot pull an image "
            "from this machine's engine: run `reprobuild build --push REGISTRY/NAME:TAG` with a "
            "registry the cluster's nodes can pull from, then export again."
        )
    # The record's own check, on the chosen platform's image.
    if edited := buildrecord.unpinned_push(replace(record, pushed=image.pushed), project):
        raise ExportError(edited)
    if record.lock != lock_digest:
        raise ExportError(
            f"{project / layout.RECORD_FILE} is the record of an older build (lock "
            f"{record.lock}), not of the current reprobuild.lock ({lock_digest}): run "
            "`reprobuild build --push REGISTRY/NAME:TAG` to build and push this lock, then "
            "export again."
        )
    return image.pushed


def check_job(job: Job) -> None:
    if job.nodes < 1 or job.gpus_per_node < 0:
        raise ExportUsage(
            "a job needs at least one node, and a number of GPUs per node that is not negative: "
            "give --nodes 1 or more and --gpus-per-node 0 or more."
        )
    if not job.command:
        raise ExportUsage("give the training command after --, e.g. -- train.py --epochs 3.")
    if job.platform is not None and job.platform not in PLATFORMS:
        raise ExportUsage(f"--platform {job.platform!r}: give one of {', '.join(PLATFORMS)}.")
    if job.command == ("-m",):
        raise ExportUsage("-m needs the module torchrun runs: -- -m package.train --epochs 3.")
    if LAUNCHER.match(Path(job.command[0]).name):
        raise ExportUsage(
            f"the command starts with {job.command[0]}, but the job starts torchrun itself: give "
            "what torchrun runs, a script and its arguments (-- train.py --epochs 3) or a module "
            "(-- -m package.train --epochs 3)."
        )


def check_values(values: dict[str, str | None]) -> None:
    for option, value in values.items():
        problem = value_problem(option, value)
        if problem is not None:
            raise ExportUsage(f"--{option} {problem}")


def render(project: Path, template: str, values: dict[str, Any]) -> str:
    try:
        return templates.environment(project).get_template(template).render(values)
    except jinja2.TemplateNotFound:
        raise ExportError(
            f"the template {template} is missing from {templates.packaged_templates()}; "
            "reinstall reprobuild."
        ) from None
    except jinja2.TemplateError as error:
        raise ExportError(
            f"the template {template} failed to render ({type(error).__name__}: {error}). "
            f"If it is an override in {templates.OVERRIDE_FOLDER}/, fix or remove it."
        ) from None


def write(path: Path, text: str) -> None:
    """Write an exported job atomically: readers see the old file or the new one."""
    files.write_output(
        path,
        text,
        "give -o a path in an existing, writable folder, or leave -o out to print the job.",
        ExportError,
    )
