"""The `reprobuild` entry point: a plain `run` goes straight to its stage, the rest to click.

Importing click takes about 27 ms here, a tenth of a short container's whole `docker run`, and
`reprobuild run` is held to 1.1 times that. So a `run` whose arguments are plain is parsed here:
the global -C/--project and --knowledge, then run's own --gpus, --image and --outputs (as
`--name value` or `--name=value`), then `--` and the command. Anything else (help, a typo, a
value click would refuse, no `--`) goes to the click CLI, which parses and reports as it does
for every command. A unit test holds this parser to click's results.
"""

from __future__ import annotations

import os
import sys

from builder import layout
from builder.errors import INTERRUPTED, ReprobuildError
from builder.run.args import FOLDER_OPTIONS, GLOBAL_OPTIONS, RUN_OPTIONS, gpus_problem

TYPE_CHECKING = False  # typing's own flag, without importing typing on `run`'s way to the start
if TYPE_CHECKING:
    from builder.run.run import RunPlan


def main() -> None:
    """Entry point of the `reprobuild` command and of `python -m builder`."""
    run_plan = plain_run(sys.argv[1:])
    if run_plan is None:
        from builder.cli.main import run_cli

        run_cli()
        return
    from builder.cli.run_report import run_and_report

    try:
        code = run_and_report(run_plan)
    except ReprobuildError as error:
        sys.stderr.write(f"error: {error}\n")
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(INTERRUPTED)
    # The record is written and synced; the interpreter's teardown of the modules the run
    # loaded would add about 8 ms to every run, and nothing is left to clean up (the thread
    # that read the host's facts has been joined).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def plain_run(arguments: list[str]) -> RunPlan | None:
    """The run a plain `[global options] run [run options] -- COMMAND...` asks for; None for
    any other command line."""
    values: dict[str, str] = {}
    rest = _options(arguments, GLOBAL_OPTIONS, values)
    if rest is None or rest[:1] != ["run"]:
        return None
    rest = _options(rest[1:], RUN_OPTIONS, values)
    if rest is None or rest[:1] != ["--"] or len(rest) < 2 or rest[1].startswith("-"):
        return None
    if not _acceptable(values):
        return None
    from builder.run import run

    return run.RunPlan(
        values.get("project", "."),
        values.get("image"),
        rest[1:],
        outputs=values.get("outputs"),
        gpus=values.get("gpus"),
    )


def _options(
    arguments: list[str], known: dict[str, str], values: dict[str, str]
) -> list[str] | None:
    """Take `known` options off the front into `values`; what follows them, or None when an
    option is not a plain one of `known`."""
    index = 0
    while index < len(arguments) and arguments[index].startswith("-") and arguments[index] != "--":
        name, equals, value = arguments[index].partition("=")
        if name not in known or (equals and not name.startswith("--")):
            return None
        if not equals:
            index += 1
            if index == len(arguments):
                return None
            value = arguments[index]
        if not value:
            return None
        values[known[name]] = value
        index += 1
    return arguments[index:]


def _acceptable(values: dict[str, str]) -> bool:
    """Values click would take as they are: a valid --gpus, folders that are not files and,
    where they exist, can be read."""
    if "gpus" in values and gpus_problem(values["gpus"]) is not None:
        return False
    folders = [values[name] for name in FOLDER_OPTIONS if name in values]
    folders.append(os.environ.get(layout.KNOWLEDGE_VARIABLE, ""))  # click reads --knowledge from it
    return not any(_refused_folder(folder) for folder in folders if folder)


def _refused_folder(folder: str) -> bool:
    return os.path.isfile(folder) or (os.path.exists(folder) and not os.access(folder, os.R_OK))


if __name__ == "__main__":
    main()
