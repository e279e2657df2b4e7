"""Spec loading and validation: exact messages, every problem at once, never a traceback."""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

from builder import knowledge
from builder.compat import CudaVersion, DriverVersion
from builder.errors import SpecError
from builder.spec import check, model
from builder.spec.check import load_spec

KB = knowledge.load()
MINIMAL = 'name = "lab/train"\npython = "3.11"\ntorch = "2.5.1"\n'


def write(tmp_path: Path, text: str, name: str = "reprobuild.toml") -> Path:
    (tmp_path / name).write_text(text)
    return tmp_path


def problems_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_spec(write(tmp_path, text), KB)
    return caught.value.problems


def test_minimal_spec_gets_defaults(tmp_path: Path) -> None:
    loaded = load_spec(write(tmp_path, MINIMAL), KB)
    parsed = loaded.spec
    assert parsed.name == "lab/train" and parsed.python == "3.11"
    assert str(parsed.torch) == "==2.5.1"
    assert parsed.cuda is None and not parsed.cpu_only and parsed.cuda_toolkit == "none"
    assert parsed.determinism == model.Determinism(0, False, ":4096:8")
    assert parsed.target == model.TargetSpec()
    assert loaded.notes == ()


def test_full_spec(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("numpy==2.1.3\n")
    text = MINIMAL.replace('"2.5.1"', '"2.5.*"') + (
        'cuda = "12.4"\nrequirements = "requirements.txt"\nsystem_packages = ["libgl1", "ffmpeg"]\n'
        'base = { bootstrap = "debian:bookworm", snapshot = "2026-11-01T00:00:00Z" }\n'
        '[target]\ndriver = "535.104.05"\ngpus = ["A100", "sm_90", "8.9"]\n'
        '[determinism]\nseed = 7\ntf32 = true\ncublas_workspace_config = ":16:8"\n'
    )
    parsed = load_spec(write(tmp_path, text), KB).spec
    assert str(parsed.torch) == "==2.5.*"
    assert parsed.cuda == CudaVersion(12, 4)
    assert parsed.requirements == (tmp_path / "requirements.txt").resolve()
    assert parsed.system_packages == ("ffmpeg", "libgl1")
    assert parsed.base == model.BootstrapBase("debian:bookworm", "2026-11-01T00:00:00Z")
    assert parsed.target.driver == DriverVersion.parse("535.104.05")
    assert [(g.label, str(g.capability)) for g in parsed.target.gpus] == [
        ("A100", "8.0"),
        ("sm_90", "9.0"),
        ("8.9", "8.9"),
    ]
    assert parsed.determinism == model.Determinism(7, True, ":16:8")


def test_unknown_keys_suggest_the_right_one(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, MINIMAL + 'pyhton = "3.11"\n[target]\ndriverr = "535.1"\n')
    assert problems == [
        "unknown key 'pyhton': did you mean 'python'?",
        "unknown key 'target.driverr': did you mean 'driver'?",
    ]


def test_wrong_types_name_key_given_and_allowed(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path, MINIMAL.replace('"3.11"', "3.11") + "cpu_only = 1\n[determinism]\nseed = true\n"
    )
    assert problems == [
        "'python' must be a string; got float 3.11.",
        "'cpu_only' must be a boolean; got integer 1.",
        "'determinism.seed' must be an integer; got True.",
    ]


def test_values_are_checked(tmp_path: Path) -> None:
    text = (
        'name = "Lab/Train"\npython = "3"\ntorch = "latest"\ncuda = "12"\n'
        '[target]\ndriver = "new"\ngpus = ["A1000"]\n'
        '[determinism]\ncublas_workspace_config = ":8:8"\n'
    )
    problems = problems_of(tmp_path, text)
    assert problems[0].startswith("'name' = 'Lab/Train' is not a valid image name: the path part")
    assert problems[1] == "'python' = '3' must be a major.minor version such as \"3.11\"."
    assert problems[2].startswith("'torch' = 'latest' is neither a version nor a PEP 440")
    assert problems[3] == "'cuda' = '12' must be \"auto\" or a CUDA major.minor such as \"12.4\"."
    assert problems[4].startswith("'target.driver' = 'new' must be an NVIDIA driver version")
    assert problems[5] == (
        "'target.gpus' entry 'A1000' is neither a compute capability (\"sm_80\", \"8.6\") "
        "nor a GPU the knowledge base knows; did you mean 'A100' or 'A10' or 'A100 80GB'? "
        "`reprobuild knowledge gpus` lists the names."
    )
    assert problems[6].startswith("'determinism.cublas_workspace_config' = ':8:8' must be one of")
    assert len(problems) == 7


def test_a_name_with_a_registry_port_is_accepted(tmp_path: Path) -> None:
    text = MINIMAL.replace('"lab/train"', '"registry.lab.example:5000/lab/train"')
    assert load_spec(write(tmp_path, text), KB).spec.name == "registry.lab.example:5000/lab/train"


NAME_FORM = (
    "write [HOST[:PORT]/]PATH, with path parts of lower-case letters and digits joined by '.', "
    "'_', '__' or '-', e.g. \"lab/resnet-train\" or \"registry.lab.example:5000/lab/train\"."
)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("Lab/Train", f"the path part 'Lab' has upper-case letters; {NAME_FORM}"),
        ("lab//train", f"it has an empty path part ('//', or '/' at an end); {NAME_FORM}"),
        (
            "registry.lab.example:5000x/lab/train",
            "the registry port '5000x' of 'registry.lab.example:5000x' is not a number from 1 to "
            f"65535; {NAME_FORM}",
        ),
        (
            "lab/train:v1",
            "it ends in the tag ':v1', but each build is tagged with its lock's digest; write "
            'the name alone, "lab/train".',
        ),
    ],
)
def test_a_name_that_is_not_an_image_name_says_why(tmp_path: Path, name: str, problem: str) -> None:
    text = MINIMAL.replace('"lab/train"', f'"{name}"')
    assert problems_of(tmp_path, text) == [
        f"'name' = {name!r} is not a valid image name: {problem}"
    ]


def test_required_keys(tmp_path: Path) -> None:
    assert problems_of(tmp_path, "") == [
        "'name' is required, e.g. name = \"lab/resnet-train\".",
        "'python' is required, e.g. python = \"3.11\".",
        '\'torch\' is required, e.g. torch = "2.5.*" or "==2.5.1".',
    ]


def test_exclusive_keys(tmp_path: Path) -> None:
    (tmp_path / "r.txt").write_text("")
    problems = problems_of(
        tmp_path,
        MINIMAL + 'cpu_only = true\ncuda = "12.4"\nrequirements = "r.txt"\npackages = ["x"]\n'
        '[target]\nhost = true\ngpus = ["A100"]\n',
    )
    assert "'requirements' and 'packages' are exclusive: list packages in one place." in problems
    assert "'cpu_only = true' builds an image without CUDA; remove 'cuda'." in problems
    assert "'cpu_only = true' images run on no GPU; remove the [target] table." in problems
    assert any(p.startswith("'target.host = true' reads driver and GPUs") for p in problems)


def test_torch_local_tag_implies_cuda(tmp_path: Path) -> None:
    parsed = load_spec(write(tmp_path, MINIMAL.replace('"2.5.1"', '"2.5.1+cu121"')), KB).spec
    assert parsed.torch_variant == "cu121" and parsed.cuda == CudaVersion(12, 1)
    assert str(parsed.torch) == "==2.5.1"
    problems = problems_of(
        tmp_path, MINIMAL.replace('"2.5.1"', '"2.5.1+cu121"') + 'cuda = "12.4"\n'
    )
    assert problems == ["'torch' asks for +cu121 (CUDA 12.1) but 'cuda' = \"12.4\"; keep one."]


def test_packages_are_pep508_and_exclude_torch(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, MINIMAL + 'packages = ["numpy>=", "torch==2.5.1"]\n')
    assert problems[0].startswith("'packages' entry 'numpy>=' is not a PEP 508 requirement")
    assert problems[1] == "'packages' must not list torch: set the version with the 'torch' key."


def test_system_packages_are_names_only(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, MINIMAL + 'system_packages = ["curl=7.88", "Bad Name"]\n')
    assert problems == [
        "'system_packages' entry 'curl=7.88': give the package name only; the lock pins the exact "
        "version from the archive snapshot.",
        "'system_packages' entry 'Bad Name' is not a Debian package name.",
    ]


def test_missing_requirements_file(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, MINIMAL + 'requirements = "nope.txt"\n')
    assert problems == [
        f"'requirements' = 'nope.txt': no such file (looked for {tmp_path.resolve()}/nope.txt)."
    ]


def test_a_requirements_path_with_a_nul_byte(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, MINIMAL + 'requirements = "a\\u0000b"\n')
    assert problems == ["'requirements' = 'a\\x00b' is not a usable path (embedded null byte)."]


def test_pyproject_table_is_read(tmp_path: Path) -> None:
    write(tmp_path, "[tool.reprobuild]\n" + MINIMAL, "pyproject.toml")
    loaded = load_spec(tmp_path, KB)
    assert loaded.path == tmp_path / "pyproject.toml" and loaded.spec.name == "lab/train"


def test_spec_file_wins_over_pyproject_with_a_note(tmp_path: Path) -> None:
    write(tmp_path, "[tool.reprobuild]\nname = 'other/name'\n", "pyproject.toml")
    loaded = load_spec(write(tmp_path, MINIMAL), KB)
    assert loaded.spec.name == "lab/train"
    assert loaded.notes == (
        "both reprobuild.toml and [tool.reprobuild] in pyproject.toml exist; "
        "using reprobuild.toml.",
    )


def test_no_spec_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"no spec found: create reprobuild.toml in"):
        load_spec(tmp_path, KB)


def test_invalid_toml_is_a_spec_error(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, 'name = "x\n')
    assert len(problems) == 1 and problems[0].startswith("not valid TOML:")


def test_spec_error_exit_code_is_2() -> None:
    assert SpecError("x", ["y"]).exit_code == 2


_keys = st.sampled_from(
    [*check.TOP_KEYS, *check.TARGET_KEYS, *check.DETERMINISM_KEYS, *check.BOOTSTRAP_KEYS, "tool"]
) | st.text(string.ascii_lowercase + "_", min_size=1, max_size=12)
_scalars = (
    st.text(max_size=30)
    | st.sampled_from(
        [
            "3.11",
            "2.5.*",
            "2.5.1+cu121",
            "12.4",
            "auto",
            "A100",
            "sm_90",
            "535.104.05",
            ":4096:8",
            "lab/x",
            "debian:bookworm",
            "2026-11-01T00:00:00Z",
            "devel",
        ]
    )
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.booleans()
    | st.floats(allow_nan=False)
)
_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_keys, children, max_size=5),
    max_leaves=12,
)
_documents = st.dictionaries(_keys, _values, max_size=10)


@settings(max_examples=300, deadline=None)
@given(document=_documents)
def test_any_toml_document_yields_a_spec_or_a_spec_error(
    tmp_path_factory: pytest.TempPathFactory, document: dict[str, Any]
) -> None:
    folder = tmp_path_factory.mktemp("spec")
    for name in ("reprobuild.toml", "pyproject.toml"):
        (folder / name).write_text(tomli_w.dumps(document))
        try:
            loaded = load_spec(folder, KB)
        except SpecError as error:
            assert error.problems and all(isinstance(p, str) and p for p in error.problems)
        else:
            assert isinstance(loaded.spec, model.Spec)
        (folder / name).unlink()
