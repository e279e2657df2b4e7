"""A release without a wheel for the image's Python is named as such, with the nearest releases
that have one, from the package's files on the index; a real conflict stays a conflict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.errors import IndexUnavailable, NotFound
from builder.lock import wheels
from builder.lock.python import explain_uv_failure
from tests.cli import reprobuild

PYPI = "https://pypi.org/simple"
# uv 0.13's own words for `numpy==1.20` with --python-version 3.11 --only-binary :all:.
UV_NO_WHEEL = """\
error: No solution found when resolving dependencies
  cause: Because numpy==1.20.0 has no usable wheels and you require numpy==1.20, we can conclude \
that your requirements are unsatisfiable.

hint: Wheels are required for `numpy` because building from source is disabled for all packages \
(i.e., with `--no-build`)
"""
UV_CONFLICT = """\
error: No solution found when resolving dependencies
  cause: Because scipy==1.16.0 depends on numpy>=1.25.2,<2.6 and you require numpy<1.25, we can \
conclude that your requirements and scipy==1.16.0 are incompatible.
         And because you require scipy==1.16.0, we can conclude that your requirements are \
unsatisfiable.
"""
LINUX = "manylinux_2_17_x86_64.manylinux2014_x86_64"


def wheel(name: str, version: str, python: str, platform: str = LINUX) -> str:
    return f"{name}-{version}-{python}-{python}-{platform}.whl"


# A cut of numpy's files on PyPI: 1.20.0 stops at cp39, 1.23.2 is the first with cp311.
NUMPY = [
    wheel("numpy", "1.19.5", "cp39", "manylinux2010_x86_64"),
    "numpy-1.20.0.zip",
    *(wheel("numpy", "1.20.0", f"cp3{minor}", "manylinux2010_x86_64") for minor in (7, 8, 9)),
    wheel("numpy", "1.20.0", "cp39", "macosx_10_9_x86_64"),
    *(wheel("numpy", "1.21.6", f"cp3{minor}", LINUX) for minor in (7, 8, 9)),
    wheel("numpy", "1.21.6", "cp310", LINUX),
    wheel("numpy", "1.23.0rc1", "cp311", LINUX),  # a pre-release is never suggested
    wheel("numpy", "1.23.2", "cp311", LINUX),
    wheel("numpy", "1.23.3", "cp311", LINUX),
    wheel("numpy", "2.3.0", "cp311", "manylinux_2_34_x86_64"),  # too new a glibc for the base
]


class CannedIndex:
    """PyPI's simple API from canned file lists; any other package or index is a 404."""

    def __init__(
        self,
        projects: dict[str, list[str]],
        html: bool = False,
        fields: dict[str, dict[str, object]] | None = None,
    ) -> None:
        self.projects = projects
        self.html = html
        self.fields = fields or {}  # per file name: "yanked", "requires-python"
        self.asked: list[str] = []

    def get(self, url: str, headers: dict[str, str] | None = None) -> bytes:
        self.asked.append(url)
        name = url.removeprefix(f"{PYPI}/").removesuffix("/")
        if name not in self.projects:
            raise NotFound(f"pypi.org has no {url} (HTTP 404).")
        files = self.projects[name]
        if self.html:
            links = "".join(f'<a href="../../files/{f}#sha256=0">{f}</a>\n' for f in files)
            return f"<html><body>{links}</body></html>".encode()
        entries = [
            {"filename": f, "requires-python": None, "yanked": False, **self.fields.get(f, {})}
            for f in files
        ]
        return json.dumps({"meta": {"api-version": "1.1"}, "files": entries}).encode()


def query(python: str = "3.11", *lines: str, index: wheels.Index | None = None) -> wheels.Query:
    requirements = ("torch==2.5.1", *(lines or ("numpy==1.20",)))
    return wheels.Query(python, requirements, index or CannedIndex({"numpy": NUMPY}))


NUMPY_1_20 = (
    "numpy==1.20 has no wheel for Python 3.11 (cp311) on linux x86_64 (manylinux_2_28) at "
    "https://pypi.org/simple, and the image installs wheels only (builds from source are off): "
    "numpy 1.20.0 has linux x86_64 wheels for Python 3.7, 3.8 and 3.9 only. The nearest numpy "
    "release with a cp311 wheel for linux x86_64 is 1.23.2 (newer): pin numpy==1.23.2, or "
    "choose a Python that numpy 1.20.0 has wheels for."
)


def test_a_release_without_a_wheel_for_the_python_is_not_called_a_conflict() -> None:
    assert explain_uv_failure(UV_NO_WHEEL, [PYPI], query()) == NUMPY_1_20


def test_a_pep_503_page_is_read_as_well() -> None:
    index = CannedIndex({"numpy": NUMPY}, html=True)
    assert explain_uv_failure(UV_NO_WHEEL, [PYPI], query(index=index)) == NUMPY_1_20
    assert index.asked == ["https://pypi.org/simple/numpy/"]


def test_the_variant_index_is_read_first_and_a_404_there_moves_on() -> None:
    index = CannedIndex({"numpy": NUMPY})
    variant = "https://download.pytorch.org/whl/cu118"
    assert explain_uv_failure(UV_NO_WHEEL, [variant, PYPI], query(index=index)) == NUMPY_1_20
    assert index.asked == [f"{variant}/numpy/", "https://pypi.org/simple/numpy/"]


def test_the_nearest_releases_on_both_sides_are_named() -> None:
    files = [
        wheel("foo", "1.0", "cp311"),
        wheel("foo", "1.1", "cp310"),
        wheel("foo", "1.2", "cp311"),
    ]
    stderr = UV_NO_WHEEL.replace("numpy==1.20.0", "foo==1.1").replace("numpy", "foo")
    found = explain_uv_failure(
        stderr, [PYPI], query("3.11", "foo==1.1", index=CannedIndex({"foo": files}))
    )
    assert found == (
        "foo==1.1 has no wheel for Python 3.11 (cp311) on linux x86_64 (manylinux_2_28) at "
        "https://pypi.org/simple, and the image installs wheels only (builds from source are "
        "off): foo 1.1 has linux x86_64 wheels for Python 3.10 only. The nearest foo releases "
        "with a cp311 wheel for linux x86_64 are 1.0 (older) and 1.2 (newer): pin foo==1.0 or "
        "foo==1.2, or choose a Python that foo 1.1 has wheels for."
    )


@pytest.mark.parametrize(
    ("files", "has"),
    [
        (["foo-1.0.tar.gz"], "has only a source distribution"),
        (
            [
                wheel("foo", "1.0", "cp311", "macosx_11_0_arm64"),
                wheel("foo", "1.0", "cp311", "win_amd64"),
            ],
            "has wheels, but none for linux x86_64 (manylinux_2_28) or older",
        ),
    ],
)
def test_a_package_with_no_usable_wheel_at_all_says_what_it_has(files: list[str], has: str) -> None:
    stderr = UV_NO_WHEEL.replace("numpy==1.20.0", "foo==1.0").replace("numpy", "foo")
    found = explain_uv_failure(
        stderr, [PYPI], query("3.11", "foo==1.0", index=CannedIndex({"foo": files}))
    )
    assert found == (
        "foo==1.0 has no wheel for Python 3.11 (cp311) on linux x86_64 (manylinux_2_28) at "
        f"https://pypi.org/simple, and the image installs wheels only (builds from source are "
        f"off): foo 1.0 {has}. No foo release at https://pypi.org/simple has a cp311 wheel for "
        "linux x86_64: build a wheel into a wheelhouse listed with --find-links."
    )


def test_yanked_releases_and_a_python_floor_are_respected() -> None:
    files = [
        wheel("foo", "1.0", "cp39"),
        "foo-1.1-py3-none-any.whl",  # pure Python, but for 3.12 and newer
        wheel("foo", "1.2", "cp311"),  # yanked
        wheel("foo", "1.3", "cp311"),
    ]
    fields: dict[str, dict[str, object]] = {
        files[1]: {"requires-python": ">=3.12"},
        files[2]: {"yanked": "broken build"},
    }
    stderr = UV_NO_WHEEL.replace("numpy==1.20.0", "foo==1.0").replace("numpy", "foo")
    index = CannedIndex({"foo": files}, fields=fields)
    found = explain_uv_failure(stderr, [PYPI], query("3.11", "foo==1.0", index=index))
    assert found.endswith(
        "The nearest foo release with a cp311 wheel for linux x86_64 is 1.3 (newer): pin "
        "foo==1.3, or choose a Python that foo 1.0 has wheels for."
    )


def test_a_requirement_in_a_requirements_file_is_found(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text(
        "# pinned\n--find-links wheels\nnumpy==1.20  # old\n"
    )
    found = explain_uv_failure(
        UV_NO_WHEEL, [PYPI], query("3.11", f"-r {tmp_path / 'requirements.txt'}")
    )
    assert found == NUMPY_1_20


class Unreachable:
    def get(self, url: str, headers: dict[str, str] | None = None) -> bytes:
        raise IndexUnavailable("pypi.org did not answer (ConnectionError: ...).")


def test_an_unreadable_index_still_names_the_missing_wheel() -> None:
    found = explain_uv_failure(UV_NO_WHEEL, [PYPI], query(index=Unreachable()))
    assert found.splitlines()[0] == (
        "numpy: no release that the requirements allow has a wheel for Python 3.11 (cp311) on "
        "linux x86_64 (manylinux_2_28), and the image installs wheels only (builds from source "
        "are off). Pin a release that has one (the index's file list shows which), or build a "
        "wheel into a wheelhouse listed with --find-links:"
    )
    assert found.splitlines()[1] == "error: No solution found when resolving dependencies"


def test_a_real_conflict_stays_a_conflict() -> None:
    index = CannedIndex({})
    found = explain_uv_failure(UV_CONFLICT, [PYPI], query("3.11", "numpy<1.25", index=index))
    assert found.splitlines()[0] == (
        "the Python requirements conflict; relax or align the pins uv names:"
    )
    assert index.asked == []


def test_the_platforms_are_manylinux_up_to_the_bases_glibc() -> None:
    assert wheels.platforms()[:2] == ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64"]
    assert wheels.platforms()[-4:] == [
        "manylinux_2_5_x86_64",
        "manylinux2014_x86_64",
        "manylinux2010_x86_64",
        "manylinux1_x86_64",
    ]


@pytest.mark.network
def test_lock_names_the_missing_wheel_from_pypi(tmp_path: Path) -> None:
    (tmp_path / "reprobuild.toml").write_text(
        'name = "lab/train"\npython = "3.11"\ntorch = "2.5.1"\npackages = ["numpy==1.20"]\n'
    )
    result = reprobuild("-C", str(tmp_path), "lock", timeout=600)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == f"error: {NUMPY_1_20}"
