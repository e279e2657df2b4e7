"""`reprobuild lock --export`: the closure as a PEP 751 pylock.toml that packaging's reference
reader accepts and selects exactly the lock's wheels from, and as a requirements file that pip
installs, offline and hash-checked, from real wheels (and refuses once a hash is wrong)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.pylock import PackageWheel, Pylock
from packaging.tags import compatible_tags, cpython_tags
from packaging.utils import canonicalize_name

from builder import __version__
from builder.errors import USAGE, LockExportError
from builder.lock import export, lockfile
from builder.lock.model import Lock, LockedPackage
from tests.cli import reprobuild
from tests.locks import make_lock, tiny_wheel

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib

EXAMPLE = Path(__file__).parents[3] / "images" / "example"
# What the image is, as packaging describes an environment: linux, x86_64, CPython 3.11.
IMAGE_ENVIRONMENT = {
    "implementation_name": "cpython",
    "implementation_version": "3.11.7",
    "os_name": "posix",
    "platform_machine": "x86_64",
    "platform_release": "",
    "platform_system": "Linux",
    "platform_version": "",
    "python_full_version": "3.11.7",
    "platform_python_implementation": "CPython",
    "python_version": "3.11",
    "sys_platform": "linux",
}
# The wheel tags pip accepts in the image (glibc 2.36: manylinux 2.28 and older), as packaging
# lists them for a CPython 3.11 on those platforms.
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(28, 4, -1)]
PLATFORMS += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64"]
IMAGE_TAGS = [
    *cpython_tags(python_version=(3, 11), platforms=PLATFORMS),
    *compatible_tags(python_version=(3, 11), interpreter="cp311", platforms=PLATFORMS),
]


def example_lock() -> lockfile.CurrentLock:
    return lockfile.read_current(EXAMPLE)


def test_pylock_is_read_back_and_selects_exactly_the_locked_wheels(tmp_path: Path) -> None:
    current = example_lock()
    text = export.pylock(current.lock, current.project, tmp_path)
    document = Pylock.from_dict(tomllib.loads(text))  # packaging's reader validates it
    assert str(document.lock_version) == "1.0" and document.created_by == "reprobuild"
    assert [str(marker) for marker in document.environments or []] == [
        'sys_platform == "linux" and platform_machine == "x86_64" and python_version == "3.11"'
    ]
    assert str(document.requires_python) == "==3.11.*"
    assert document.tool == {
        "reprobuild": {"version": __version__, "indexes": ["https://pypi.org/simple"]}
    }
    chosen = document.select(environment=IMAGE_ENVIRONMENT, tags=IMAGE_TAGS)  # type: ignore[arg-type]
    selected = [
        (str(package.name), str(package.version), wheel.url, wheel.hashes["sha256"])
        for package, wheel in chosen
        if isinstance(wheel, PackageWheel)
    ]
    locked = current.lock.python.packages
    assert selected == [
        (canonicalize_name(p.name), p.version, p.url, p.sha256)
        for p in locked
        if p.marker is None or Marker(p.marker).evaluate(IMAGE_ENVIRONMENT)
    ]
    assert len(selected) > 10


def test_a_pylock_for_the_image_is_refused_elsewhere(tmp_path: Path) -> None:
    current = example_lock()
    document = Pylock.from_dict(
        tomllib.loads(export.pylock(current.lock, current.project, tmp_path))
    )
    elsewhere = {**IMAGE_ENVIRONMENT, "sys_platform": "darwin", "platform_system": "Darwin"}
    with pytest.raises(Exception, match="environment"):
        list(document.select(environment=elsewhere, tags=IMAGE_TAGS))  # type: ignore[arg-type]


def closure_lock(project: Path) -> Lock:
    """A lock of two real wheels in project/wheels, one of them behind a marker."""
    wheels = project / "wheels"
    wheels.mkdir(parents=True)
    first = tiny_wheel(wheels, "tinyalpha", "1.0")
    second = dataclasses.replace(
        tiny_wheel(wheels, "tinybeta", "2.0"), marker='python_version >= "3.8"'
    )
    lock = make_lock(cuda=None, label="2.5.1+cpu", packages=(first, second))
    python = dataclasses.replace(lock.python, indexes=(), find_links=("wheels",))
    return dataclasses.replace(lock, python=python)


def test_requirements_pin_each_wheel_by_its_hash(tmp_path: Path) -> None:
    project = tmp_path / "project"
    lock = closure_lock(project)
    first, second = lock.python.packages
    text = export.requirements(lock, project, tmp_path / "out")
    assert text.splitlines() == [
        f"# The Python closure of reprobuild.lock, written by reprobuild {__version__}; install "
        "with",
        "#   pip install --require-hashes -r FILE",
        "# for Python 3.11 on x86_64-manylinux_2_28: the lock's one wheel per package and its "
        "sha256.",
        "# Local wheels are paths relative to this file's folder: run pip from there.",
        "--find-links wheels",
        "./../project/wheels/tinyalpha-1.0-py3-none-any.whl \\",
        f"    --hash=sha256:{first.sha256}",
        './../project/wheels/tinybeta-2.0-py3-none-any.whl ; python_version >= "3.8" \\',
        f"    --hash=sha256:{second.sha256}",
    ]
    remote = LockedPackage("torch", "2.5.1", "https://files.example/torch.whl", "ab" * 32)
    indexed = dataclasses.replace(
        lock.python, packages=(remote,), indexes=("https://a/simple", "https://b/simple"),
        find_links=(),
    )  # fmt: skip
    lines = export.requirements(dataclasses.replace(lock, python=indexed), project, tmp_path)
    assert lines.splitlines()[4:] == [
        "--index-url https://a/simple",
        "--extra-index-url https://b/simple",
        "torch==2.5.1 \\",
        f"    --hash=sha256:{'ab' * 32}",
    ]


def pip_install(requirements: Path, target: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-index", "--require-hashes",
         "--disable-pip-version-check", "--target", str(target), "-r", requirements.name],
        cwd=requirements.parent, capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_pip_installs_the_export_offline_and_refuses_a_wrong_hash(tmp_path: Path) -> None:
    project = tmp_path / "project"
    lock = closure_lock(project)
    out = tmp_path / "out"
    out.mkdir()
    requirements = out / "requirements.txt"
    requirements.write_text(export.requirements(lock, project, out))
    installed = pip_install(requirements, tmp_path / "site")
    assert installed.returncode == 0, installed.stderr
    assert (tmp_path / "site" / "tinyalpha" / "__init__.py").read_text() == "__version__ = '1.0'\n"
    assert (tmp_path / "site" / "tinybeta" / "__init__.py").read_text() == "__version__ = '2.0'\n"
    first = lock.python.packages[0]
    requirements.write_text(requirements.read_text().replace(first.sha256, "0" * 64))
    refused = pip_install(requirements, tmp_path / "again")
    assert refused.returncode != 0
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in refused.stderr
    assert not (tmp_path / "again" / "tinyalpha").exists()


def test_pylock_names_local_wheels_relative_to_itself(tmp_path: Path) -> None:
    project = tmp_path / "project"
    lock = closure_lock(project)
    document = tomllib.loads(export.pylock(lock, project, tmp_path / "out"))
    wheels = [package["wheels"][0] for package in document["packages"]]
    assert [wheel["path"] for wheel in wheels] == [
        "../project/wheels/tinyalpha-1.0-py3-none-any.whl",
        "../project/wheels/tinybeta-2.0-py3-none-any.whl",
    ]
    assert [package.get("marker") for package in document["packages"]] == [
        None,
        'python_version >= "3.8"',
    ]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("lock.json", "name the file for its format: pylock.toml (or pylock.NAME.toml) or a"),
        ("pylock.a.b.toml", "a PEP 751 lock file is named pylock.toml or pylock.NAME.toml"),
        ("pylock.json", "a PEP 751 lock file is named pylock.toml"),
    ],
)
def test_a_name_without_a_format_is_refused(name: str, message: str) -> None:
    with pytest.raises(LockExportError, match=message.replace("(", r"\(").replace(")", r"\)")):
        export.export_format(Path(name))


def test_the_command_writes_both_and_refuses_a_bad_name_before_any_work(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    for name in ("reprobuild.toml", "reprobuild.lock"):
        (project / name).write_bytes((EXAMPLE / name).read_bytes())
    pylock, requirements = project / "pylock.toml", project / "requirements.txt"
    result = reprobuild("-C", str(project), "lock", "--export", str(pylock), "--export",
                        str(requirements))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == f"note: wrote {pylock}\nnote: wrote {requirements}\n"
    current = example_lock()
    assert pylock.read_text() == export.pylock(current.lock, current.project, project)
    assert requirements.read_text() == export.requirements(current.lock, current.project, project)
    (project / "reprobuild.toml").write_text("not toml [")  # any locking would fail on it
    refused = reprobuild("-C", str(project), "lock", "--export", str(project / "x.lock"))
    assert refused.returncode == USAGE
    assert "--export" in refused.stderr and "name the file for its format" in refused.stderr
