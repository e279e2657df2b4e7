"""`reprobuild export slurm`: the sbatch script, rendered from templates/slurm.sh.j2 with every
user-supplied word shell-quoted."""

from __future__ import annotations

from pathlib import Path

from builder import __version__, layout
from builder.build import sif
from builder.publish.export import (
    RENDEZVOUS_PORT,
    Job,
    SlurmOptions,
    check_job,
    check_values,
    pushed_target,
    render,
)

SLURM_TEMPLATE = "slurm.sh.j2"


def slurm(project: Path, job: Job, options: SlurmOptions) -> str:
    """The sbatch script: pull the SIF once, then one torchrun per node through srun."""
    check_job(job)
    check_values({"time": options.time, "partition": options.partition})
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
    return render(project, SLURM_TEMPLATE, values)
