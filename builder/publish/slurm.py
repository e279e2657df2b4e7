"""`reprobuild export slurm`: the sbatch script, rendered from templates/slurm.sh.j2 with every
user-supplied word shell-quoted.

One task per node runs torchrun in the pushed image through the cluster's container runtime:
Apptainer (a SIF pulled once), pyxis (`srun --container-image`, by digest), podman or docker
(a container per node, stopped when the job is cancelled). A first step checks that every node
has the image's CPU (x86_64 for linux/amd64, aarch64 for linux/arm64) before any container
starts. The script writes a record of the job beside its outputs: nodes, world size, image, each
node's exit, the outputs' digests.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from builder import __version__, layout
from builder.build import sif
from builder.errors import ExportUsage
from builder.knowledge import AMD64
from builder.publish.export import (
    RENDEZVOUS_PORT,
    Job,
    check_job,
    check_values,
    pushed_target,
    render,
)
from builder.reference import ImageReference
from builder.run import inputs
from builder.run.inputs import DataMount

SLURM_TEMPLATE = "slurm.sh.j2"
RUNTIMES = ("apptainer", "pyxis", "podman", "docker")
# DataLoader workers and the ranks' own threads: without --cpus-per-task a task gets one CPU, and
# every GPU process of the node shares it. GPU nodes have more than 8 cores per GPU (a DGX H100
# has 112 for its 8), so 8 per GPU fits them and keeps 4 DataLoader workers busy.
CPUS_PER_GPU = 8
# Characters that break a mount in some runtime's syntax (pyxis splits on ',', all on ':') or
# the script's quoting.
_MOUNT_UNSAFE = re.compile(r"[,:\"$`\\\x00-\x1f]")


@dataclass(frozen=True)
class SlurmOptions:
    runtime: str = "apptainer"
    time: str | None = None
    partition: str | None = None
    constraint: str | None = None  # node features, in Slurm's --constraint syntax
    cpus_per_task: int | None = None  # default: CPUS_PER_GPU per GPU; Slurm's for a CPU job
    mem: str | None = None
    sif: str | None = None  # default: $REPROBUILD_SIF, else the build's SIF name
    data: tuple[str, ...] = ()  # NAME=PATH[:ro|:rw], PATH on the cluster
    env: tuple[str, ...] = ()  # NAME=VALUE, or NAME: taken from the job's environment


def cluster_data(text: str) -> DataMount:
    """--data NAME=PATH[:ro|:rw]: PATH is the cluster's, so it is not looked for here; the script
    checks it on the first node before anything starts."""
    name, equals, path = text.partition("=")
    writable = path.endswith(":rw")
    if writable or path.endswith(":ro"):
        path = path[:-3]
    if not equals or not inputs.NAME.match(name) or not path.startswith("/"):
        raise ExportUsage(
            f"--data {text!r}: give NAME=PATH with PATH absolute on the cluster (NAME of letters, "
            "digits, '.', '_' or '-'), with :rw after PATH to mount it writable, e.g. "
            "--data train=/scratch/datasets/shakespeare."
        )
    if _MOUNT_UNSAFE.search(path):
        raise ExportUsage(
            f"--data {name}={path}: a path with ',', ':', quotes, '$', '`', '\\' or control "
            "characters cannot be mounted by every runtime; link it from a plain path."
        )
    return DataMount(name, path.rstrip("/") or "/", writable)


def job_environment(texts: tuple[str, ...]) -> tuple[list[tuple[str, str]], list[str]]:
    """-e NAME=VALUE pairs written into the script, and -e NAME names whose values the job
    takes from its own environment when it runs: the way for a secret, never written down."""
    pairs: dict[str, str] = {}
    passed: list[str] = []
    for text in texts:
        name, equals, value = text.partition("=")
        _check_variable(name)
        if not equals:
            passed.append(name)
            continue
        if inputs.is_secret(name):
            raise ExportUsage(
                f"-e {name}=...: {name} names a secret, and the script is a file others read: "
                f"give -e {name} alone, and export {name} in the shell that runs sbatch."
            )
        pairs[name] = value
    return list(pairs.items()), passed


def _check_variable(name: str) -> None:
    if not inputs.VARIABLE.match(name):
        raise ExportUsage(
            f"-e {name!r}: not a variable name; give NAME=VALUE or NAME, NAME of letters, "
            "digits and '_' not starting with a digit."
        )
    if name == layout.OUTPUTS_VARIABLE:
        raise ExportUsage(
            f"-e {name}: the job sets {name} itself ({layout.OUTPUTS}); to choose the folder "
            "mounted there, export REPROBUILD_OUTPUTS=/path before sbatch."
        )


def pulled_reference(runtime: str, reference: str) -> str:
    """The pushed reference as the runtime's pull names it."""
    if runtime == "apptainer":
        return f"docker://{reference}"
    if runtime == "pyxis":
        # enroot's own syntax, REGISTRY#IMAGE. Enroot 3.x reads no `@digest`; it takes the
        # digest where a tag goes and asks the registry for that manifest, which pins it all the
        # same, and later releases read it the same way.
        parsed = ImageReference.parse(reference)
        return f"{parsed.registry}#{parsed.repository}:{parsed.digest}"
    return reference


def default_cpus(job: Job, options: SlurmOptions) -> int | None:
    if options.cpus_per_task is not None:
        return options.cpus_per_task
    return CPUS_PER_GPU * job.gpus_per_node or None


def slurm(project: Path, job: Job, options: SlurmOptions) -> str:
    """The sbatch script: one torchrun per node through srun, in the runtime's container."""
    check_job(job)
    if options.runtime not in RUNTIMES:
        raise ExportUsage(f"--runtime {options.runtime!r}: give one of {', '.join(RUNTIMES)}.")
    check_values(
        {
            "time": options.time,
            "partition": options.partition,
            "constraint": options.constraint,
            "mem": options.mem,
        }
    )
    data = inputs.data_mounts(options.data, cluster_data)
    user_env, passed = job_environment(options.env)
    pushed = pushed_target(project, job.platform)
    env = dict(pushed.env)
    env.update(user_env)
    values = {
        "name": pushed.name,
        "version": __version__,
        "runtime": options.runtime,
        "image": pushed.reference,
        "pulled": pulled_reference(options.runtime, pushed.reference),
        "lock_digest": pushed.lock_digest,
        "platform": pushed.platform,
        "machine": pushed.machine,
        "named_platform": pushed.platform != AMD64,  # the header names any other platform
        "job": job,
        "options": options,
        "cpus_per_task": default_cpus(job, options),
        "default_sif": sif.output_path(project, pushed.image).name,
        "env": [pair for pair in env.items() if pair[0] not in passed],
        "passed": passed,
        "data": data,
        "pyxis_mounts": "".join(f",{mount.path}:{mount.inside}:{mount.mode}" for mount in data),
        "outputs": layout.OUTPUTS,
        "code": layout.CODE,
        "uid": layout.UID,
        "port": RENDEZVOUS_PORT,
        "command_json": json.dumps(list(job.command)),
        "literal_dollar": any("$" in word or "`" in word for word in job.command),
    }
    return render(project, SLURM_TEMPLATE, values)
