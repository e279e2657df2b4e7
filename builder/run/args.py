"""The `run` verb's options, as both parsers know them: the entry point's own (launch.py, for a
plain `run`) and click's (cli/run.py). A unit test holds the two to the same names and results.
Standard library only: the entry point reads this on `run`'s way to the container's start.
"""

from __future__ import annotations

GLOBAL_OPTIONS = {"-C": "project", "--project": "project", "--knowledge": "knowledge"}
RUN_OPTIONS = {"--gpus": "gpus", "--image": "image", "--outputs": "outputs"}
FOLDER_OPTIONS = ("project", "knowledge", "outputs")  # click: a folder, or nothing there yet


def gpus_problem(value: str) -> str | None:
    """Why a --gpus value is refused, or None: all, or a positive number of GPUs."""
    if value == "all" or (value.isascii() and value.isdigit() and int(value) > 0):
        return None
    return f"{value!r}: give all, or a number of GPUs such as 1."
