"""Archive write and offline verify throughput against `tar` and `sha256sum` of the same bytes,
and the archive's size against the bytes the registry stores for the image.

    python benchmarks/archive_io.py [IMAGE]

IMAGE (default: the torch image the archive tests push to the tests' registry) must be in a
registry; the archive is written to a scratch folder and removed. The baselines are what a
careful person does by hand with the same bytes: write = `tar -cf` of the unpacked layout plus
`sha256sum` of the tar; verify = `sha256sum` of the tar plus `tar -xf` and `sha256sum` of every
blob. Target: each ratio (reprobuild / baseline throughput) >= 0.8, size ratio <= 1.01.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from timing import REGISTRY

from builder.engine.registry import RegistryClient
from builder.publish import archive, verify, verifyarchive
from builder.reference import ImageReference

DEFAULT_IMAGE = f"{REGISTRY}/reprobuild-test/torch-archive:paper"


def seconds(argv: list[str], **kwargs: object) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, **kwargs)  # type: ignore[call-overload]
    return time.perf_counter() - start


def main(image_text: str) -> None:
    with RegistryClient() as registry:
        resolved = registry.resolve(ImageReference.parse(image_text))
        pinned = f"{resolved.reference.written_name}@{resolved.digest}"
        image = archive.fetch_image(registry, pinned)
        folder = Path(tempfile.mkdtemp(prefix="rb-archive-bench-", dir="/var/tmp"))
        try:
            path = folder / "image.oci.tar"
            start = time.perf_counter()
            written = archive.write(path, registry, image, documents=[], repo_tag=image_text)
            write_s = time.perf_counter() - start
            report(folder, path, written, write_s)
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def report(folder: Path, path: Path, written: archive.Written, write_s: float) -> None:
    steps = verify.Steps(smoke=False, gpus=None, rebuild=None)
    start = time.perf_counter()
    verifyarchive.verify_archive(None, path, steps, cited_sha256=None)
    verify_s = time.perf_counter() - start
    unpacked = folder / "unpacked"
    unpacked.mkdir()
    untar_s = seconds(["tar", "-xf", str(path), "-C", str(unpacked)])
    blobs = sorted(str(blob) for blob in (unpacked / "blobs" / "sha256").iterdir())
    sum_blobs_s = seconds(["sha256sum", *blobs])
    retar = folder / "again.tar"
    tar_s = seconds(["tar", "-cf", str(retar), "-C", str(unpacked), "."])
    sum_tar_s = seconds(["sha256sum", str(retar)])
    sum_archive_s = seconds(["sha256sum", str(path)])
    gigabytes = written.size / 1e9
    write_baseline_s = tar_s + sum_tar_s
    verify_baseline_s = sum_archive_s + untar_s + sum_blobs_s
    print(f"image: {written.blobs} blobs, {written.image_bytes / 1e9:.3f} GB in the registry")
    print(f"archive: {gigabytes:.3f} GB, {written.sha256}")
    print(
        f"write:  reprobuild {write_s:.1f} s ({gigabytes / write_s:.2f} GB/s) | tar -cf "
        f"{tar_s:.1f} s + sha256sum {sum_tar_s:.1f} s ({gigabytes / write_baseline_s:.2f} GB/s)"
        f" | ratio {write_baseline_s / write_s:.2f}x"
    )
    print(
        f"verify: reprobuild {verify_s:.1f} s ({gigabytes / verify_s:.2f} GB/s) | sha256sum "
        f"{sum_archive_s:.1f} s + tar -xf {untar_s:.1f} s + sha256sum of blobs {sum_blobs_s:.1f}"
        f" s ({gigabytes / verify_baseline_s:.2f} GB/s) | ratio "
        f"{verify_baseline_s / verify_s:.2f}x"
    )
    print(f"size: archive / registry bytes = {written.size / written.image_bytes:.4f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_IMAGE)
