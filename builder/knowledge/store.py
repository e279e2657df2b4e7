"""Write a refreshed knowledge base: torch.json atomically, the other files copied alongside."""

from __future__ import annotations

import shutil
from pathlib import Path

from builder.errors import KnowledgeError
from builder.files import write_atomic
from builder.knowledge import DATA_FILES


def write(source: Path, target: Path, torch_json: str) -> Path:
    """Write torch.json into `target`; copy the other data files there if it is a new place."""
    try:
        target.mkdir(parents=True, exist_ok=True)
        for name in DATA_FILES:
            if name != "torch.json" and source.resolve() != target.resolve():
                shutil.copyfile(source / name, target / name)
        destination = target / "torch.json"
        write_atomic(destination, torch_json)
    except OSError as error:
        raise KnowledgeError(
            f"cannot write the knowledge base to {target}: {error.strerror}. Choose a writable "
            "directory with --output and use it with --knowledge (or $REPROBUILD_KNOWLEDGE)."
        ) from None
    return destination
