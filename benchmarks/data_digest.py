"""The digest of `reprobuild run --data NAME=PATH`: first-pass throughput against `sha256sum`
over the same files, and the re-check of an unchanged dataset from its stamps, in one run.

1. First pass (no stamps yet; the stamp file is written, as a real first run writes it): the
   digest's MB/s against one `sha256sum` process fed the same files by xargs (target >= 0.80x),
   over large files (default 2 GiB in 8) and over many small files (default 10,000 of 4 KiB).
   The page cache cannot be dropped here, so every file is read once before, and both sides read
   from memory; the two take turns, which one goes first alternating, and each figure is the
   median of --runs (default 3).
2. Re-check of the unchanged small-file set (10,000 files) from its stamps: a stat pass and one
   JSON load (target <= 1 s); the large set's re-check is shown beside it.

The data is made in a temp folder (under --dir) with mtimes an hour old, so that the stamps hold
(a file written in the last 2 s is not stamped), and removed at the end.
    python benchmarks/data_digest.py [--large-mib 2048] [--large-files 8] [--small-files 10000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from builder.run import datadigest

TARGETS = {"throughput_ratio": 0.80, "recheck_s": 1.0}
BLOCK = 16 << 20


def make_large(folder: Path, total_mib: int, count: int) -> None:
    """`count` files of `total_mib` MiB in all, of random bytes (one block, a distinct head)."""
    block = os.urandom(BLOCK)
    size = (total_mib << 20) // count
    folder.mkdir(parents=True)
    for index in range(count):
        with (folder / f"shard-{index:03}.bin").open("wb") as handle:
            handle.write(index.to_bytes(8, "big"))
            left = size - 8
            while left > 0:
                handle.write(block[: min(left, BLOCK)])
                left -= BLOCK


def make_small(folder: Path, count: int, size: int) -> None:
    """`count` files of `size` random bytes, 100 to a folder."""
    data = os.urandom(size + count)
    for index in range(count):
        path = folder / f"part-{index // 100:03}" / f"sample-{index:05}.txt"
        if index % 100 == 0:
            path.parent.mkdir(parents=True)
        path.write_bytes(data[index : index + size])


def age_and_list(folder: Path, mtime: float) -> tuple[Path, int, int]:
    """Make every file's mtime `mtime`, read each once (into the page cache), and write their
    paths NUL-separated for xargs: the list, the file count and their bytes."""
    paths = sorted(path for path in folder.rglob("*") if path.is_file())
    total = 0
    for path in paths:
        os.utime(path, (mtime, mtime))
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                total += len(chunk)
    listing = folder.parent / f"{folder.name}.list"
    listing.write_bytes(b"".join(bytes(path) + b"\0" for path in paths))
    return listing, len(paths), total


def sha256sum_s(listing: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        ["xargs", "-0", "-a", str(listing), "sha256sum"], check=True, stdout=subprocess.DEVNULL
    )
    return time.perf_counter() - start


def first_pass_s(folder: Path, stamps: Path) -> float:
    """A first pass: no stamps before it (it writes them, as a real first run does)."""
    shutil.rmtree(stamps, ignore_errors=True)
    start = time.perf_counter()
    datadigest.digest_data("bench", folder, cache_dir=stamps)
    return time.perf_counter() - start


def recheck_s(folder: Path, stamps: Path) -> float:
    start = time.perf_counter()
    datadigest.digest_data("bench", folder, cache_dir=stamps)
    return time.perf_counter() - start


def same_sums(folder: Path, listing: Path) -> bool:
    """Whether the digest's sha256 of every file is sha256sum's."""
    output = subprocess.run(
        ["xargs", "-0", "-a", str(listing), "sha256sum"], check=True, capture_output=True
    ).stdout.decode()
    theirs = {}
    for line in output.splitlines():
        sha256, path = line.split("  ", 1)
        theirs[os.path.relpath(path, folder)] = sha256
    ours = {
        path: sha256 for path, _, sha256 in datadigest.digest_data("b", folder, cache=False).entries
    }
    return ours == theirs


def measure_first_pass(name: str, folder: Path, runs: int, stamps: Path) -> None:
    listing, files, total = age_and_list(folder, time.time() - 3600)
    if not same_sums(folder, listing):
        raise SystemExit(f"{name}: the digest's sha256 differ from sha256sum's")
    ours: list[float] = []
    theirs: list[float] = []
    for run in range(runs):  # turns, the first alternating
        if run % 2:
            ours.append(first_pass_s(folder, stamps))
            theirs.append(sha256sum_s(listing))
        else:
            theirs.append(sha256sum_s(listing))
            ours.append(first_pass_s(folder, stamps))
    ours_s, theirs_s = statistics.median(ours), statistics.median(theirs)
    ratio = theirs_s / ours_s  # throughput ratio: same bytes, so the inverse of the times
    verdict = "met" if ratio >= TARGETS["throughput_ratio"] else "MISSED"
    print(
        f"first pass, {name} ({files} files, {total / 2**20:.0f} MiB), median of {runs}: "
        f"sha256sum {theirs_s:.2f} s ({total / theirs_s / 1e6:.0f} MB/s), "
        f"digest {ours_s:.2f} s ({total / ours_s / 1e6:.0f} MB/s); "
        f"ratio {ratio:.2f} (target >= {TARGETS['throughput_ratio']:.2f}: {verdict})"
    )


def measure_recheck(name: str, folder: Path, runs: int, stamps: Path, target: bool) -> None:
    first_pass_s(folder, stamps)
    times = [recheck_s(folder, stamps) for _ in range(runs)]
    seconds = statistics.median(times)
    files = datadigest.digest_data("bench", folder, cache_dir=stamps).files
    line = f"re-check, {name} ({files} unchanged files), median of {runs}: {seconds:.3f} s"
    if target:
        verdict = "met" if seconds <= TARGETS["recheck_s"] else "MISSED"
        line += f" (target <= {TARGETS['recheck_s']:.1f} s: {verdict})"
    print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large-mib", type=int, default=2048, help="MiB of large files in all")
    parser.add_argument("--large-files", type=int, default=8)
    parser.add_argument("--small-files", type=int, default=10_000)
    parser.add_argument("--small-bytes", type=int, default=4096)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where the temp data goes")
    options = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="reprobuild-digest-", dir=options.dir))
    try:
        large, small, stamps = base / "large", base / "small", base / "stamps"
        make_large(large, options.large_mib, options.large_files)
        make_small(small, options.small_files, options.small_bytes)
        print(
            f"{os.cpu_count()} CPUs; digest threads: "
            f"{min(datadigest.WORKERS, os.cpu_count() or 1)}; data in {base}"
        )
        measure_first_pass("large files", large, options.runs, stamps)
        measure_first_pass("small files", small, options.runs, stamps)
        measure_recheck("small files", small, options.runs, stamps, target=True)
        measure_recheck("large files", large, options.runs, stamps, target=False)
    finally:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
