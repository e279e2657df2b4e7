"""`reprobuild export slurm|kubernetes`: a cluster job that runs a training command in the
project's pushed image, pinned to its digest.

Both read the current lock and the last build's record and refuse a build that was not pushed
(a cluster cannot pull from this machine's engine) or that was made from another lock. The Slurm
job script is rendered from templates/slurm.sh.j2, every user-supplied word shell-quoted; the
Kubernetes manifest is built as data and dumped as YAML, the command as an argument list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

from builder import __version__, files, layout
from builder.build import buildrecord, sif
from builder.build.buildrecord import BuildRecord
from builder.errors import ExportError, ExportUsage
from builder.lock import lockfile
from builder.render import plan, templates

RENDEZVOUS_PORT = 29500
SLURM_TEMPLATE = "slurm.sh.j2"
GPU_RESOURCE = "nvidia.com/gpu"
COMPLETION_INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
# An Indexed Job's pods are hosts named <job>-<index>, one 63-character DNS label.
NAME_LIMIT = 57
LAUNCHER = re.compile(r"^(?:python[0-9.]*|torchrun)$")
_NOT_LABEL = re.compile(r"[^a-z0-9]+")
_FORMATS = {
    "time": (
        re.compile(r"^(?:(?:\d+-)?\d+(?::\d+){0,2}|UNLIMITED|INFINITE)$"),
        "give a Slurm time limit: minutes, HH:MM:SS or D-HH:MM:SS, e.g. 04:00:00.",
    ),
    "partition": (
        re.compile(r"^[A-Za-z0-9_.-]+(?:,[A-Za-z0-9_.-]+)*$"),
        "give a partition name, or several separated by commas.",
    ),
    "namespace": (
        re.compile(r"^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$"),
        "a namespace is a DNS-1123 label: at most 63 lower-case letters, digits and '-'.",
    ),
}


@dataclass(frozen=True)
class Job:
    command: tuple[str, ...]  # what torchrun runs: a script and its args, or -m module args
    nodes: int = 1
    gpus_per_node: int = 1


@dataclass(frozen=True)
class SlurmOptions:
    time: str | None = None
    partition: str | None = None
    cpus_per_task: int | None = None
    sif: str | None = None  # default: $REPROBUILD_SIF, else the build's SIF name


@dataclass(frozen=True)
class Pushed:
    """The current lock's last build, as a cluster pulls it."""

    reference: str  # registry/name@sha256:...
    image: str  # the local name:tag it was built as
    name: str  # a DNS-1123 label from the image name: job, service and log names
    lock_digest: str
    env: tuple[tuple[str, str], ...]  # the determinism environment, in plan order


def value_problem(option: str, value: str | None) -> str | None:
    """What is wrong with a --time, --partition or --namespace value; None when it is fine."""
    if value is None:
        return None
    pattern, text = _FORMATS[option]
    return None if pattern.match(value) else f"{value!r}: {text}"


def dns_label(text: str) -> str:
    """`lab/ResNet_train` -> `lab-resnet-train`, at most NAME_LIMIT characters."""
    label = _NOT_LABEL.sub("-", text.lower()).strip("-")[:NAME_LIMIT].rstrip("-")
    return label or "reprobuild"


def pushed_target(project: Path) -> Pushed:
    """The current lock's pushed build; refused when unpushed or of another lock."""
    current = lockfile.read_current(project)
    record = buildrecord.read(current.project)
    reference = _pushed_reference(record, current.project, current.digest)
    build_plan = plan.plan(current.lock, current.digest)
    return Pushed(
        reference=reference,
        image=record.image,
        name=dns_label(build_plan.name),
        lock_digest=current.digest,
        env=plan.determinism_env(build_plan.env),
    )


def _pushed_reference(record: BuildRecord, project: Path, lock_digest: str) -> str:
    if record.pushed is None:
        raise ExportError(
            f"the last build, {record.image}, was not pushed, and a cluster cannot pull an image "
            "from this machine's engine: run `reprobuild build --push REGISTRY/NAME:TAG` with a "
            "registry the cluster's nodes can pull from, then export again."
        )
    if edited := buildrecord.unpinned_push(record, project):
        raise ExportError(edited)
    if record.lock != lock_digest:
        raise ExportError(
            f"{project / layout.RECORD_FILE} is the record of an older build (lock "
            f"{record.lock}), not of the current reprobuild.lock ({lock_digest}): run "
            "`reprobuild build --push REGISTRY/NAME:TAG` to build and push this lock, then "
            "export again."
        )
    return record.pushed


def check_job(job: Job) -> None:
    if job.nodes < 1 or job.gpus_per_node < 1:
        raise ExportUsage("a job needs at least one node and one GPU per node.")
    if not job.command:
        raise ExportUsage("give the training command after --, e.g. -- train.py --epochs 3.")
    if job.command == ("-m",):
        raise ExportUsage("-m needs the module torchrun runs: -- -m package.train --epochs 3.")
    if LAUNCHER.match(Path(job.command[0]).name):
        raise ExportUsage(
            f"the command starts with {job.command[0]}, but the job starts torchrun itself: give "
            "what torchrun runs, a script and its arguments (-- train.py --epochs 3) or a module "
            "(-- -m package.train --epochs 3)."
        )


def _check_values(values: dict[str, str | None]) -> None:
    for option, value in values.items():
        problem = value_problem(option, value)
        if problem is not None:
            raise ExportUsage(f"--{option} {problem}")


def slurm(project: Path, job: Job, options: SlurmOptions) -> str:
    """The sbatch script: pull the SIF once, then one torchrun per node through srun."""
    check_job(job)
    _check_values({"time": options.time, "partition": options.partition})
    pushed = pushed_target(project)
    values = {
        "name": pushed.name,
        "version": __version__,
        "image": pushed.reference,
        "lock_digest": pushed.lock_digest,
        "job": job,
        "options": options,
        "default_sif": sif.output_path(project, pushed.image).name,
        "env": pushed.env,
        "outputs": layout.OUTPUTS,
        "code": layout.CODE,
        "port": RENDEZVOUS_PORT,
        "literal_dollar": any("$" in word or "`" in word for word in job.command),
    }
    return _render(project, SLURM_TEMPLATE, values)


def _render(project: Path, template: str, values: dict[str, Any]) -> str:
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


def kubernetes(project: Path, job: Job, namespace: str | None = None) -> str:
    """The manifest: a Job (Indexed, with a headless Service for rendezvous, on several nodes)."""
    check_job(job)
    _check_values({"namespace": namespace})
    pushed = pushed_target(project)
    documents = [_job(pushed, job, namespace)]
    if job.nodes > 1:
        documents.insert(0, _service(pushed.name, namespace))
    header = (
        f"# Generated by reprobuild {__version__} (`reprobuild export kubernetes`); apply with "
        "`kubectl apply -f FILE`.\n"
        f"# image: {pushed.reference}\n# lock:  {pushed.lock_digest}\n"
    )
    return header + yaml.safe_dump_all(documents, sort_keys=False, explicit_start=True)


def _metadata(name: str, namespace: str | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    metadata["labels"] = _labels(name)
    return metadata


def _labels(name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": "training",
        "app.kubernetes.io/managed-by": "reprobuild",
    }


def _service(name: str, namespace: str | None) -> dict[str, Any]:
    """Headless: each pod of the Indexed Job resolves as <job>-<index>.<service>."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(name, namespace),
        "spec": {
            "clusterIP": "None",
            "selector": {JOB_NAME_LABEL: name},
            "publishNotReadyAddresses": True,
            "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT}],
        },
    }


def _job(pushed: Pushed, job: Job, namespace: str | None) -> dict[str, Any]:
    metadata = _metadata(pushed.name, namespace)
    metadata["annotations"] = {
        "reprobuild.dev/image": pushed.reference,
        "reprobuild.dev/lock": pushed.lock_digest,
    }
    pod: dict[str, Any] = {"restartPolicy": "Never"}
    spec: dict[str, Any] = {
        "completions": job.nodes,
        "parallelism": job.nodes,
        "backoffLimit": 0,
    }
    if job.nodes > 1:
        spec["completionMode"] = "Indexed"
        pod["subdomain"] = pushed.name
    pod["containers"] = [_container(pushed, job)]
    pod["volumes"] = [
        {"name": "outputs", "emptyDir": {}},
        {"name": "shm", "emptyDir": {"medium": "Memory"}},
    ]
    spec["template"] = {"metadata": {"labels": _labels(pushed.name)}, "spec": pod}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec}


def _container(pushed: Pushed, job: Job) -> dict[str, Any]:
    env: list[dict[str, Any]] = [{"name": key, "value": value} for key, value in pushed.env]
    if job.nodes > 1:
        env.append(
            {"name": "NODE_RANK", "valueFrom": {"fieldRef": {"fieldPath": COMPLETION_INDEX}}}
        )
    return {
        "name": "train",
        "image": pushed.reference,
        "imagePullPolicy": "IfNotPresent",
        "workingDir": layout.CODE,
        "command": ["torchrun"],
        "args": _torchrun_args(pushed.name, job),
        "env": env,
        "resources": {"limits": {GPU_RESOURCE: job.gpus_per_node}},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": layout.UID,
            "runAsGroup": layout.UID,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "outputs", "mountPath": layout.OUTPUTS},
            {"name": "shm", "mountPath": "/dev/shm"},
        ],
    }


def _torchrun_args(name: str, job: Job) -> list[str]:
    """torchrun's options, then the user's words with `$` doubled: Kubernetes expands $(VAR)
    in args, and `$$` is its escape for a literal `$`."""
    user = [word.replace("$", "$$") for word in job.command]
    gpus = f"--nproc-per-node={job.gpus_per_node}"
    if job.nodes == 1:
        return ["--standalone", gpus, *user]
    return [
        f"--nnodes={job.nodes}",
        gpus,
        "--node-rank=$(NODE_RANK)",
        f"--rdzv-id={name}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={name}-0.{name}:{RENDEZVOUS_PORT}",
        *user,
    ]


def write(path: Path, text: str) -> None:
    """Write an exported job atomically: readers see the old file or the new one."""
    files.write_output(
        path,
        text,
        "give -o a path in an existing, writable folder, or leave -o out to print the job.",
        ExportError,
    )
