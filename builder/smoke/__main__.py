"""`python -m builder.smoke [--json] [--cpu] [--expect FILE] [--self-test] [--no-canary]
[--ranks N]`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from . import runner
from .describe import text

EXIT_HELP = (
    "exit status: 0 identical fingerprints and (on a GPU) a canary that differed; 1 fingerprints "
    "differ or a kernel failed; 3 identical but no canary witness differed, so the check's power "
    "is unproven on this GPU; 4 a precondition failed"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reprobuild-smoke",
        description="Prove that deterministic kernels give bit-identical tensors here.",
        epilog=EXIT_HELP,
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--cpu", action="store_true", help="run the same plumbing on the CPU")
    parser.add_argument(
        "--expect",
        type=Path,
        help="JSON with the locked torch, cuda and cudnn versions to check (and min_driver, the "
        "driver floor named when the driver is too old)",
    )
    parser.add_argument(
        "--self-test", action="store_true", help="add a kernel that differs per process (must fail)"
    )
    parser.add_argument("--no-canary", action="store_true", help="skip the canary run")
    parser.add_argument(
        "--ranks",
        type=_ranks,
        default=1,
        metavar="N",
        help="with N >= 2, also run N processes as one torch.distributed group (NCCL, one GPU "
        "each; gloo with --cpu), twice, and fingerprint an all_reduce and DDP steps",
    )
    parser.add_argument("--child", choices=("deterministic", "canary"), help=argparse.SUPPRESS)
    parser.add_argument("--rank", type=int, help=argparse.SUPPRESS)  # a group's process
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)  # rank 0's store
    return parser


def _ranks(text: str) -> int:
    try:
        ranks = int(text)
    except ValueError:
        ranks = 0
    if ranks < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of processes: give 1 (no group), or 2 or more"
        )
    return ranks


def _expected(parser: argparse.ArgumentParser, path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        expected = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        parser.error(f"--expect {path}: {error}; give a JSON file like {EXPECT_EXAMPLE}")
    if not isinstance(expected, dict):
        parser.error(f"--expect {path}: not a JSON object; give one like {EXPECT_EXAMPLE}")
    return expected


EXPECT_EXAMPLE = '{"torch": "2.5.1", "cuda": "12.4", "cudnn": "9.1.0"}'


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    options = parser.parse_args(argv)
    if options.child and options.rank is not None:
        from . import distributed

        rank = distributed.Rank(
            options.child, options.rank, options.ranks, options.port, options.cpu, options.self_test
        )
        return distributed.main(rank)
    if options.child:
        from . import child

        child.main(options.child, options.cpu, options.self_test, options.ranks)
        return runner.PASS
    expected = _expected(parser, options.expect)
    report = runner.run(
        __package__ or "builder.smoke",
        options.cpu,
        expected,
        options.self_test,
        not options.no_canary,
        ranks=options.ranks,
    )
    data = report.as_dict()
    print(json.dumps(data, indent=2) if options.json else text(data))
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
