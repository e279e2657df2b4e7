"""`reprobuild build --format sif`: an Apptainer image (SIF) of the pushed build.

The SIF is built from the context's `reprobuild.def`, which after a push bootstraps from the
pushed image by digest, so the SIF holds the bits the Docker image holds, with the same
environment, labels, run script and smoke `%test`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from builder import tarstream
from builder.engine.sdk import TAIL_LINES
from builder.errors import SifError

NO_APPTAINER = (
    "--format sif needs apptainer, which is not installed here. Build and push the Docker image "
    "here (`reprobuild build --push REF`), then on the HPC site run `apptainer build IMAGE.sif "
    "reprobuild.def` with the definition that push wrote (.reprobuild/context/reprobuild.def)."
)
NEEDS_PUSH = (
    "--format sif builds the SIF from the pushed image, so that it holds exactly the bits that "
    "were built and smoke-tested: add --push REF (a registry the SIF build can pull from)."
)


@dataclass(frozen=True)
class SifImage:
    path: Path
    sha256: str
    size: int


def check_ready(push_to: str | None) -> None:
    """Before any build work: the SIF needs apptainer and a pushed image."""
    if shutil.which("apptainer") is None:
        raise SifError(NO_APPTAINER)
    if push_to is None:
        raise SifError(NEEDS_PUSH)


def output_path(project: Path, image: str) -> Path:
    """`lab/train:0123456789ab` -> PROJECT/lab-train-0123456789ab.sif"""
    return project / (re.sub(r"[^A-Za-z0-9._-]+", "-", image).strip("-") + ".sif")


def build_for(project: Path, image: str, on_line: Callable[[str], None]) -> SifImage:
    """The SIF of the project's pushed build, from the definition `build --push` wrote."""
    from builder.render import context, templates

    definition = project / context.DEFAULT_OUTPUT / templates.DEFINITION
    on_line(f"building the SIF from {definition} with apptainer")
    return build(definition, output_path(project, image), on_line)


def build(definition: Path, output: Path, on_line: Callable[[str], None]) -> SifImage:
    """`apptainer build --force OUTPUT DEFINITION`; each output line goes to on_line."""
    staged = output.with_name(f".{output.name}.partial")
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    argv = ["apptainer", "build", "--force", str(staged), str(definition)]
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        assert process.stdout is not None
        try:
            for line in process.stdout:
                tail.append(line.rstrip())
                on_line(line.rstrip())
        except BaseException:
            process.kill()
            staged.unlink(missing_ok=True)
            raise
    if process.returncode != 0:
        staged.unlink(missing_ok=True)
        raise SifError(
            f"apptainer build exited {process.returncode}:\n" + "\n".join(tail) + "\n"
            "Check that this machine can pull the pushed image (registry reachable, "
            "`apptainer remote login` for a private one) and run `reprobuild build --format sif` "
            "again."
        )
    staged.replace(output)
    return SifImage(output, tarstream.sha256_file(output), output.stat().st_size)
