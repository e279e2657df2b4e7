"""`reprobuild export kubernetes --format trainjob`: a Kubeflow Trainer v2 TrainJob that the
CRD's schema accepts, pinned to the pushed digest.

The schema is tests/data/kubeflow-trainer's copy of the CRD (see SOURCE.md there). jsonschema
reads its openAPIV3Schema and ignores the x-kubernetes-* keywords and OpenAPI's formats, so
three of the API server's checks are done here by hand: unknown fields (a structural schema
prunes them, so a misspelt field would vanish without an error), list-map keys that must be
unique, and the CEL rules (x-kubernetes-validations) on the fields the export writes.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest
import yaml

from builder import __version__
from builder.cli.export import export_kubernetes
from builder.errors import USAGE, ExportError, ExportUsage
from builder.publish import kubernetes
from builder.publish.export import Job
from tests.cli import reprobuild
from tests.unit.publish.exporting import (
    COMMAND,
    NAME,
    PUSHED,
    PUSHED_ARM64,
    expected_env,
    lock_digest,
    write_arm64_record,
    write_record,
    write_two_platform_record,
)

CRD = (
    Path(__file__).parents[2] / "data" / "kubeflow-trainer" / "trainer.kubeflow.org_trainjobs.yaml"
)
# The API server validates a custom resource's metadata as ObjectMeta; the CRD says only `object`.
OBJECT_META = {"name", "namespace", "labels", "annotations"}
# Transition rules: evaluated on update only, never on create.
TRANSITION = "self == oldSelf"
RFC_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
CEL: dict[str, Callable[[Any], bool]] = {
    "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')": lambda job: bool(
        RFC_1035.match(job["metadata"]["name"])
    ),
    "size(self.metadata.name) <= 63": lambda job: len(job["metadata"]["name"]) <= 63,
    "self >= 1": lambda value: value >= 1,
}
SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "runAsGroup": 1000,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
LABELS = {
    "app.kubernetes.io/name": NAME,
    "app.kubernetes.io/component": "training",
    "app.kubernetes.io/managed-by": "reprobuild",
}


@functools.cache
def schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["spec"]["group"] == "trainer.kubeflow.org"
    assert crd["spec"]["names"]["kind"] == "TrainJob"
    (version,) = [found for found in crd["spec"]["versions"] if found["storage"]]
    assert version["name"] == "v1alpha1" and version["served"]
    found: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return found


def problems(job: dict[str, Any]) -> list[str]:
    """What the API server would refuse or silently drop; nothing for a good TrainJob: the
    schema's errors (jsonschema, Draft 4, the dialect OpenAPI v3's schemas build on), then the
    checks jsonschema cannot make from the x-kubernetes-* keywords."""
    found = [
        f"{'.'.join(map(str, error.absolute_path))}: {error.message}"
        for error in jsonschema.Draft4Validator(schema()).iter_errors(job)
    ]
    body = {key: value for key, value in job.items() if key != "metadata"}
    found += structural(body, schema(), "")
    found += [
        f".metadata.{key}: not in ObjectMeta"
        for key in job.get("metadata", {})
        if key not in OBJECT_META
    ]
    for path, rule, value in cel_rules(job, schema(), ""):
        problem = _cel(path, rule, value)
        if problem is not None:
            found.append(problem)
    return found


def structural(value: Any, node: dict[str, Any], path: str) -> list[str]:
    """Fields the schema does not name (pruned by Kubernetes) and repeated list-map keys."""
    if isinstance(value, list):
        found = _duplicate_keys(value, node, path)
        for index, item in enumerate(value):
            found += structural(item, node.get("items", {}), f"{path}[{index}]")
        return found
    if not isinstance(value, dict) or node.get("x-kubernetes-preserve-unknown-fields"):
        return []
    extra = node.get("additionalProperties")
    found = []
    for key, item in value.items():
        child = node.get("properties", {}).get(key, extra if isinstance(extra, dict) else None)
        if child is None:
            found.append(f"{path}.{key}: not in the schema, so the API server would drop it")
        else:
            found += structural(item, child, f"{path}.{key}")
    return found


def _duplicate_keys(items: list[Any], node: dict[str, Any], path: str) -> list[str]:
    if node.get("x-kubernetes-list-type") != "map":
        return []
    keys = [tuple(item.get(key) for key in node["x-kubernetes-list-map-keys"]) for item in items]
    return [f"{path}: repeated key {key}" for key in dict.fromkeys(keys) if keys.count(key) > 1]


def cel_rules(value: Any, node: dict[str, Any], path: str) -> list[tuple[str, str, Any]]:
    """Every CEL rule on a field present in value, with the field's value."""
    found = [
        (path or ".", rule["rule"], value) for rule in node.get("x-kubernetes-validations", [])
    ]
    if isinstance(value, list):
        for index, item in enumerate(value):
            found += cel_rules(item, node.get("items", {}), f"{path}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            child = node.get("properties", {}).get(key)
            if child is not None:
                found += cel_rules(item, child, f"{path}.{key}")
    return found


def _cel(path: str, rule: str, value: Any) -> str | None:
    if rule == TRANSITION:
        return None
    if rule not in CEL:
        return f"{path}: the CEL rule {rule!r} has no check in this test: add one"
    return None if CEL[rule](value) else f"{path}: fails the CEL rule {rule!r}"


def parse(text: str) -> dict[str, Any]:
    documents = [document for document in yaml.safe_load_all(text) if document is not None]
    assert len(documents) == 1
    job: dict[str, Any] = documents[0]
    assert problems(job) == []
    return job


def export(project: Path, job: Job, namespace: str | None = None) -> dict[str, Any]:
    return parse(kubernetes.kubernetes(project, job, namespace, "trainjob"))


def node_patch(job: dict[str, Any]) -> dict[str, Any]:
    (patch,) = job["spec"]["runtimePatches"]
    assert patch["manager"] == "reprobuild.dev/export"
    (replicated,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert replicated["name"] == "node"
    pod: dict[str, Any] = replicated["template"]["spec"]["template"]
    return pod


def test_trainjob_single_node(project: Path) -> None:
    text = kubernetes.kubernetes(project, Job(COMMAND, gpus_per_node=2), manifest="trainjob")
    assert text.splitlines()[:8] == [
        f"# Generated by reprobuild {__version__} (`reprobuild export kubernetes --format "
        "trainjob`); apply with `kubectl apply -f FILE`.",
        f"# image: {PUSHED}",
        f"# lock:  {lock_digest(project)}",
        "# Needs Kubeflow Trainer v2 and its ClusterTrainingRuntime torch-distributed.",
        "# A TrainJob has no field for the Job export's workingDir (the image's WORKDIR, "
        "/workspace, applies),",
        "# imagePullPolicy (Kubernetes defaults a digest to IfNotPresent), restartPolicy: Never "
        "and backoffLimit: 0",
        "# (the runtime sets neither: JobSet's OnFailure and the Job's 6 retries apply).",
        "---",
    ]
    assert parse(text) == {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {
            "name": NAME,
            "labels": LABELS,
            "annotations": {
                "reprobuild.dev/image": PUSHED,
                "reprobuild.dev/lock": lock_digest(project),
            },
        },
        "spec": {
            "runtimeRef": {
                "apiGroup": "trainer.kubeflow.org",
                "kind": "ClusterTrainingRuntime",
                "name": "torch-distributed",
            },
            "trainer": {
                "image": PUSHED,
                "command": ["torchrun"],
                # Kubernetes expands $(VAR) in a container's command and args, and the trainer
                # copies these into the container as they are: $$ is the literal $.
                "args": ["train.py", "--data", "/my data", "$$HOME", "`id`", "--lr=0.1"],
                "env": [{"name": key, "value": value} for key, value in expected_env(project)],
                "numNodes": 1,
                "numProcPerNode": 2,
                "resourcesPerNode": {"limits": {"nvidia.com/gpu": 2}},
            },
            "runtimePatches": [
                {
                    "manager": "reprobuild.dev/export",
                    "trainingRuntimeSpec": {
                        "template": {"spec": {"replicatedJobs": [_expected_node_patch()]}}
                    },
                }
            ],
        },
    }


def _expected_node_patch(architecture: str = "amd64") -> dict[str, Any]:
    pod = {
        "metadata": {"labels": LABELS},
        "spec": {
            # The well-known labels every kubelet sets on its node.
            "nodeSelector": {"kubernetes.io/arch": architecture, "kubernetes.io/os": "linux"},
            "containers": [
                {
                    "name": "node",
                    "securityContext": SECURITY,
                    "volumeMounts": [
                        {"name": "outputs", "mountPath": "/outputs"},
                        {"name": "shm", "mountPath": "/dev/shm"},
                    ],
                }
            ],
            "volumes": [
                {"name": "outputs", "emptyDir": {}},
                {"name": "shm", "emptyDir": {"medium": "Memory"}},
            ],
        },
    }
    return {"name": "node", "template": {"spec": {"template": pod}}}


def test_trainjob_multi_node(project: Path) -> None:
    job = export(project, Job(("-m", "lab.train", "--tag=$(date)"), nodes=3, gpus_per_node=8), "ml")
    assert job["metadata"]["name"] == NAME and job["metadata"]["namespace"] == "ml"
    trainer = job["spec"]["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (3, 8)
    assert trainer["resourcesPerNode"] == {"limits": {"nvidia.com/gpu": 8}}
    assert trainer["command"] == ["torchrun"]
    assert trainer["args"] == ["-m", "lab.train", "--tag=$$(date)"]
    # The runtime sets PET_* (torchrun's rendezvous); the job adds no variable of its own.
    assert trainer["env"] == [{"name": key, "value": value} for key, value in expected_env(project)]
    assert not any(item["name"].startswith("PET_") for item in trainer["env"])
    assert node_patch(job) == _expected_node_patch()["template"]["spec"]["template"]


def test_an_arm64_trainjob_runs_on_arm64_nodes(project: Path) -> None:
    write_arm64_record(project)
    job = export(project, Job(COMMAND, nodes=2, gpus_per_node=4))
    assert job["spec"]["trainer"]["image"] == PUSHED_ARM64
    assert job["metadata"]["annotations"]["reprobuild.dev/image"] == PUSHED_ARM64
    assert node_patch(job) == _expected_node_patch("arm64")["template"]["spec"]["template"]


def test_the_job_format_is_unchanged_by_default(project: Path) -> None:
    job = Job(COMMAND, nodes=2, gpus_per_node=4)
    text = kubernetes.kubernetes(project, job)
    assert kubernetes.kubernetes(project, job, manifest="job") == text
    assert [document["kind"] for document in yaml.safe_load_all(text)] == ["Service", "Job"]


def test_the_validator_catches_a_broken_trainjob(project: Path) -> None:
    """The schema check has teeth: each kind of mistake the API server refuses or drops."""
    good = export(project, Job(("train.py",), nodes=2))
    breakages: list[tuple[Callable[[dict[str, Any]], None], str]] = [
        (lambda job: job["spec"]["trainer"].update(numNodes="2"), "spec.trainer.numNodes: '2'"),
        (lambda job: job["spec"].pop("runtimeRef"), "spec: 'runtimeRef' is a required property"),
        (
            lambda job: job["spec"]["runtimePatches"][0].pop("manager"),
            "spec.runtimePatches.0: 'manager' is a required property",
        ),
        (
            lambda job: job["spec"]["trainer"].update(numProcsPerNode=4),
            ".spec.trainer.numProcsPerNode: not in the schema",
        ),
        (
            lambda job: node_patch(job)["spec"]["containers"][0].update(runAsNonRoot=True),
            ".containers[0].runAsNonRoot: not in the schema",
        ),
        (
            lambda job: node_patch(job)["spec"]["containers"][0].update(workingDir="/workspace"),
            ".containers[0].workingDir: not in the schema",
        ),
        (lambda job: job["metadata"].update(labelz={}), ".metadata.labelz: not in ObjectMeta"),
        (
            lambda job: job["spec"]["trainer"]["env"].append({"name": "PYTHONHASHSEED"}),
            ".spec.trainer.env: repeated key ('PYTHONHASHSEED',)",
        ),
        (
            lambda job: job["metadata"].update(name="3d-train"),
            ".: fails the CEL rule \"self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')\"",
        ),
        (
            lambda job: job["spec"]["trainer"].update(numProcPerNode=0),
            ".spec.trainer.numProcPerNode: fails the CEL rule 'self >= 1'",
        ),
    ]
    for breaking, expected in breakages:
        job = copy.deepcopy(good)
        breaking(job)
        found = problems(job)
        assert any(expected in line for line in found), (expected, found)


def test_every_cel_rule_on_an_emitted_field_is_checked(project: Path) -> None:
    """jsonschema skips CEL; a refreshed CRD with a new rule on a field we write fails here."""
    job = export(project, Job(("train.py",), nodes=2))
    patch = ".spec.runtimePatches[0]"
    pod = f"{patch}.trainingRuntimeSpec.template.spec.replicatedJobs[0].template.spec.template.spec"
    assert [(path, rule) for path, rule, _ in cel_rules(job, schema(), "")] == [
        (".", "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')"),
        (".", "size(self.metadata.name) <= 63"),
        (".spec.runtimeRef", TRANSITION),
        (".spec.trainer", TRANSITION),
        (".spec.trainer.numProcPerNode", "self >= 1"),
        (f"{patch}.manager", TRANSITION),
        (f"{pod}.containers", TRANSITION),
        (f"{pod}.volumes", TRANSITION),
    ]


@pytest.mark.parametrize(
    ("name", "nodes", "expected"),
    [
        (NAME, 2, NAME),
        ("3dunet-train", 1, "job-3dunet-train"),
        ("a" * 57, 9, "a" * 48),
        ("a" * 57, 10, "a" * 48),  # pod indexes 0 to 9
        ("a" * 57, 11, "a" * 47),  # pod index 10: one character more
        ("a" * 47 + "-b", 2, "a" * 47),  # no trailing '-' after the cut
    ],
)
def test_trainjob_names_keep_jobset_pod_names_valid(name: str, nodes: int, expected: str) -> None:
    found = kubernetes.trainjob_name(name, nodes)
    assert found == expected
    # JobSet's webhook checks <jobset>-<replicated job>-<job index>-<pod index>-abcde.
    assert RFC_1035.match(f"{found}-node-0-{nodes - 1}-abcde")
    assert len(f"{found}-node-0-{nodes - 1}-abcde") <= 63


def test_refusals_are_the_job_exports(project: Path) -> None:
    with pytest.raises(ExportUsage, match=r"^--format 'cronjob': give one of job, trainjob\.$"):
        kubernetes.kubernetes(project, Job(("train.py",)), manifest="cronjob")
    with pytest.raises(ExportUsage, match="the command starts with torchrun") as error:
        kubernetes.kubernetes(project, Job(("torchrun", "t.py")), manifest="trainjob")
    assert error.value.exit_code == USAGE
    for manifest in kubernetes.MANIFESTS:
        with pytest.raises(ExportUsage, match=r"^a Kubernetes job needs at least one GPU per"):
            kubernetes.kubernetes(project, Job(("t.py",), gpus_per_node=0), manifest=manifest)
    write_record(project, lock_digest(project), pushed=None)
    with pytest.raises(ExportError, match=r"was not pushed, and a cluster cannot pull"):
        kubernetes.kubernetes(project, Job(("train.py",)), manifest="trainjob")


def test_the_cli_offers_each_manifest() -> None:
    (option,) = [param for param in export_kubernetes.params if param.name == "manifest"]
    assert isinstance(option.type, click.Choice)
    assert tuple(option.type.choices) == kubernetes.MANIFESTS
    assert option.default == "job"


def test_the_cli_writes_a_trainjob(project: Path, tmp_path: Path) -> None:
    output = tmp_path / "trainjob.yaml"
    options = ("--format", "trainjob", "--nodes", "2", "--gpus-per-node", "4", "-o", str(output))
    result = reprobuild("-C", str(project), "export", "kubernetes", *options, "--", "train.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == f"note: wrote {output}; apply it with kubectl apply -f {output}\n"
    job = parse(output.read_text())
    assert job["spec"]["trainer"]["args"] == ["train.py"]
    assert (job["spec"]["trainer"]["numNodes"], job["spec"]["trainer"]["numProcPerNode"]) == (2, 4)


def test_the_cli_writes_the_trainjob_of_a_platform(project: Path, tmp_path: Path) -> None:
    write_two_platform_record(project)
    output = tmp_path / "trainjob.yaml"
    options = ("--format", "trainjob", "--platform", "linux/arm64", "-o", str(output))
    result = reprobuild("-C", str(project), "export", "kubernetes", *options, "--", "train.py")
    assert result.returncode == 0, result.stderr
    job = parse(output.read_text())
    assert job["spec"]["trainer"]["image"] == PUSHED_ARM64
    assert node_patch(job)["spec"]["nodeSelector"] == {
        "kubernetes.io/arch": "arm64",
        "kubernetes.io/os": "linux",
    }


def test_the_cli_refuses_an_unknown_format(project: Path) -> None:
    arguments = ("export", "kubernetes", "--format", "cronjob", "--", "train.py")
    result = reprobuild("-C", str(project), *arguments)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines()[-1] == (
        "Error: Invalid value for '--format': 'cronjob' is not one of 'job', 'trainjob'."
    )
    shown = reprobuild("export", "kubernetes", "--help")
    assert shown.returncode == 0
    assert "--format trainjob --nodes 2 --gpus-per-node 8" in shown.stdout
