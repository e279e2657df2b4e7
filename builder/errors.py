"""Every error that reaches the user, and the exit codes the `reprobuild` command returns.

Every stage raises a subclass of `ReprobuildError` whose message names the cause and the fix.
The CLI prints the message (no traceback) and exits with the class's exit code, which is one of
`EXIT_CODES` (a unit test holds the classes, the CLI and the README's table to it). Kept to the
standard library: `reprobuild run` imports this module on its way to the container's start.
"""

from __future__ import annotations

# What each exit code of `reprobuild` means. `run` exits with its command's own code; `smoke`
# with its payload's (builder/smoke/runner.py defines the same four numbers, which a test checks).
EXIT_CODES = {
    0: "success (smoke: identical fingerprints and a canary that showed the check can fail)",
    1: "failure: an index, registry or engine that does not answer, a stale or hand-edited lock, "
    "an image that will not run on this host, a failed check (smoke: fingerprints differ; "
    "replay: the result differs)",
    2: "invalid spec or usage",
    3: "no compatible torch build (smoke: identical bits, but the canary showed no power)",
    4: "a precondition failed (smoke: GPU, driver, compiled architectures, locked versions; "
    "replay: the recorded data changed, the image is unavailable, a secret is not set; an image "
    "of another CPU on a machine with no qemu registered for it)",
    130: "interrupted (Ctrl-C)",
}
FAILURE, USAGE, NO_TORCH_BUILD, PRECONDITION, INTERRUPTED = 1, 2, 3, 4, 130


def tail(text: str, lines: int = 8) -> str:
    """The last `lines` lines of a program's output, for an error message."""
    return "\n".join(text.strip().splitlines()[-lines:])


class ReprobuildError(Exception):
    """A failure the user can act on; the message says how."""

    exit_code = FAILURE


# The spec, the knowledge base and resolution.


class SpecError(ReprobuildError):
    """The project spec is malformed; one paragraph per problem."""

    exit_code = USAGE

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        listed = "\n".join(f"  - {problem}" for problem in problems)
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"{source}: {len(problems)} {noun} in the spec:\n{listed}")


class InitError(ReprobuildError):
    """`init` cannot read a repository's dependency files, or would overwrite a spec."""

    exit_code = USAGE


class KnowledgeError(ReprobuildError):
    """The knowledge base is missing, unreadable or inconsistent."""


class QueryError(ReprobuildError):
    """A requirement given to `knowledge show` is not one."""

    exit_code = USAGE


class ResolutionError(ReprobuildError):
    """No torch build satisfies the spec and the target."""

    exit_code = NO_TORCH_BUILD


class HostError(ReprobuildError):
    """The host could not be read (no driver, no GPU) when the spec needs it."""


# The lock.


class IndexUnavailable(ReprobuildError):
    """A package index did not answer."""


class NotFound(IndexUnavailable):
    """The server answered 404: the resource does not exist (no retry helps)."""


class LockError(ReprobuildError):
    """An input could not be pinned; the message names the package or host and the fix."""


class PlatformNotLockable(LockError):
    """A lock for this host (target.host) would leave out the platform this host runs."""

    exit_code = USAGE


class LockExportError(ReprobuildError):
    """`lock --export FILE` names no format reprobuild writes: a usage error."""

    exit_code = USAGE


class LockFileError(ReprobuildError):
    """The lock file is missing, unreadable, edited by hand, or stale."""


class PlatformChoiceError(LockFileError):
    """A platform asked for that the lock pins no image of, or none asked for where a verb
    takes one and the lock pins several."""

    exit_code = USAGE


class RegistryError(ReprobuildError):
    """A registry did not answer, or has no such image."""


class RegistryUnreachable(RegistryError):
    """The registry did not answer at all (network, DNS, 5xx): offline fallbacks may apply."""


# Rendering and the wheelhouse.


class RenderError(ReprobuildError):
    """A template is missing or broken."""


class OutputFolderError(RenderError):
    """The folder given for the build context would replace something that is not one."""

    exit_code = USAGE


class HashMismatch(ReprobuildError):
    """A wheel's bytes do not match the sha256 the lock pinned."""


class FetchError(ReprobuildError):
    """A wheel could not be downloaded."""


# The engine and the build.


class EngineError(ReprobuildError):
    """The Docker engine is missing or refused an operation."""


class EmulationMissing(EngineError):
    """An image of another CPU's platform must run in the engine, and its machine has no qemu
    registered for it (an EngineError: where the engine is optional, its absence is too)."""

    exit_code = PRECONDITION


class CommandNotFound(EngineError):
    """The image has no such program; callers say which image would have it."""


class BuildFailed(EngineError):
    """A build step failed; the message names the step, its command and its last output."""


class MissingImage(EngineError):
    """An image named on the command line is not in the engine: a usage error."""

    exit_code = USAGE


class ApiError(Exception):
    """The engine answered a call with an error status; `message` is its explanation. Internal
    to the socket client, which turns it into an `EngineError` that names the fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class BootstrapError(ReprobuildError):
    """mmdebstrap is missing or failed."""


class NormaliseError(ReprobuildError):
    """The engine's export of a built image was not what the normaliser expects."""


class SifError(ReprobuildError):
    """apptainer is missing, or its build failed."""


class RecordError(ReprobuildError):
    """The build record is missing or unreadable."""


# Checking, publishing, writing.


class SmokeError(ReprobuildError):
    """The image could not run its smoke payload, or it gave no report."""


class PublishError(ReprobuildError):
    """The build cannot be published as it stands."""


class VerifyError(ReprobuildError):
    """What to verify could not be read."""


class VerifySubjectMissing(VerifyError):
    """What `verify` was given names neither a file nor an image by digest."""

    exit_code = USAGE


class SigningKeyError(ReprobuildError):
    """A key given to sign or to check signatures cannot be read or is of a kind not supported."""

    exit_code = USAGE


class SignatureError(ReprobuildError):
    """A signature envelope is malformed, or does not verify with the key given."""


class ArchiveError(ReprobuildError):
    """An archive cannot be written, read, or restored: it is damaged, or not one of ours."""


class ExportError(ReprobuildError):
    """The last build cannot run on a cluster (not pushed, of another lock), or a job file
    cannot be written or rendered."""


class ExportUsage(ExportError):
    """An export's command or option value cannot make a job: a usage error."""

    exit_code = USAGE


class RunInputError(ReprobuildError):
    """A run's --data, --env, --env-file, --secret or --shm-size value cannot be used."""

    exit_code = USAGE


class ReplayPrecondition(ReprobuildError):
    """A replay cannot start as recorded: the data changed, the image or a secret is missing."""

    exit_code = PRECONDITION


class ReplayError(ReprobuildError):
    """What to replay cannot be read: no run record, or a manifest without a run."""

    exit_code = USAGE


class WriteError(ReprobuildError):
    """An output file could not be written where the user asked."""


class SmokeUsage(SmokeError):
    """`smoke --ranks N` asks for more ranks than the GPUs it gives the container, or GPUs for
    an image this machine runs under emulation: a usage error, refused before any container
    starts."""

    exit_code = USAGE
