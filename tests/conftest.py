"""Shared fixtures: a real HTTP package index on 127.0.0.1, the gpu-marker skip, and the engine
every test reaches: the one scripts/infra started for the tests, never the user's."""

from __future__ import annotations

import os
import threading
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests import bystanders
from tests.infra import ENGINE

# Every test, and every command a test starts, reaches the tests' own engine: a DOCKER_HOST set
# for the user's work, or the default socket, is never used.
os.environ["DOCKER_HOST"] = ENGINE


def _nvml_available() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
    except Exception:
        return False
    return True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    isolation = [item for item in items if item.path.name == bystanders.ISOLATION_TEST]
    items[:] = [item for item in items if item not in isolation] + isolation
    if _nvml_available():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU and driver (NVML not found on this host)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def pytest_collection_finish(session: pytest.Session) -> None:
    if any(item.path.name == bystanders.ISOLATION_TEST for item in session.items):
        session.config.stash[bystanders.KEY] = bystanders.set_up()


def pytest_unconfigure(config: pytest.Config) -> None:
    noted = config.stash.get(bystanders.KEY, None)
    if noted is not None:
        bystanders.tear_down(noted)


class _RangeHandler(SimpleHTTPRequestHandler):
    """Static files with HEAD and single byte ranges, as PyPI's file host serves them."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        range_header = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if not range_header or not path.is_file():
            super().do_GET()
            return
        data = path.read_bytes()
        start_text, end_text = range_header.removeprefix("bytes=").split("-")
        start, end = int(start_text), min(int(end_text), len(data) - 1)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        self.wfile.write(data[start : end + 1])


class LocalIndex:
    """A PEP 503 index under a temp dir, served over real HTTP on 127.0.0.1."""

    def __init__(self, root: Path, url: str) -> None:
        self.root = root
        self.url = url

    def add_wheel(
        self,
        index: str,
        filename: str,
        requires: list[str],
        arch_flags: str | None,
        metadata_file: bool = True,
    ) -> None:
        folder = self.root / index / "torch"
        folder.mkdir(parents=True, exist_ok=True)
        version = filename.split("-")[1]
        metadata = f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n" + "".join(
            f"Requires-Dist: {line}\n" for line in requires
        )
        wheel = folder / filename
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(f"torch-{version}.dist-info/METADATA", metadata)
            if arch_flags is not None:
                library = b"\x00junk\x00" + arch_flags.encode() + b"\x00more\x00"
                archive.writestr("torch/lib/libtorch_python.so", library)
        if metadata_file:
            (folder / f"{wheel.name}.metadata").write_text(metadata)
        links = "".join(
            f'<a href="{quote(path.name)}#sha256=0">{path.name}</a>\n'
            for path in sorted(folder.glob("*.whl"))
        )
        (folder / "index.html").write_text(f"<html><body>{links}</body></html>")


@pytest.fixture
def local_index(tmp_path: Path) -> Iterator[LocalIndex]:
    root = tmp_path / "index"
    root.mkdir()

    def handler(*args: Any) -> _RangeHandler:
        return _RangeHandler(*args, directory=str(root))

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LocalIndex(root, f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
