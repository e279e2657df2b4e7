"""Rendering: one plan, two formats that cannot drift; exact snapshots; hadolint and spython.

Locks are built in the test (no engine or network needed); the snapshots in tests/snapshots/
are the exact expected outputs. Regenerate them with REPROBUILD_UPDATE_SNAPSHOTS=1 after an
intended change, and read the diff.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from builder.errors import RenderError
from builder.lock.model import BaseLock, Lock
from builder.render import context, plan, templates
from tests.expected import check_snapshot
from tests.locks import DIGEST, make_lock, wheel

LOCK_DIGEST = "sha256:" + "e" * 64


DEVEL_BASE = BaseLock(
    kind="registry",
    reference="nvidia/cuda:12.4.1-devel-ubuntu22.04",
    python="3.10.12",
    suite="jammy",
    image=f"nvidia/cuda@{DIGEST}",
    digest=DIGEST,
    digest_source="registry",
    python_source="apt",
)
VARIANT = "https://download.pytorch.org/whl/cu121"
CASES = {
    "cpu-only": make_lock(
        cuda=None,
        label="2.5.1+cpu",
        packages=(
            wheel(
                "torch",
                "2.5.1+cpu",
                "https://download.pytorch.org/whl/cpu/torch-2.5.1%2Bcpu-cp311-cp311-linux_x86_64.whl",
            ),
        ),
    ),
    "gpu-default": make_lock(),
    "gpu-variant-index": make_lock(
        cuda="12.1",
        label="2.5.1+cu121",
        packages=(
            wheel(
                "torch",
                "2.5.1+cu121",
                f"{VARIANT}/torch-2.5.1%2Bcu121-cp311-cp311-linux_x86_64.whl",
            ),
            wheel("numpy", "2.1.3"),
        ),
    ),
    "cuda-devel": make_lock(
        base=DEVEL_BASE,
        python="3.10",
        system=("python3.10-venv=3.10.12-1~22.04.7", "python3.10=3.10.12-1~22.04.7"),
    ),
    "system-packages": make_lock(system=("curl=7.88.1-10+deb12u15", "libgomp1=12.2.0-14+deb12u1")),
}


def rendered(lock: Lock, project: Path | None = None) -> dict[str, str]:
    return templates.render(plan.plan(lock, LOCK_DIGEST), LOCK_DIGEST, project)


@pytest.mark.parametrize("case", sorted(CASES))
def test_snapshots(case: str) -> None:
    check_snapshot(case, rendered(CASES[case]))


def test_user_template_override(tmp_path: Path) -> None:
    overrides = tmp_path / templates.OVERRIDE_FOLDER
    overrides.mkdir()
    original = (templates.packaged_templates() / "Dockerfile.j2").read_text()
    (overrides / "Dockerfile.j2").write_text(
        original.replace("WORKDIR {{ code }}", "WORKDIR {{ code }}\nEXPOSE 8888")
    )
    outputs = rendered(CASES["gpu-default"], tmp_path)
    assert "EXPOSE 8888" in outputs["Dockerfile"]
    check_snapshot("user-template-override", outputs)


def test_undefined_names_in_templates_are_errors(tmp_path: Path) -> None:
    overrides = tmp_path / templates.OVERRIDE_FOLDER
    overrides.mkdir()
    (overrides / "Dockerfile.j2").write_text("FROM {{ plan.no_such_field }}\n")
    with pytest.raises(RenderError) as caught:
        rendered(CASES["gpu-default"], tmp_path)
    assert str(caught.value).startswith(
        "the template Dockerfile.j2 failed to render (UndefinedError:"
    )
    assert "fix or remove it" in str(caught.value)


def _dockerfile_pairs(text: str, instruction: str) -> dict[str, str]:
    joined = text.replace("\\\n", " ")
    pairs: dict[str, str] = {}
    for line in joined.splitlines():
        if line.startswith(f"{instruction} "):
            for item in shlex.split(line[len(instruction) + 1 :]):
                key, _, value = item.partition("=")
                pairs[key] = value
    return pairs


def _section(text: str, name: str) -> list[str]:
    lines, inside = [], False
    for line in text.splitlines():
        if line.startswith("%"):
            inside = line.strip() == f"%{name}"
            continue
        if inside and line.strip():
            lines.append(line.strip())
    return lines


@pytest.mark.parametrize("case", sorted(CASES))
def test_both_formats_carry_the_same_image(case: str) -> None:
    outputs = rendered(CASES[case])
    docker = outputs["Dockerfile"].replace(" \\\n    && ", " && ")
    definition = outputs["reprobuild.def"]
    build_plan = plan.plan(CASES[case], LOCK_DIGEST)
    assert f"FROM {build_plan.base} AS system\n" in docker
    assert f"From: {build_plan.base}\n" in definition
    environment = dict(
        shlex.split(line.removeprefix("export "))[0].split("=", 1)
        for line in _section(definition, "environment")
    )
    docker_env = _dockerfile_pairs(docker, "ENV")
    assert {k: docker_env[k] for k in environment} == environment == dict(build_plan.env)
    labels = dict(line.split(" ", 1) for line in _section(definition, "labels"))
    assert _dockerfile_pairs(docker, "LABEL") == labels == dict(build_plan.labels)
    for package in build_plan.system_packages:
        assert docker.count(package) == definition.count(package) == 1
    assert build_plan.clamped(build_plan.create_venv()) in definition
    assert build_plan.clamped(build_plan.finish()) in definition
    for command in (build_plan.create_venv(), build_plan.finish()):
        assert docker.count(command) == definition.count(command) == 1
    install = "python /opt/reprobuild/install/wheelinstall.py /opt/reprobuild/install/layers.json"
    assert docker.count(install) == definition.count(install) == 1
    for layer in build_plan.layers:
        tree = f"/opt/reprobuild/layers/{layer.stage}/"
        assert f"COPY --from=install --chown=0:0 {tree} /" in docker
        assert f"cp -a {tree}. /" in definition
    assert 'ENTRYPOINT ["/opt/reprobuild/bin/entry"]' in docker
    assert _section(definition, "runscript") == [
        "cd /workspace",
        'exec /opt/reprobuild/bin/entry "$@"',
    ]


@pytest.mark.parametrize("case", sorted(CASES))
def test_hadolint_reports_nothing_at_warning_level(case: str, tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(rendered(CASES[case])["Dockerfile"])
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "hadolint"),
            "--failure-threshold",
            "warning",
            str(dockerfile),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("case", sorted(CASES))
def test_definition_parses_with_spython(case: str, tmp_path: Path) -> None:
    from spython.main.parse.parsers import SingularityParser

    definition = tmp_path / "reprobuild.def"
    definition.write_text(rendered(CASES[case])["reprobuild.def"])
    recipe = next(iter(SingularityParser(str(definition)).recipe.values()))
    build_plan = plan.plan(CASES[case], LOCK_DIGEST)
    assert recipe.fromHeader == build_plan.base
    assert [item.split("=", 1)[0] for item in recipe.environ] == [k for k, _ in build_plan.env]
    assert len(recipe.labels) == len(build_plan.labels)


def test_docker_bootstrap_from_the_built_image() -> None:
    built = "127.0.0.1:5000/lab/train@sha256:" + "f" * 64
    definition = templates.render(
        plan.plan(CASES["gpu-default"], LOCK_DIGEST), LOCK_DIGEST, None, built
    )["reprobuild.def"]
    assert definition.startswith(f"Bootstrap: docker\nFrom: {built}\n")
    assert "%post" not in definition and "%files" not in definition
    assert "/tmp" not in definition


def test_no_tmp_staging_and_layer_order() -> None:
    docker = rendered(CASES["system-packages"])["Dockerfile"]
    order = [
        docker.index(marker)
        for marker in (
            "-m venv --without-pip",
            "COPY reprobuild/install/ /opt",
            "wheelinstall.py",
            "layers/torch/ /",
            "layers/closure/ /",
            "apt-get install",
            "useradd",
            "LABEL org.opencontainers",
            "FROM deps\n",
            "COPY reprobuild/image/ /",
            "COPY code/ /",
        )
    ]
    assert order == sorted(order)
    assert "/tmp" not in rendered(CASES["system-packages"])["reprobuild.def"]


def test_context_is_written_atomically_with_code_filtered(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    (project / ".git" / "config").write_text("x")
    (project / ".env").write_text("TOKEN=secret")
    (project / "id_rsa").write_text("key")
    (project / "src").mkdir()
    (project / "src" / "train.py").write_text("print('hi')\n")
    lock = CASES["gpu-default"]
    build_plan = plan.plan(lock, LOCK_DIGEST)
    output = project / ".reprobuild" / "context"
    context.write(output, context.files(build_plan, rendered(lock)), project, build_plan)
    workspace = output / "code" / "workspace"
    code = sorted(str(p.relative_to(workspace)) for p in workspace.rglob("*"))
    assert code == ["src", "src/train.py"]
    home = output / "reprobuild" / "image" / "opt" / "reprobuild"
    assert (home / "payload" / "reprobuild_smoke" / "__main__.py").is_file()
    assert os.access(home / "bin" / "entry", os.X_OK)
    assert {p.stat().st_mtime for p in output.rglob("*")} == {plan.LAYER_EPOCH}
    assert "**/.env" in (output / ".dockerignore").read_text()
    with pytest.raises(FileNotFoundError):  # the wheelhouse lacks the lock's wheels
        context.write(output, {"Dockerfile": "changed"}, project, build_plan, project / "none")
    assert (home / "bin" / "entry").is_file()  # the old context is untouched
    assert [p.name for p in output.parent.iterdir()] == ["context"]


def test_entry_script_runs_the_command_or_python(tmp_path: Path) -> None:
    entry = tmp_path / "entry"
    entry.write_text(context.ENTRY)
    entry.chmod(0o755)
    assert (
        subprocess.run(
            [str(entry), "echo", "a b"], capture_output=True, text=True, check=True
        ).stdout
        == "a b\n"
    )


def override(project: Path, edit: Callable[[str], str]) -> None:
    """A project's Dockerfile.j2 override: the packaged template, edited."""
    folder = project / templates.OVERRIDE_FOLDER
    folder.mkdir(exist_ok=True)
    packaged = (templates.packaged_templates() / "Dockerfile.j2").read_text()
    (folder / "Dockerfile.j2").write_text(edit(packaged))


def dockerfile(project: Path | None = None) -> templates.RenderedDockerfile:
    build_plan = plan.plan(CASES["gpu-default"], LOCK_DIGEST)
    return templates.render_dockerfile(build_plan, LOCK_DIGEST, project)


def test_the_rendered_dockerfile_carries_its_two_stages() -> None:
    rendered = dockerfile()
    stages = rendered.stages
    assert stages is not None
    assert "\nLABEL org.opencontainers.image.title=lab/train \\\n" in stages.dependencies
    assert stages.dependencies.endswith("copies only these (no wheels).\n")
    assert "FROM system AS deps\n" in stages.dependencies
    assert stages.image.startswith("# The smoke test payload")
    assert stages.image.splitlines()[1] == "COPY reprobuild/image/ /"
    assert stages.trust_copies
    assert rendered.text == stages.dependencies + "FROM deps\n" + stages.image
    assert len(stages.key) == 16


def test_the_dependencies_image_is_named_by_the_text_that_builds_it(tmp_path: Path) -> None:
    stages = dockerfile().stages
    edited_image, edited_dependencies = tmp_path / "image", tmp_path / "dependencies"
    for project in (edited_image, edited_dependencies):
        project.mkdir()
    override(edited_image, lambda text: text.replace("WORKDIR", "EXPOSE 80\nWORKDIR"))
    override(
        edited_dependencies,
        lambda text: text.replace("FROM system AS {{", "# x\nFROM system AS {{"),
    )
    image_stages, dependencies_stages = (
        dockerfile(edited_image).stages,
        dockerfile(edited_dependencies).stages,
    )
    assert stages is not None and image_stages is not None and dependencies_stages is not None
    assert image_stages.key == stages.key != dependencies_stages.key


def test_copies_are_trusted_only_in_the_packaged_final_stage(tmp_path: Path) -> None:
    """A final stage reprobuild wrote copies only its own files; an override's, however small,
    is read back and checked."""
    override(tmp_path, lambda text: text)
    packaged, overridden = dockerfile().stages, dockerfile(tmp_path).stages
    assert packaged is not None and overridden is not None
    assert packaged.trust_copies and not overridden.trust_copies
    assert overridden.image == packaged.image


@pytest.mark.parametrize(
    "edit",
    [
        lambda text: "FROM {{ plan.base }}\nCOPY {{ code_tree }}/ /\n",  # no blocks
        lambda text: text.replace(
            "{% endblock %}\nFROM {{ deps_stage }}\n",
            "{% endblock %}\nFROM {{ deps_stage }} AS final\n",
        ),
        lambda text: "ARG BASE=x\n" + text,  # text outside the blocks: a global ARG
        lambda text: text.replace("{% block image %}", "{% block app %}"),
    ],
)
def test_an_override_without_the_two_blocks_is_built_in_one_pass(
    edit: Callable[[str], str], tmp_path: Path
) -> None:
    override(tmp_path, edit)
    rendered = dockerfile(tmp_path)
    assert rendered.stages is None
    assert rendered.text.startswith(("FROM python@", "ARG BASE=x\n", "# lab/train"))


def test_a_context_holds_only_the_names_render_may_replace(tmp_path: Path) -> None:
    lock = CASES["gpu-default"]
    build_plan = plan.plan(lock, LOCK_DIGEST)
    project = tmp_path / "project"
    project.mkdir()
    output = context.write(
        tmp_path / "context", context.files(build_plan, rendered(lock)), project, build_plan
    )[0]
    assert {entry.name for entry in output.iterdir()} <= context.CONTEXT_NAMES


def test_a_staging_folder_a_killed_render_left_is_removed_by_the_next(tmp_path: Path) -> None:
    lock = CASES["gpu-default"]
    build_plan = plan.plan(lock, LOCK_DIGEST)
    project = tmp_path / "project"
    project.mkdir()
    left = tmp_path / ".context.k1ll3d"  # held by no process: its maker is gone
    (left / "code").mkdir(parents=True)
    (left / "code" / "half.py").write_text("")
    context.write(
        tmp_path / "context", context.files(build_plan, rendered(lock)), project, build_plan
    )
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["context", "project"]
