"""The image catalogue (images/): every spec there locked, resolved and rendered as committed.

For each folder holding a reprobuild.toml: its lock is current for the spec (`reprobuild lock
--check`, offline), the spec resolves to the build its lock records, the Dockerfile and
Apptainer definition rendered from the lock equal their snapshots under
tests/snapshots/catalogue-NAME/ (regenerate with REPROBUILD_UPDATE_SNAPSHOTS=1, then read the
diff), and its README names the folder and the torch build the lock holds. No engine or network.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from builder import knowledge
from builder.lock import lockfile
from builder.render import plan, templates
from builder.resolve.resolve import ResolutionRecord, resolve_spec
from builder.spec.check import load_spec
from tests.cli import reprobuild
from tests.expected import check_snapshot

IMAGES = Path(__file__).parents[2] / "images"
WHERE_READ = {"knowledge_version", "sources"}
FOLDERS = sorted(spec.parent.name for spec in IMAGES.glob("*/reprobuild.toml"))


def test_the_catalogue_holds_its_images_each_with_a_row_in_its_readme() -> None:
    assert FOLDERS == ["example", "lightning", "transformers", "vision"]
    rows = re.findall(r"^\| `([a-z-]+)/` \|", (IMAGES / "README.md").read_text(), re.MULTILINE)
    assert rows == FOLDERS


@pytest.mark.parametrize("name", FOLDERS)
def test_the_lock_is_current_for_the_spec(name: str) -> None:
    result = reprobuild("-C", str(IMAGES / name), "lock", "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == f"{IMAGES / name / 'reprobuild.lock'} is up to date with the spec\n"


@pytest.mark.parametrize("name", FOLDERS)
def test_the_spec_resolves_to_the_build_its_lock_records(name: str) -> None:
    loaded_knowledge = knowledge.load()
    spec = load_spec(IMAGES / name, loaded_knowledge).spec
    locked = lockfile.read_current(IMAGES / name).lock
    resolved = resolve_spec(spec, loaded_knowledge).record()
    # The build, not where the facts were read: a refreshed knowledge base that chooses the same
    # build leaves the lock as good as it was.
    assert _build(resolved) == _build(locked.resolution)
    assert _build(resolved)["torch"]["pypi_default"] is True


def _build(record: ResolutionRecord) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key not in WHERE_READ}


@pytest.mark.parametrize("name", FOLDERS)
def test_the_rendered_build_equals_its_snapshot(name: str) -> None:
    current = lockfile.read_current(IMAGES / name)
    build_plan = plan.plan(current.lock, current.digest)
    outputs = templates.render(build_plan, current.digest, current.project)
    assert sorted(outputs) == ["Dockerfile", "reprobuild.def"]
    check_snapshot(f"catalogue-{name}", outputs)


@pytest.mark.parametrize("name", FOLDERS)
def test_the_readme_names_its_folder_and_the_locked_torch_build(name: str) -> None:
    readme = (IMAGES / name / "README.md").read_text()
    torch = lockfile.read_current(IMAGES / name).lock.resolution["torch"]
    assert f"images/{name}" in readme
    assert f"torch {torch['label']}" in readme, f"images/{name}/README.md: torch {torch['label']}"
