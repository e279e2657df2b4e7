"""The spec's `exclude` and `include`: read with the spec, and on their own for the code layer."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder import knowledge
from builder.codeset import Rules
from builder.errors import SpecError
from builder.spec.check import code_rules, load_spec

KB = knowledge.load()
MINIMAL = 'name = "lab/train"\npython = "3.11"\ntorch = "2.5.1"\n'


def problems(tmp_path: Path, text: str) -> list[str]:
    (tmp_path / "reprobuild.toml").write_text(MINIMAL + text)
    with pytest.raises(SpecError) as caught:
        load_spec(tmp_path, KB)
    with pytest.raises(SpecError) as alone:
        code_rules(tmp_path)
    assert alone.value.problems == caught.value.problems
    return caught.value.problems


def test_patterns_are_read_with_the_spec_and_alone(tmp_path: Path) -> None:
    (tmp_path / "reprobuild.toml").write_text(
        MINIMAL + 'exclude = ["data/", "*.ckpt"]\ninclude = ["data/sample.csv"]\n'
    )
    spec = load_spec(tmp_path, KB).spec
    assert (spec.exclude, spec.include) == (("data/", "*.ckpt"), ("data/sample.csv",))
    assert code_rules(tmp_path) == Rules(("data/", "*.ckpt"), ("data/sample.csv",))


def test_no_patterns_and_no_spec_mean_no_rules(tmp_path: Path) -> None:
    assert code_rules(tmp_path) == Rules()
    (tmp_path / "reprobuild.toml").write_text(MINIMAL)
    assert load_spec(tmp_path, KB).spec.exclude == ()
    assert code_rules(tmp_path) == Rules()


def test_patterns_from_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.reprobuild]\nname = "lab/train"\npython = "3.11"\ntorch = "2.5.1"\n'
        'exclude = ["checkpoints/"]\n'
    )
    assert code_rules(tmp_path) == Rules(("checkpoints/",), ())


def test_a_string_instead_of_a_list(tmp_path: Path) -> None:
    assert problems(tmp_path, 'exclude = "data/"\n') == [
        "'exclude' must be a list; got string 'data/'."
    ]


def test_a_list_holding_other_than_strings(tmp_path: Path) -> None:
    assert problems(tmp_path, 'include = ["a", 3]\nexclude = [{ path = "x" }]\n') == [
        "'exclude' must be a list of strings; {'path': 'x'} is not a string.",
        "'include' must be a list of strings; 3 is not a string.",
    ]


def test_a_pattern_gitignore_cannot_read(tmp_path: Path) -> None:
    assert problems(tmp_path, 'exclude = ["ok/", "data\\\\", "!"]\n') == [
        "'exclude' entry 'data\\\\' is not a gitignore-style pattern (a lone '!' or a trailing "
        'backslash?): write e.g. "data/", "*.ckpt" or "!data/sample.csv".',
        "'exclude' entry '!' is not a gitignore-style pattern (a lone '!' or a trailing "
        'backslash?): write e.g. "data/", "*.ckpt" or "!data/sample.csv".',
    ]


def test_a_misspelt_key_gets_a_suggestion(tmp_path: Path) -> None:
    (tmp_path / "reprobuild.toml").write_text(MINIMAL + 'excludes = ["data/"]\n')
    with pytest.raises(SpecError) as caught:
        load_spec(tmp_path, KB)
    assert caught.value.problems == ["unknown key 'excludes': did you mean 'exclude'?"]
