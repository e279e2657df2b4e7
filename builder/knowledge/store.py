"""Write a refreshed knowledge base: the regenerated files atomically, the others copied
alongside."""

from __future__ import annotations

import shutil
from pathlib import Path

from builder.errors import KnowledgeError
from builder.files import write_atomic
from builder.knowledge import DATA_FILES


def write(source: Path, target: Path, texts: dict[str, str]) -> Path:
    """Write the regenerated files (name -> text) into `target`; copy the other data files there
    if it is a new place. The path of torch.json in `target`."""
    try:
        target.mkdir(parents=True, exist_ok=True)
        for name in DATA_FILES:
            if name not in texts and source.resolve() != target.resolve():
                shutil.copyfile(source / name, target / name)
        for name, text in texts.items():
            write_atomic(target / name, text)
        destination = target / "torch.json"
    except OSError as error:
        raise KnowledgeError(
            f"cannot write the knowledge base to {target}: {error.strerror}. Choose a writable "
            "directory with --output and use it with --knowledge (or $REPROBUILD_KNOWLEDGE)."
        ) from None
    return destination
