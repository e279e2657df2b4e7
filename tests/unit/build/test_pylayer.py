"""The Python layers reprobuild writes itself: the installer's tree, its canonical tar, and that
tar's agreement with normalisation's rewrite of the same tree as the engine writes it. The
engine-side agreement (a plain `docker build` of the rendered Dockerfile gives the same image) is
tests/integration/test_build.py's one-pass test."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from builder import wheelinstall
from builder.build import image, normalise, pylayer
from builder.render import plan

WHEEL_TIME = (2020, 1, 1, 0, 0, 0)


def wheel(folder: Path, name: str, files: dict[str, str], scripts: str = "") -> Path:
    path = folder / f"{name}-1.0-py3-none-any.whl"
    members = {
        **files,
        f"{name}-1.0.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        f"{name}-1.0.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
        f"{name}-1.0.dist-info/RECORD": "",
    }
    if scripts:
        members[f"{name}-1.0.dist-info/entry_points.txt"] = f"[console_scripts]\n{scripts}\n"
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in members.items():
            archive.writestr(zipfile.ZipInfo(member, WHEEL_TIME), text)
    return path


def install(tmp_path: Path, umask: int = 0o022) -> Path:
    wheels = tmp_path / "wheels"
    wheels.mkdir(exist_ok=True)
    first = wheel(wheels, "ns_a", {"ns/__init__.py": "", "ns/a.py": "A = 1\n"}, "tool = ns.a:main")
    second = wheel(wheels, "ns_b", {"ns/__init__.py": "", "ns/b.py": "B = 2\n"})
    root = tmp_path / f"tree-{umask:o}"
    previous = os.umask(umask)
    try:
        wheelinstall.install_layer([first, second], root, venv="/opt/venv", python="3.11", epoch=1)
    finally:
        os.umask(previous)
    return root


def test_the_tree_is_the_venvs_with_modes_and_dates_from_the_files_kinds(tmp_path: Path) -> None:
    root = install(tmp_path)
    site = root / "opt/venv/lib/python3.11/site-packages"
    names = sorted(str(p.relative_to(site)) for p in site.rglob("*") if p.is_file())
    assert names == [
        "ns/__init__.py",
        "ns/a.py",
        "ns/b.py",
        *(f"ns_a-1.0.dist-info/{f}" for f in ("INSTALLER", "METADATA", "RECORD", "WHEEL")),
        "ns_a-1.0.dist-info/entry_points.txt",
        *(f"ns_b-1.0.dist-info/{f}" for f in ("INSTALLER", "METADATA", "RECORD", "WHEEL")),
    ]
    assert sorted(p.name for p in (root / "opt/venv/bin").iterdir()) == ["tool"]
    assert (root / "opt/venv/bin/tool").read_text().startswith("#!/opt/venv/bin/python\n")
    assert (site / "ns_a-1.0.dist-info/INSTALLER").read_text() == "reprobuild\n"
    # The namespace's __init__.py, shipped by both wheels, is the later wheel's, as pip does.
    assert (site / "ns/__init__.py").is_file()
    modes = {
        str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]
    }
    assert modes["opt/venv/bin/tool"] == 0o755 and modes["opt/venv/lib"] == 0o755
    assert modes["opt/venv/lib/python3.11/site-packages/ns/a.py"] == 0o644
    assert {p.stat().st_mtime for p in root.rglob("*")} == {1}


def test_bytecode_a_wheel_ships_is_not_installed(tmp_path: Path) -> None:
    """numpy 2.1.3 ships distutils/__pycache__/*.pyc: normalisation calls that noise and drops it
    from a layer the engine wrote, so the layer reprobuild writes must not hold it either."""
    shipped = {
        "pkg/__init__.py": "",
        "pkg/__pycache__/__init__.cpython-311.pyc": "x",
        "pkg/old.pyc": "x",
        "pkg/keep.pyo": "x",
    }
    path = wheel(tmp_path, "pkg", shipped)
    root = tmp_path / "tree"
    wheelinstall.install_layer([path], root, venv="/opt/venv", python="3.11", epoch=1)
    site = root / "opt/venv/lib/python3.11/site-packages/pkg"
    assert sorted(p.name for p in site.iterdir()) == ["__init__.py", "keep.pyo"]
    names = [entry.info.name for entry in pylayer.tree_entries(root)]
    assert not [name for name in names if normalise.is_noise(name)]


def test_the_tree_does_not_depend_on_the_umask(tmp_path: Path) -> None:
    one, other = install(tmp_path, 0o022), install(tmp_path, 0o077)
    assert _tar(one) == _tar(other)


def _tar(root: Path) -> bytes:
    entries = pylayer.tree_entries(root)
    sink = pylayer._Sink()
    data = b"".join(pylayer.write(entries, sink))
    assert len(data) == pylayer.archive_size(entries) == sink.size
    assert f"sha256:{sink.digest.hexdigest()}" == f"sha256:{hashlib.sha256(data).hexdigest()}"
    return data


def test_entries_follow_the_engines_walk_not_a_sort_of_whole_paths(tmp_path: Path) -> None:
    """The engine's overlay export walks each folder's names in order, the folder before its
    contents: a/x comes before a-c and a.b (a sort of whole paths would put it last)."""
    for relative in ("a/x", "a-c", "a.b/y", "A"):
        path = tmp_path / "root" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("1")
    names = [entry.info.name for entry in pylayer.tree_entries(tmp_path / "root")]
    assert names == ["A", "a", "a/x", "a-c", "a.b", "a.b/y"]


def test_the_written_layer_is_normalisations_rewrite_of_the_engines_tar(tmp_path: Path) -> None:
    """The engine writes a copied tree as a ustar archive with owner names and the type in the
    mode; normalisation's rewrite of that gives the bytes reprobuild writes for the tree."""
    root = install(tmp_path)
    entries = pylayer.tree_entries(root)
    engine_like = io.BytesIO()
    with tarfile.open(fileobj=engine_like, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for entry in entries:
            info = tarfile.TarInfo(entry.info.name)
            info.type, info.size, info.mtime = entry.info.type, entry.info.size, entry.info.mtime
            kind = stat.S_IFDIR if entry.info.isdir() else stat.S_IFREG
            info.mode, info.uname, info.gname = kind | entry.info.mode, "root", "root"
            if entry.path is None:
                archive.addfile(info)
            else:
                with entry.path.open("rb") as data:
                    archive.addfile(info, data)
    engine_like.seek(0)
    rewritten = io.BytesIO()
    scan = normalise.rewrite(engine_like, rewritten, epoch=10**9)
    assert rewritten.getvalue() == _tar(root)
    assert scan.diff_id == f"sha256:{hashlib.sha256(_tar(root)).hexdigest()}"


def test_a_layers_key_names_its_wheels_and_what_decides_its_bytes() -> None:
    from tests.unit.render.test_render import CASES, LOCK_DIGEST

    build_plan = plan.plan(CASES["gpu-default"], LOCK_DIGEST)
    keys = {layer.stage: pylayer.layer_key(build_plan, layer) for layer in build_plan.layers}
    assert sorted(keys) == ["closure", "cuda", "torch"] and len(set(keys.values())) == 3
    closure = build_plan.layers[-1]
    fewer = replace(closure, packages=closure.packages[:-1])
    assert pylayer.layer_key(build_plan, fewer) != keys["closure"]
    older = replace(build_plan, interpreter="python3.10")
    assert pylayer.layer_key(older, build_plan.layers[1]) != keys["torch"]
    relocked = replace(build_plan, epoch=build_plan.epoch + 86400, labels=())  # a later lock
    assert pylayer.layer_key(relocked, build_plan.layers[1]) == keys["torch"]


def test_the_install_plan_names_each_layers_wheels_with_their_hashes() -> None:
    from tests.unit.render.test_render import CASES, LOCK_DIGEST

    build_plan = plan.plan(CASES["gpu-default"], LOCK_DIGEST)
    document = json.loads(plan.install_plan_json(build_plan))
    assert document["venv"] == "/opt/venv" and document["epoch"] == plan.LAYER_EPOCH
    assert document["output"] == "/opt/reprobuild/layers"
    torch = next(layer for layer in document["layers"] if layer["name"] == "torch")
    assert [wheel["file"] for wheel in torch["wheels"]] == [
        "torch-2.5.1-py3-none-any.whl",
        "triton-3.1.0-py3-none-any.whl",
    ]


def test_the_install_stage_refuses_a_wheel_that_is_not_the_locks(tmp_path: Path) -> None:
    path = wheel(tmp_path, "pkg", {"pkg/__init__.py": ""})
    with pytest.raises(SystemExit) as refused:
        wheelinstall.verified(path, "0" * 64)
    assert str(refused.value) == (
        f"pkg-1.0-py3-none-any.whl does not match the lock's sha256 ({'0' * 64}): fetch the "
        "wheels again with `reprobuild fetch`."
    )
    assert wheelinstall.verified(path, hashlib.sha256(path.read_bytes()).hexdigest()) == path


def test_a_copy_of_a_python_layer_is_named_by_its_diff_id() -> None:
    copy = "/bin/sh -eu -c #(nop) COPY --chown=0:0dir:" + "a" * 64 + " in / "
    steps = [
        normalise.Step("/bin/sh -c #(nop)  ENV A=1", "", adds_layer=False),
        normalise.Step(copy, "", adds_layer=True),
        normalise.Step("/bin/sh -c #(nop) COPY dir:" + "b" * 64 + " in / ", "", adds_layer=True),
    ]
    named = image._named_layer_copies(steps, ["sha256:" + "1" * 64, "sha256:" + "2" * 64])
    assert [step.created_by for step in named] == [
        "/bin/sh -c #(nop)  ENV A=1",
        "/bin/sh -c #(nop) COPY --chown=0:0 layer:sha256:" + "1" * 64 + " in / ",
        steps[2].created_by,
    ]


def test_a_wheel_damaged_since_it_was_verified_is_fetched_again_before_it_is_installed(
    tmp_path: Path,
) -> None:
    """The wheel cache trusts a wheel whose size, mtime and inode are unchanged; a flipped bit
    changes none of them. The layer hashes each wheel before installing it: a damaged one is
    fetched again, and one that stays damaged is refused."""
    from builder.errors import HashMismatch
    from builder.lock.model import LockedPackage
    from tests.unit.render.test_render import CASES, LOCK_DIGEST

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    good = wheel(tmp_path, "pkg", {"pkg/__init__.py": "VALUE = 1\n"}).read_bytes()
    path = wheels / "pkg-1.0-py3-none-any.whl"
    path.write_bytes(good[:40] + bytes([good[40] ^ 1]) + good[41:])
    digest = hashlib.sha256(good).hexdigest()
    package = LockedPackage("pkg", "1.0", f"https://x/{path.name}", digest)
    layer = plan.PythonLayer("The package", "pkg", (package,))
    build_plan = plan.plan(CASES["gpu-default"], LOCK_DIGEST)
    fetched: list[str] = []

    def refetch(again: LockedPackage) -> None:
        fetched.append(again.filename)
        path.write_bytes(good)

    made = pylayer.make(build_plan, layer, pylayer.Wheels(wheels, refetch), tmp_path)
    assert fetched == [path.name]
    site = made.tree / "opt/venv/lib/python3.11/site-packages"
    assert (site / "pkg/__init__.py").read_text() == "VALUE = 1\n"
    path.write_bytes(good[:-1])
    with pytest.raises(HashMismatch, match="still does not match the lock's sha256"):
        pylayer.make(build_plan, layer, pylayer.Wheels(wheels, lambda _: None), tmp_path)
