"""What every export refuses and shares: an unpushed or stale build, the platform's image, bad
jobs and values, names, the determinism environment, atomic writes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from builder.build import buildrecord
from builder.errors import FAILURE, USAGE, ExportError, ExportUsage, RecordError
from builder.publish import export, kubernetes, slurm
from builder.publish.export import Job
from builder.publish.slurm import SlurmOptions
from builder.render import plan
from tests.cli import reprobuild
from tests.unit.publish.exporting import (
    PUSHED,
    PUSHED_ARM64,
    PUSHED_INDEX,
    arm64_image,
    lock_digest,
    write_arm64_record,
    write_record,
    write_two_platform_record,
)

AMBIGUOUS = (
    "the last build has images for linux/amd64 and linux/arm64, and a job runs one of them: give "
    "--platform linux/amd64 (x86_64 nodes) or --platform linux/arm64 (aarch64 nodes)."
)


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


def test_a_build_of_several_platforms_needs_the_platform(project: Path) -> None:
    write_two_platform_record(project)
    with pytest.raises(ExportError) as slurm_error:
        slurm.slurm(project, Job(("train.py",)), SlurmOptions())
    assert str(slurm_error.value) == AMBIGUOUS
    assert slurm_error.value.exit_code == FAILURE  # as every ExportError
    for manifest in kubernetes.MANIFESTS:
        with pytest.raises(ExportError) as kubernetes_error:
            kubernetes.kubernetes(project, Job(("train.py",)), manifest=manifest)
        assert str(kubernetes_error.value) == AMBIGUOUS


def test_each_platform_runs_its_own_manifest_never_the_index(project: Path) -> None:
    write_two_platform_record(project)
    amd64 = export.pushed_target(project, "linux/amd64")
    arm64 = export.pushed_target(project, "linux/arm64")
    tag = lock_digest(project)[7:19]
    assert (amd64.platform, amd64.reference, amd64.image) == (
        "linux/amd64",
        PUSHED,
        f"reprobuild/example-train:{tag}",
    )
    assert (amd64.architecture, amd64.machine) == ("amd64", "x86_64")
    assert (arm64.platform, arm64.reference, arm64.image) == (
        "linux/arm64",
        PUSHED_ARM64,
        arm64_image(lock_digest(project)),
    )
    assert (arm64.architecture, arm64.machine) == ("arm64", "aarch64")
    assert (arm64.name, arm64.lock_digest, arm64.env) == (amd64.name, amd64.lock_digest, amd64.env)
    for platform in ("linux/amd64", "linux/arm64"):
        text = slurm.slurm(project, Job(("train.py",), platform=platform), SlurmOptions())
        assert PUSHED_INDEX.split("@")[1] not in text


def test_a_build_of_one_platform_runs_it_by_default(project: Path) -> None:
    write_arm64_record(project)
    pushed = export.pushed_target(project)
    assert (pushed.platform, pushed.reference) == ("linux/arm64", PUSHED_ARM64)
    assert export.pushed_target(project, "linux/arm64") == pushed


def test_a_platform_the_build_has_no_image_of_is_refused(project: Path) -> None:
    job = Job(("train.py",), platform="linux/arm64")
    expected = (
        'the last build has no linux/arm64 image, only linux/amd64: add "linux/arm64" to '
        "`platforms` in the spec and run `reprobuild build --push REGISTRY/NAME:TAG` (it locks "
        "again first), then export again; or run a platform it has: --platform linux/amd64."
    )
    with pytest.raises(ExportError) as slurm_error:
        slurm.slurm(project, job, SlurmOptions())
    assert str(slurm_error.value) == expected
    assert slurm_error.value.exit_code == FAILURE
    with pytest.raises(ExportError) as kubernetes_error:
        kubernetes.kubernetes(project, job)
    assert str(kubernetes_error.value) == expected
    write_arm64_record(project)
    with pytest.raises(ExportError) as arm64_error:
        kubernetes.kubernetes(project, Job(("train.py",), platform="linux/amd64"))
    assert str(arm64_error.value) == (  # the lock pins linux/amd64: a build of it has one
        "the last build has no linux/amd64 image, only linux/arm64: run `reprobuild build --push "
        "REGISTRY/NAME:TAG` (every platform of the lock), then export again; or run a platform "
        "it has: --platform linux/arm64."
    )


def test_an_edited_reference_of_another_platform_is_refused(project: Path) -> None:
    record = write_two_platform_record(project)
    (arm64,) = record.other_platforms
    edited = dataclasses.replace(arm64, pushed="lab/train:arm64")
    buildrecord.write(project, dataclasses.replace(record, other_platforms=(edited,)))
    assert export.pushed_target(project, "linux/amd64").reference == PUSHED
    with pytest.raises(ExportError, match=r"names the pushed image 'lab/train:arm64', not name@"):
        kubernetes.kubernetes(project, Job(("train.py",), platform="linux/arm64"))


def test_the_cli_refuses_an_ambiguous_build(project: Path) -> None:
    write_two_platform_record(project)
    result = reprobuild("-C", str(project), "export", "kubernetes", "--", "train.py")
    assert (result.returncode, result.stdout) == (FAILURE, "")
    assert result.stderr == f"error: {AMBIGUOUS}\n"
    unknown = reprobuild("-C", str(project), "export", "slurm", "--platform", "linux/riscv64",
                         "--", "train.py")  # fmt: skip
    assert unknown.returncode == USAGE
    assert "Invalid value for '--platform': 'linux/riscv64' is not one of" in unknown.stderr


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
        (
            Job(("t.py",), platform="linux/riscv64"),
            r"^--platform 'linux/riscv64': give one of linux/amd64, linux/arm64\.$",
        ),
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


@pytest.mark.parametrize(
    "value", ["aarch64", "gh200&ib", "gh200|gb200", "[rack1|rack2]", "gpu*2&ib", "(a|b)&c", "!x86"]
)
def test_slurm_constraint_expressions(value: str) -> None:
    assert export.value_problem("constraint", value) is None


@pytest.mark.parametrize("value", ["gh200 ib", "gh200&", "&ib", "a&&b", "a;b", "'a'", "a#b", ""])
def test_slurm_constraints_sbatch_would_misread_are_refused(value: str) -> None:
    assert export.value_problem("constraint", value) == (
        f"{value!r}: give node features as Slurm's --constraint takes them: names (letters, "
        "digits, '_', '.', '-') joined by & (all) or | (any), e.g. aarch64 or 'gh200&ib'."
    )


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
