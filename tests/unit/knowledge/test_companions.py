"""companions.json: the shipped pairs, their queries, and their refresh from a real PEP 503 index
served over HTTP on 127.0.0.1 (real HTML and metadata text)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from packaging.version import Version

from builder import knowledge
from builder.engine.http import Getter
from builder.errors import KnowledgeError
from builder.knowledge import AMD64, ARM64, pairing, refresh
from tests.conftest import LocalIndex

KB = knowledge.load()


def test_every_torch_release_has_its_triton_pair_and_every_row_is_sourced() -> None:
    pinned = {row.torch for row in KB.companions if row.package == "triton"}
    assert pinned == set(KB.releases_of_torch(AMD64))
    for row in KB.companions:
        assert row.source.startswith("https://pypi.org/simple/") and row.read, row


def test_queries() -> None:
    vision = KB.companion_for("TorchVision", Version("2.5.1"))
    assert vision is not None and (vision.version, vision.pinned_by) == ("0.20.1", "torchvision")
    triton = KB.companion_for("triton", Version("2.5.1"))
    assert triton is not None and triton.version == "3.1.0"
    assert triton.pythons == ("3.9", "3.10", "3.11", "3.12") and not triton.applies_to("3.13")
    assert KB.built_for("torchvision", Version("0.19.0")) == [Version("2.4.0")]
    assert KB.built_for("triton", Version("3.0.0")) == [Version("2.4.0"), Version("2.4.1")]
    assert KB.built_for("triton", Version("3.8.2")) == [Version("2.14.0"), Version("2.14.1")]
    assert KB.companion_packages() == ("torchaudio", "torchvision", "triton")


def test_a_malformed_companion_row_is_refused(tmp_path: Path) -> None:
    for name in knowledge.DATA_FILES:
        shutil.copyfile(knowledge.PACKAGED_DATA / name, tmp_path / name)
    (tmp_path / "companions.json").write_text('{"companions": [{"package": "x"}], "schema": 1}')
    with pytest.raises(KnowledgeError, match=r"is malformed \(KeyError: 'pythons'\)"):
        knowledge.load(tmp_path)


def test_a_row_read_before_platforms_were_read_keeps_torch_s_pin_to_amd64(tmp_path: Path) -> None:
    for name in knowledge.DATA_FILES:
        shutil.copyfile(knowledge.PACKAGED_DATA / name, tmp_path / name)
    rows = json.loads((tmp_path / "companions.json").read_text())["companions"]
    for row in rows:
        del row["platforms"]
    (tmp_path / "companions.json").write_text(json.dumps({"companions": rows, "schema": 1}))
    old = knowledge.load(tmp_path)
    triton = old.companion_for("triton", Version("2.12.0"))
    vision = old.companion_for("torchvision", Version("2.12.0"))
    assert triton is not None and triton.platforms == (AMD64,)
    assert vision is not None and vision.platforms is None
    rows[0]["platforms"] = "linux/amd64"  # a string, not a list
    (tmp_path / "companions.json").write_text(json.dumps({"companions": rows, "schema": 1}))
    with pytest.raises(
        KnowledgeError, match=r"\(TypeError: platforms is 'linux/amd64', not a list\)"
    ):
        knowledge.load(tmp_path)
    rows[0]["platforms"] = ["linux/riscv64"]
    (tmp_path / "companions.json").write_text(json.dumps({"companions": rows, "schema": 1}))
    with pytest.raises(KnowledgeError, match=r"platform 'linux/riscv64' is not one of"):
        knowledge.load(tmp_path)


TORCH_METADATA = (
    "Metadata-Version: 2.1\nName: torch\nVersion: 2.5.1\nRequires-Dist: filelock\n"
    'Requires-Dist: triton==3.1.0; platform_system == "Linux" and platform_machine == "x86_64" '
    'and python_version < "3.13"\n'
)


def test_torch_pinned_rows_follow_the_marker() -> None:
    rows = pairing.torch_pinned_rows(
        TORCH_METADATA,
        torch=Version("2.5.1"),
        pythons=["3.11", "3.12", "3.13"],
        index="pypi",
        source="s",
        today="2026-12-01",
    )
    assert rows == [
        {
            "package": "triton",
            "version": "3.1.0",
            "torch": "2.5.1",
            "pinned_by": "torch",
            "pythons": ["3.11", "3.12"],
            "platforms": ["linux/amd64"],
            "index": "pypi",
            "source": "s",
            "read": "2026-12-01",
        }
    ]


def test_a_compatible_release_pin_becomes_a_wildcard() -> None:
    metadata = 'Requires-Dist: triton~=3.8.0; platform_system == "Linux"\n'
    rows = pairing.torch_pinned_rows(
        metadata, torch=Version("2.14.0"), pythons=["3.12"], index="pypi", source="s", today="d"
    )
    assert [(row["version"], row["pythons"], row["platforms"]) for row in rows] == [
        ("3.8.*", None, None)
    ]


def test_torch_s_triton_pin_applies_on_the_platforms_its_marker_names() -> None:
    # Up to torch 2.10 the pin is marked x86_64 (triton has no aarch64 wheel before 3.5.0).
    old = KB.companion_for("triton", Version("2.10.0"))
    new = KB.companion_for("triton", Version("2.11.0"))
    assert old is not None and new is not None
    assert old.platforms == (AMD64,) and not old.applies_on(ARM64)
    assert new.platforms is None and new.applies_on(ARM64)
    vision = KB.companion_for("torchvision", Version("2.5.1"))
    assert vision is not None and vision.platforms is None


def serve_vision(index: LocalIndex, releases: dict[str, str]) -> None:
    """A torchvision page with one Linux wheel (and its PEP 658 metadata) per release."""
    folder = index.root / "pypi" / "torchvision"
    folder.mkdir(parents=True, exist_ok=True)
    links = []
    for version, requires in releases.items():
        wheel = f"torchvision-{version}-cp311-cp311-manylinux1_x86_64.whl"
        metadata = f"Metadata-Version: 2.1\nName: torchvision\nVersion: {version}\n{requires}"
        (folder / f"{wheel}.metadata").write_text(metadata)
        (folder / wheel).write_bytes(b"")
        links.append(f'<a href="{wheel}#sha256=0" data-dist-info-metadata="true">{wheel}</a>')
        mac = f"torchvision-{version}-cp311-cp311-macosx_11_0_arm64.whl"
        links.append(f'<a href="{mac}#sha256=0">{mac}</a>')
    (folder / "index.html").write_text(f"<html><body>{''.join(links)}</body></html>")


def test_release_rows_from_a_simple_index(local_index: LocalIndex) -> None:
    serve_vision(
        local_index,
        {
            "0.20.1": "Requires-Dist: torch (==2.5.1)\nRequires-Dist: numpy\n",
            "0.29.1": "Requires-Dist: torch (>=2.14.0)\n",  # no exact pair: left out
            "0.14.1": "Requires-Dist: torch (==1.13.1)\n",  # older than 2.0: the end
            "0.13.0": "Requires-Dist: torch (==1.12.0)\n",
        },
    )
    with Getter(attempts=1) as getter:
        rows = refresh.companion_rows(
            getter, f"{local_index.url}/pypi", "torchvision", None, "2026-12-01"
        )
        missing = refresh.companion_rows(
            getter, f"{local_index.url}/pypi", "torchaudio", None, "2026-12-01"
        )
    assert rows == [
        {
            "package": "torchvision",
            "version": "0.20.1",
            "torch": "2.5.1",
            "pinned_by": "torchvision",
            "pythons": None,
            "platforms": None,
            "index": "pypi",
            "source": f"{local_index.url}/pypi/torchvision/ (PEP 503); Requires-Dist of "
            "torchvision-0.20.1-cp311-cp311-manylinux1_x86_64.whl",
            "read": "2026-12-01",
        }
    ]
    assert missing == []


def row(
    version: str, torch: str, index: str = "pypi", read: str = "2026-01-01"
) -> dict[str, object]:
    return {
        "package": "torchvision",
        "version": version,
        "torch": torch,
        "pinned_by": "torchvision",
        "pythons": None,
        "index": index,
        "source": "s",
        "read": read,
    }


def test_merge_keeps_dates_unreachable_rows_and_prefers_pypi() -> None:
    existing = [row("0.20.1", "2.5.1"), row("0.19.1", "2.4.1", index="https://x/cu118")]
    fetched = [
        row("0.20.1", "2.5.1", read="2026-12-01"),
        row("0.21.0", "2.6.0", index="https://x/cu124", read="2026-12-01"),
        row("0.21.0", "2.6.0", read="2026-12-01"),
    ]
    merged, changes = pairing.merge(existing, fetched, {"pypi", "https://x/cu124"})
    assert [(r["version"], r["index"], r["read"]) for r in merged] == [
        ("0.19.1", "https://x/cu118", "2026-01-01"),
        ("0.20.1", "pypi", "2026-01-01"),
        ("0.21.0", "pypi", "2026-12-01"),
    ]
    assert (changes.added, changes.unchanged, changes.kept) == (
        ["torchvision 0.21.0 (torch 2.6.0)"],
        ["torchvision 0.20.1 (torch 2.5.1)"],
        ["torchvision 0.19.1 (torch 2.4.1)"],
    )
    assert pairing.dump(merged) == pairing.dump(list(reversed(merged)))
    assert json.loads(pairing.dump(merged))["schema"] == 1


@pytest.mark.network
def test_refresh_from_pypi_reproduces_the_shipped_pairs() -> None:
    shipped = (knowledge.PACKAGED_DATA / "companions.json").read_text()
    builds = json.loads((knowledge.PACKAGED_DATA / "torch.json").read_text())["builds"]
    indexes = refresh.sources(refresh.PYPI_SIMPLE, "http://127.0.0.1:9/whl", [])
    refreshed = refresh.refresh(
        Getter(), builds, indexes, "2099-01-01", json.loads(shipped)["companions"]
    )
    assert refreshed.report.companions.added == []
    assert refreshed.report.companions.changed == []
    assert pairing.dump(refreshed.companions) == shipped


def older_folder(tmp_path: Path) -> Path:
    """A knowledge folder as `knowledge refresh --output` wrote it before companions.json."""
    folder = tmp_path / "kb"
    folder.mkdir()
    for name in ("torch.json", "cuda.json", "gpus.json", "bases.json"):
        shutil.copyfile(knowledge.PACKAGED_DATA / name, folder / name)
    return folder


def test_a_folder_without_companions_loads_with_no_pairs(tmp_path: Path) -> None:
    folder = older_folder(tmp_path)
    loaded = knowledge.load(folder)
    assert loaded.companions == () and loaded.companion_packages() == ()
    digest = hashlib.sha256()
    for name in ("torch.json", "cuda.json", "gpus.json", "bases.json"):
        digest.update(name.encode() + b"\0" + (folder / name).read_bytes() + b"\0")
    newest = max(
        row["read"]
        for name in ("torch.json", "cuda.json", "gpus.json", "bases.json")
        for rows in json.loads((folder / name).read_text()).values()
        if isinstance(rows, list)
        for row in rows
    )
    assert loaded.version == f"{newest}+{digest.hexdigest()[:12]}"


def test_refresh_writes_the_missing_companions_in_place(local_index: LocalIndex) -> None:
    folder = older_folder(local_index.root.parent)
    local_index.add_wheel(
        "pypi",
        "torch-2.5.1-cp311-cp311-manylinux1_x86_64.whl",
        [
            "nvidia-cuda-runtime-cu12==12.4.127",
            'triton==3.1.0; platform_system == "Linux" and python_version < "3.13"',
        ],
        None,
    )
    serve_vision(local_index, {"0.20.1": "Requires-Dist: torch (==2.5.1)\n"})
    indexes = [refresh.IndexSource(f"{local_index.url}/pypi", None)]
    written, report = refresh.refresh_knowledge(knowledge.load(folder), indexes, None)
    assert written == folder / "torch.json"
    assert report.companions.added == [
        "triton 3.1.0 (torch 2.5.1)",
        "torchvision 0.20.1 (torch 2.5.1)",
    ]
    pairs = knowledge.load(folder).companions
    assert [(row.package, row.version, str(row.torch)) for row in pairs] == [
        ("torchvision", "0.20.1", "2.5.1"),
        ("triton", "3.1.0", "2.5.1"),
    ]
