"""Errors that reach the user.

Every stage raises a subclass of `ReprobuildError` whose message names the cause and the fix.
The CLI prints the message (no traceback) and exits with the class's exit code.
"""

from __future__ import annotations


class ReprobuildError(Exception):
    """A failure the user can act on; the message says how."""

    exit_code = 1


class SpecError(ReprobuildError):
    """The project spec is malformed; one paragraph per problem."""

    exit_code = 2

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        listed = "\n".join(f"  - {problem}" for problem in problems)
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"{source}: {len(problems)} {noun} in the spec:\n{listed}")


class ResolutionError(ReprobuildError):
    """No torch build satisfies the spec and the target."""

    exit_code = 3


class KnowledgeError(ReprobuildError):
    """The knowledge base is missing, unreadable or inconsistent."""


class HostError(ReprobuildError):
    """The host could not be read (no driver, no GPU) when the spec needs it."""


class IndexUnavailable(ReprobuildError):
    """A package index did not answer."""


def tail(text: str, lines: int = 8) -> str:
    """The last `lines` lines of a program's output, for an error message."""
    return "\n".join(text.strip().splitlines()[-lines:])
