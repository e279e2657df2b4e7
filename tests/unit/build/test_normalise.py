"""Normalisation's pure parts: the config written from the engine's view of a build, the cache of
what was read before, and the context stream. The engine-side behaviour is in
tests/integration/test_build.py; the cut of the Dockerfile into its stages in test_render.py."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from builder import files, tarstream
from builder.build import image, imagecache, normalise
from builder.errors import NormaliseError

PARENT = {
    "architecture": "amd64",
    "config": {"Env": ["PATH=/usr/bin"]},
    "created": "2026-11-01T00:00:00Z",
    "history": [{"created": "2026-11-01T00:00:00Z", "created_by": "mmdebstrap ..."}],
    "os": "linux",
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "1" * 64]},
}
INSPECTED = {
    "Architecture": "amd64",
    "Os": "linux",
    "Author": "",
    "Variant": "",
    "Config": {"Hostname": "", "User": "1000:1000", "Image": "sha256:" + "9" * 64, "Cmd": None},
}


def test_the_config_is_written_from_the_engines_view_of_the_build() -> None:
    steps = [
        normalise.Step("/bin/sh -c #(nop)  ENV A=1", "", adds_layer=False),
        normalise.Step("/bin/sh -c echo x > /x", "", adds_layer=True),
        normalise.Step("/bin/sh -c true", "a comment", adds_layer=False),
    ]
    layers = ["sha256:" + "1" * 64, "sha256:" + "2" * 64]
    written = normalise.config(PARENT, INSPECTED, steps, 1795305600, layers)
    assert written == (
        b'{"architecture":"amd64","config":{"Cmd":null,"User":"1000:1000"},'
        b'"created":"2026-11-22T00:00:00Z","history":['
        b'{"created":"2026-11-01T00:00:00Z","created_by":"mmdebstrap ..."},'
        b'{"created":"2026-11-22T00:00:00Z","created_by":"/bin/sh -c #(nop)  ENV A=1",'
        b'"empty_layer":true},'
        b'{"created":"2026-11-22T00:00:00Z","created_by":"/bin/sh -c echo x > /x"},'
        b'{"comment":"a comment","created":"2026-11-22T00:00:00Z",'
        b'"created_by":"/bin/sh -c true","empty_layer":true}],'
        b'"os":"linux","rootfs":{"diff_ids":["sha256:'
        + b"1" * 64
        + b'","sha256:'
        + b"2" * 64
        + b'"],"type":"layers"}}'
    )


def test_platform_fields_the_engine_shows_are_kept() -> None:
    inspected = {**INSPECTED, "Architecture": "arm64", "Variant": "v8", "Author": "lab"}
    document = json.loads(normalise.config(PARENT, inspected, [], 0, []))
    assert (document["architecture"], document["variant"], document["author"]) == (
        "arm64",
        "v8",
        "lab",
    )
    assert "os.version" not in document and "os.features" not in document


def test_the_image_cache_trusts_only_what_hashes_to_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    raw = b'{"rootfs":{}}'
    image_id = f"sha256:{hashlib.sha256(raw).hexdigest()}"
    assert imagecache.config(image_id) is None
    imagecache.keep_config(raw)
    assert imagecache.config(image_id) == raw
    stored = files.cache_root() / "images" / "configs" / f"{image_id[7:]}.json"
    stored.write_bytes(b'{"rootfs":{"edited":1}}')
    assert imagecache.config(image_id) is None
    layer = "sha256:" + "3" * 64
    imagecache.mark_clean(layer, 100)
    assert imagecache.is_clean(layer, 100) and not imagecache.is_clean(layer, 99)


def test_the_context_stream_leaves_out_and_replaces(tmp_path: Path) -> None:
    (tmp_path / "reprobuild" / "wheels").mkdir(parents=True)
    (tmp_path / "reprobuild" / "wheels" / "big.whl").write_bytes(b"w" * 1000)
    (tmp_path / "reprobuild" / "image").mkdir()
    (tmp_path / "Dockerfile").write_text("FROM deps\n")
    stream = b"".join(
        tarstream.folder_stream(
            tmp_path,
            leave_out=frozenset({"reprobuild/wheels"}),
            replace={"Dockerfile": b"FROM lab/x:deps-1\n"},
        )
    )
    with tarfile.open(fileobj=io.BytesIO(stream)) as archive:
        assert archive.getnames() == ["Dockerfile", "reprobuild", "reprobuild/image"]
        dockerfile = archive.extractfile("Dockerfile")
        assert dockerfile is not None and dockerfile.read() == b"FROM lab/x:deps-1\n"


def test_noise_in_a_layer_copied_from_the_context_stops_the_build() -> None:
    scan = normalise.LayerScan("sha256:" + "4" * 64, 10, ["workspace/a.pyc: build-time noise"])
    image._refuse_noisy_copies([])
    with pytest.raises(NormaliseError) as caught:
        image._refuse_noisy_copies([scan])
    assert str(caught.value) == (
        "a layer copied from the build context holds build-time noise (workspace/a.pyc: "
        "build-time noise); the context is reprobuild's own and should never hold any. Remove "
        "the file from the project, or report it if it is one reprobuild wrote."
    )


def test_normaliser_rewrites_only_noise() -> None:
    assert normalise.is_noise("opt/venv/lib/python3.11/site-packages/x/__pycache__/a.pyc")
    assert normalise.is_noise("var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease")
    assert normalise.is_noise("var/cache/.wh.ldconfig") is False
    assert normalise.is_noise("var/cache/ldconfig/.wh.aux-cache")
    assert not normalise.is_noise("var/lib/apt/lists/lock")
    assert not normalise.is_noise("opt/venv/lib/python3.11/site-packages/torch/__init__.py")
