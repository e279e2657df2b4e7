"""`reprobuild export slurm|kubernetes`: a cluster job that runs a training command in the
pushed build, by digest."""

from __future__ import annotations

from pathlib import Path

import click

from builder.cli.options import CommandAfterDashes, Options, note

_EXPORT_SETTINGS = {"ignore_unknown_options": True, "allow_interspersed_args": False}


def _export_value(
    _context: click.Context, parameter: click.Parameter, value: str | None
) -> str | None:
    from builder.publish.export import value_problem

    problem = value_problem(str(parameter.name), value)
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
            help="Nodes to run on; more than one: their processes meet at the first node.",
        ),
        click.option(
            "--gpus-per-node",
            type=click.IntRange(min=0),
            default=1,
            show_default=True,
            help="GPUs on each node; torchrun starts one process per GPU (Slurm: 0 for a CPU "
            "job, one process per node).",
        ),
        click.option(
            "--platform",
            # The knowledge's PLATFORMS, spelt out so that --help need not import it.
            type=click.Choice(["linux/amd64", "linux/arm64"]),
            help="Which of the build's images the job runs, and so the CPU of its nodes: "
            "linux/amd64 (x86_64) or linux/arm64 (aarch64: GH200, GB200). Default: the build's "
            "platform; needed when the build has several.",
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


def _emit(text: str, output: Path | None, next_step: str) -> None:
    from builder.publish.export import write

    if output is None:
        click.echo(text, nl=False)
        return
    write(output, text)
    note(f"wrote {output}; {next_step} {output}")


@click.group("export")
def export_group() -> None:
    """Write a cluster job that runs a training command in the pushed build, by digest."""


@export_group.command("slurm", cls=CommandAfterDashes, context_settings=_EXPORT_SETTINGS)
@_job_options
@click.option(
    "--runtime",
    type=click.Choice(["apptainer", "pyxis", "podman", "docker"]),
    default="apptainer",
    show_default=True,
    help="The cluster's container runtime: Apptainer (a SIF pulled once), pyxis/enroot "
    "(srun --container-image), or a podman or docker container on each node.",
)
@click.option(
    "--data",
    multiple=True,
    metavar="NAME=PATH[:rw]",
    help="Mount PATH, a path on the cluster, at /data/NAME (read-only unless :rw). Repeatable.",
)
@click.option(
    "-e",
    "--env",
    multiple=True,
    metavar="NAME[=VALUE]",
    help="Pass a variable: NAME=VALUE is written into the script; NAME alone is taken from the "
    "job's environment when it runs (the way for a secret). Repeatable.",
)
@click.option(
    "--time", metavar="TIME", callback=_export_value, help="Time limit, e.g. 04:00:00 (#SBATCH)."
)
@click.option("--partition", callback=_export_value, help="Partition to submit to (#SBATCH).")
@click.option(
    "--constraint",
    metavar="FEATURES",
    callback=_export_value,
    help="Node features the job needs, in the cluster's own names, e.g. aarch64 or 'gh200&ib' "
    "(#SBATCH).",
)
@click.option(
    "--cpus-per-task",
    type=click.IntRange(min=1),
    help="CPUs for each node's task (#SBATCH, and given to srun). Default: 8 per GPU; Slurm's "
    "own for a CPU job.",
)
@click.option(
    "--mem", metavar="SIZE", callback=_export_value, help="Memory per node, e.g. 200G (#SBATCH)."
)
@click.option(
    "--sif",
    metavar="PATH",
    help="Apptainer: the SIF to run, pulled there first when missing. Default: $REPROBUILD_SIF, "
    "else the name `reprobuild build --format sif` gives it, in the submit directory.",
)
@click.pass_obj
def export_slurm(
    options: Options,
    nodes: int,
    gpus_per_node: int,
    platform: str | None,
    output: Path | None,
    runtime: str,
    data: tuple[str, ...],
    env: tuple[str, ...],
    time: str | None,
    partition: str | None,
    constraint: str | None,
    cpus_per_task: int | None,
    mem: str | None,
    sif: str | None,
    command: tuple[str, ...],
) -> None:
    """Write an sbatch script that runs COMMAND with torchrun in the pushed build.

    srun starts one task per node; each runs torchrun in the image, by digest, through the
    runtime, with the lock's determinism environment, the outputs at /outputs and each --data
    at /data/NAME. Several nodes meet at the first one (c10d rendezvous). scancel stops every
    container. The job's record (nodes, world size, image, each node's exit) is written beside
    its outputs, at outputs/JOBID.json, with their digests at outputs/JOBID.sha256.
    --gpus-per-node 0 makes a CPU job (one process per node). A first step checks that every
    node has the image's CPU (x86_64 or aarch64) and stops the job before any container starts
    when one has not. COMMAND is what torchrun runs: a script and its arguments, or -m MODULE and
    its arguments.

    \b
        reprobuild export slurm --nodes 2 --gpus-per-node 4 -o job.sh -- train.py --epochs 3
        sbatch job.sh
    """
    from builder.publish import export, slurm

    job = export.Job(command, nodes, gpus_per_node, platform=platform)
    choices = slurm.SlurmOptions(
        runtime=runtime,
        time=time,
        partition=partition,
        constraint=constraint,
        cpus_per_task=cpus_per_task,
        mem=mem,
        sif=sif,
        data=data,
        env=env,
    )
    text = slurm.slurm(options.project, job, choices)
    _emit(text, output, "submit it with sbatch")


@export_group.command("kubernetes", cls=CommandAfterDashes, context_settings=_EXPORT_SETTINGS)
@_job_options
@click.option(
    "--namespace", callback=_export_value, help="Namespace of the Job (default: kubectl's)."
)
@click.option(
    "--format",
    "manifest",
    # The stage's kubernetes.MANIFESTS, spelt out so that --help need not import the stage.
    type=click.Choice(["job", "trainjob"]),
    default="job",
    show_default=True,
    help="job: a Job (and a headless Service on several nodes). trainjob: a Kubeflow Trainer "
    "v2 TrainJob on its torch-distributed ClusterTrainingRuntime.",
)
@click.pass_obj
def export_kubernetes(
    options: Options,
    nodes: int,
    gpus_per_node: int,
    platform: str | None,
    output: Path | None,
    namespace: str | None,
    manifest: str,
    command: tuple[str, ...],
) -> None:
    """Write a Kubernetes Job that runs COMMAND with torchrun in the pushed build.

    One node: a Job with `torchrun --standalone`. Several: an Indexed Job, one pod per node,
    and a headless Service through which the pods meet at pod 0 for torchrun's rendezvous.
    Pods run as the image's non-root user with the lock's determinism environment, an emptyDir
    at /outputs and a memory-backed /dev/shm, on nodes of the image's CPU (a nodeSelector on
    kubernetes.io/arch and kubernetes.io/os). COMMAND is what torchrun runs: a script and its
    arguments, or -m MODULE and its arguments. With --format trainjob: one TrainJob for
    Kubeflow Trainer v2's torch-distributed runtime, which gives torchrun its rendezvous.

    \b
        reprobuild export kubernetes --nodes 2 --gpus-per-node 8 -o job.yaml -- train.py
        kubectl apply -f job.yaml
        reprobuild export kubernetes --format trainjob --nodes 2 --gpus-per-node 8 \\
            -o trainjob.yaml -- train.py
        kubectl apply -f trainjob.yaml
    """
    from builder.publish import export, kubernetes

    job = export.Job(command, nodes, gpus_per_node, platform=platform)
    text = kubernetes.kubernetes(options.project, job, namespace, manifest)
    _emit(text, output, "apply it with kubectl apply -f")
