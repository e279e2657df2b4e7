"""The `run` verb's options, as both parsers know them: the entry point's own (launch.py, for a
plain `run`) and click's (cli/run.py). A unit test holds the two to the same names and results.
Standard library only: the entry point reads this on `run`'s way to the container's start.
"""

from __future__ import annotations

import os

GLOBAL_OPTIONS = {"-C": "project", "--project": "project", "--knowledge": "knowledge"}
RUN_OPTIONS = {"--gpus": "gpus", "--image": "image", "--outputs": "outputs"}
# Parsed by click only: a run given any of them goes the click way, where their values are read
# and checked (files, digests, sizes), which costs far more than click's import.
CLICK_RUN_OPTIONS = ("--data", "--env", "-e", "--env-file", "--secret", "--shm-size", "--trace")
REPORT_FOLDER = "report"  # in a run's folder, mounted at layout.REPORT for the image's hook
FOLDER_OPTIONS = ("project", "knowledge", "outputs")  # click: a folder, or nothing there yet
# Every command's variables, under the user's: a home any user can write (the command may run as
# a user the image has no home for), and Python's output as it is written, not when a buffer fills.
DEFAULT_ENV = (("HOME", "/tmp"), ("PYTHONUNBUFFERED", "1"))


def gpus_problem(value: str) -> str | None:
    """Why a --gpus value is refused, or None: all, or a positive number of GPUs."""
    if value == "all" or (value.isascii() and value.isdigit() and int(value) > 0):
        return None
    return f"{value!r}: give all, or a number of GPUs such as 1."


MIN_SHM = 2**20


def default_shm() -> int:
    """/dev/shm's size when --shm-size is not given: half the host's memory, as the host's own
    /dev/shm is sized. The engine's 64 MB default is what kills DataLoader workers with a bus
    error once a few large batches are in flight; tmpfs takes memory only as it is written, so
    a large limit costs nothing until it is used."""
    pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    return max(MIN_SHM, pages * page_size // 2)
