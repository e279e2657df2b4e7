"""The exports' project: images/example with its real lock, its build pushed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.publish.exporting import example_project


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return example_project(tmp_path)
