"""What every export refuses and shares: an unpushed or stale build, bad jobs and values, names,
the determinism environment, atomic writes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from builder.build import buildrecord
from builder.errors import USAGE, ExportError, ExportUsage, RecordError
from builder.publish import export, kubernetes, slurm
from builder.publish.export import Job
from builder.publish.slurm import SlurmOptions
from builder.render import plan
from tests.unit.publish.exporting import lock_digest, write_record


def test_an_unpushed_build_is_refused(project: Path) -> None:
    write_record(project, lock_digest(project), pushed=None)
    expected = (
        f"the last build, reprobuild/example-train:{lock_digest(project)[7:19]}, was not pushed, "
        "and a cluster cannot pull an image from this machine's engine: run `reprobuild build "
        "--push REGISTRY/NAME:TAG` with a registry the cluster's nodes can pull from, then "
        "export again."
    )
    with pytest.raises(ExportError) as slurm_error:
        slurm.slurm(project, Job(("train.py",)), SlurmOptions())
    assert str(slurm_error.value) == expected
    with pytest.raises(ExportError) as kubernetes_error:
        kubernetes.kubernetes(project, Job(("train.py",)))
    assert str(kubernetes_error.value) == expected


def test_a_record_of_another_lock_is_refused(project: Path) -> None:
    older = "sha256:" + "00" * 32
    write_record(project, older)
    with pytest.raises(ExportError) as error:
        kubernetes.kubernetes(project, Job(("train.py",)))
    assert str(error.value) == (
        f"{project / 'reprobuild.build.json'} is the record of an older build (lock {older}), "
        f"not of the current reprobuild.lock ({lock_digest(project)}): run `reprobuild build "
        "--push REGISTRY/NAME:TAG` to build and push this lock, then export again."
    )


def test_a_missing_record_says_to_build(project: Path) -> None:
    (project / "reprobuild.build.json").unlink()
    with pytest.raises(RecordError, match="run `reprobuild build` first"):
        slurm.slurm(project, Job(("train.py",)), SlurmOptions())


def test_an_edited_pushed_reference_is_refused(project: Path) -> None:
    record = buildrecord.read(project)
    buildrecord.write(project, dataclasses.replace(record, pushed="lab/train:latest"))
    with pytest.raises(ExportError, match=r"names the pushed image 'lab/train:latest', not name@"):
        kubernetes.kubernetes(project, Job(("train.py",)))


@pytest.mark.parametrize(
    ("job", "message"),
    [
        (Job(("python", "train.py")), "the command starts with python, but the job starts"),
        (Job(("/usr/bin/python3.11", "t.py")), "starts with /usr/bin/python3.11, but"),
        (Job(("torchrun", "t.py")), "the command starts with torchrun, but the job starts"),
        (Job(()), "give the training command after --"),
        (Job(("t.py",), nodes=0), "a job needs at least one node"),
        (Job(("t.py",), gpus_per_node=-1), "a job needs at least one node, and a number of GPUs"),
        (Job(("-m",)), "-m needs the module torchrun runs: -- -m package.train --epochs 3."),
    ],
)
def test_bad_jobs_are_refused_as_usage_errors(project: Path, job: Job, message: str) -> None:
    with pytest.raises(ExportUsage, match=message) as slurm_error:
        slurm.slurm(project, job, SlurmOptions())
    with pytest.raises(ExportUsage, match=message):
        kubernetes.kubernetes(project, job)
    assert slurm_error.value.exit_code == USAGE


def test_bad_option_values_are_refused(project: Path) -> None:
    job = Job(("t.py",))
    with pytest.raises(ExportUsage, match=r"^--time '4h': give a Slurm time limit"):
        slurm.slurm(project, job, SlurmOptions(time="4h"))
    with pytest.raises(ExportUsage, match=r"^--partition 'gpu; rm': give a partition name"):
        slurm.slurm(project, job, SlurmOptions(partition="gpu; rm"))
    with pytest.raises(ExportUsage, match=r"^--namespace 'ML': a namespace is a DNS-1123"):
        kubernetes.kubernetes(project, job, "ML")


@pytest.mark.parametrize("value", ["90", "30:00", "04:00:00", "2-00", "2-04:00:00", "UNLIMITED"])
def test_slurm_time_formats(value: str) -> None:
    assert export.value_problem("time", value) is None


def test_names_are_dns_labels() -> None:
    assert export.dns_label("lab/ResNet_train") == "lab-resnet-train"
    assert export.dns_label("--x--") == "x"
    assert export.dns_label("///") == "reprobuild"
    long = export.dns_label("lab/" + "a" * 56 + "-b" * 10)
    assert long == "lab-" + "a" * 53 and len(long) == export.NAME_LIMIT
    assert export.dns_label("a" * 56 + "-b") == "a" * 56  # no trailing '-' after the cut


def test_determinism_env_takes_what_the_plan_has() -> None:
    env = (
        ("PATH", "/bin"),
        ("REPROBUILD_SEED", "7"),
        ("PYTHONHASHSEED", "0"),
        ("NVIDIA_VISIBLE_DEVICES", "all"),
    )
    assert plan.determinism_env(env) == (("REPROBUILD_SEED", "7"), ("PYTHONHASHSEED", "0"))


def test_write_is_atomic_and_explains_a_bad_path(tmp_path: Path) -> None:
    target = tmp_path / "job.sh"
    target.write_text("old\n")
    export.write(target, "new\n")
    assert target.read_text() == "new\n"
    assert [path.name for path in tmp_path.iterdir()] == ["job.sh"]
    with pytest.raises(ExportError, match=r"^cannot write .*/missing/job.sh \(No such file"):
        export.write(tmp_path / "missing" / "job.sh", "x")
