"""Build record + smoke report -> the manifest a paper publishes (`reprobuild.manifest.json`),
its human-readable twin (`REPRODUCE.md`), a CITATION.cff fragment and a README badge line.

The manifest names the image by registry digest, carries its config digest, the whole lock it
was built from, and the smoke report with its fingerprint key, so `reprobuild verify` can check
each against the image a reader pulls. An integrity digest over the manifest's content catches
an edit made after publishing (it is a checksum, not a signature: sign the file to vouch for it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, cast
from urllib.parse import quote

from builder import __version__, files, layout
from builder.errors import PublishError, WriteError
from builder.knowledge import AMD64, ARM64
from builder.publish.runs import (
    PublishedRun,
    private_registry,
    published_runs,
    replay_command,
    reproduce_lines,
)
from builder.reference import ImageReference, pinned_reference

if TYPE_CHECKING:
    from builder.build.buildrecord import BuildRecord
    from builder.check.smoke import ImageSmokeReport, SmokeReport
    from builder.engine.sdk import Engine
    from builder.lock.lockfile import CurrentLock
    from builder.lock.model import Lock

FORMAT = 1
PUBLISHABLE = ("pass", "unproven")  # unproven: identical bits, but the canary showed no power


class ResolutionSummary(TypedDict):
    torch: str
    cuda: str | None
    cudnn: str | None
    python: str
    min_driver: str | None


class _ManifestImageKeys(TypedDict):
    reference: str  # name@sha256:... as pushed
    tag: str | None  # name:tag it was pushed under (tags move; the digest does not)
    config_digest: str
    manifest_digest: str
    layers: list[str]
    size: int


class ManifestImage(_ManifestImageKeys, total=False):
    """The image the smoke report is of. Its `platform` is absent from a linux/amd64 image
    published alone, so such manifests read as they did before platforms."""

    platform: str


class ManifestPlatform(TypedDict):
    """One platform's image of a build of several, as the index names it."""

    platform: str
    reference: str  # name@sha256:<its manifest digest>
    manifest_digest: str
    config_digest: str


class ManifestLock(TypedDict):
    digest: str
    text: str


class ManifestSource(TypedDict):
    git_commit: str | None
    git_dirty: bool | None


class BuiltWith(TypedDict):
    reprobuild: str
    knowledge: str
    engine: str


class Commands(TypedDict):
    pull: str
    verify: str
    smoke: str
    apptainer: str
    replay: list[str]  # one per published run


class _ManifestContentKeys(TypedDict):
    format: int
    name: str
    published: str
    image: ManifestImage
    resolution: ResolutionSummary
    lock: ManifestLock
    source: ManifestSource
    smoke: ImageSmokeReport
    built_with: BuiltWith
    published_with: str
    commands: Commands
    citation_cff: str
    badge: str
    runs: list[PublishedRun]  # `publish --run`: training runs a reader can replay


class ManifestContent(_ManifestContentKeys, total=False):
    """reprobuild.manifest.json, everything its integrity digest covers. `index` and
    `platforms` are there only for a build of several platforms."""

    index: str  # name@sha256:... of the OCI image index of every platform's image
    platforms: list[ManifestPlatform]  # in the lock's order


class Manifest(ManifestContent):
    integrity: str  # sha256 of the canonical JSON of the rest


@dataclass(frozen=True)
class Cited:
    """The archive of the published image (`publish --archive`), as a paper cites it."""

    name: str  # its file name
    sha256: str  # sha256:<hex> of the whole file
    size: int
    ref_name: str  # the image's name inside its OCI layout (the tag)


@dataclass(frozen=True)
class Source:
    git_commit: str | None
    git_dirty: bool | None


def report_problem(report: object) -> str | None:
    """What makes `report` not a smoke report (`reprobuild smoke --json`); None when it is one."""
    if not isinstance(report, dict):
        return "it is not a JSON object"
    for name, kind in (("image_id", str), ("verdict", str), ("mode", str), ("key", dict)):
        if not isinstance(report.get(name), kind):
            return f"its {name!r} is missing or not a {kind.__name__}"
    kernels = report.get("kernels")
    if not isinstance(kernels, dict) or not all(
        isinstance(kernel, dict) and isinstance(kernel.get("runs"), list) and kernel["runs"]
        for kernel in kernels.values()
    ):
        return "its 'kernels' are missing or have no runs"
    if not isinstance(report.get("canary", {}), dict):
        return "its 'canary' is not a dict"
    return None


def check_smoke(document: object, record: BuildRecord) -> ImageSmokeReport:
    """The report, when it is a smoke report of this image that shows identical bits."""
    problem = report_problem(document)
    if problem is not None:
        raise PublishError(
            f"the smoke report cannot be used: {problem}. Give the output of "
            "`reprobuild smoke --json` for this build."
        )
    report = cast("ImageSmokeReport", document)  # its shape is checked above
    if report["image_id"] != record.image_id:
        raise PublishError(
            f"the smoke report is of {report['image_id']}, not of the last build "
            f"{record.image_id}: run `reprobuild smoke --json` on this build and give that report."
        )
    verdict = report["verdict"]
    if verdict not in PUBLISHABLE:
        raise PublishError(
            f"the smoke test's verdict is {verdict!r}, so there is no proof of determinism to "
            "publish: fix what `reprobuild smoke` reports, rebuild, and publish again."
        )
    return report


def read_report(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as error:
        raise PublishError(
            f"{path} is not a smoke report ({error}): give the output of `reprobuild smoke --json`."
        ) from None


def integrity(document: Mapping[str, object]) -> str:
    """sha256 over the canonical JSON of everything but the integrity field itself."""
    content = {key: value for key, value in document.items() if key != "integrity"}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return f"sha256:{hashlib.sha256(canonical.encode()).hexdigest()}"


def sealed(document: ManifestContent) -> Manifest:
    return {**document, "integrity": integrity(document)}


def commands(pushed: str, runs: list[PublishedRun]) -> Commands:
    """What a reader types, each by digest (`pushed`, name@sha256:...): a tag can be moved, a
    digest cannot."""
    reference = ImageReference.parse(pushed)
    digest = (reference.digest or "").removeprefix("sha256:")
    sif = f"{reference.written_name.rsplit('/', 1)[-1]}-{digest[:12]}.sif"
    return {
        "pull": f"docker pull {pushed}",
        "verify": f"reprobuild verify {layout.MANIFEST_FILE}",
        "smoke": f"docker run --rm --gpus all {pushed} reprobuild-smoke",
        "apptainer": f"apptainer pull {sif} docker://{pushed} && apptainer test --nv {sif}",
        "replay": [replay_command(run) for run in runs],
    }


def citation(name: str, pushed: str, summary: str, lock_digest: str) -> str:
    """A CITATION.cff `identifiers` entry (CFF 1.2.0) naming the image by digest."""
    description = f"Training image ({summary}; lock {lock_digest}), built with reprobuild"
    return (
        "# For CITATION.cff; if yours has `identifiers:` already, add only the list item.\n"
        "identifiers:\n"
        "  - type: other\n"
        f"    value: {json.dumps(pushed)}\n"
        f"    description: {json.dumps(f'{name}: {description}')}\n"
    )


def badge(pushed: str) -> str:
    """A static shields.io badge naming the digest, linking to REPRODUCE.md."""
    short = (ImageReference.parse(pushed).digest or "")[:19]  # sha256: and 12 hex digits
    label = quote(short.replace("-", "--"), safe="")
    return f"[![reprobuild {short}](https://img.shields.io/badge/reprobuild-{label}-blue)]({layout.REPRODUCE_FILE})"


def resolution_summary(lock: Lock) -> ResolutionSummary:
    resolution = lock.resolution
    return {
        "torch": resolution["torch"]["label"],
        "cuda": resolution.get("cuda"),
        "cudnn": resolution.get("cudnn"),
        "python": lock.base.python,
        "min_driver": resolution.get("min_driver"),
    }


def summary_text(summary: ResolutionSummary) -> str:
    cuda = f"CUDA {summary['cuda']}" if summary["cuda"] else "CPU only"
    return f"torch {summary['torch']}, {cuda}, Python {summary['python']}"


def manifest(
    record: BuildRecord,
    lock: Lock,
    *,
    lock_text: str,
    smoke: ImageSmokeReport,
    source: Source,
    published: str,
    runs: list[PublishedRun],
) -> Manifest:
    """The manifest document, sealed with its integrity digest."""
    if record.pushed is None or record.manifest_digest is None:
        raise PublishError("the build was not pushed: publish pushes it first (--to REF).")
    if unpushed := unpushed_platforms(record):
        raise PublishError(unpushed)
    own = lock.on_or_first(record.platform)
    summary = resolution_summary(own)  # of the image the smoke report is of
    name = str(lock.resolution["name"])
    document: ManifestContent = {
        "format": FORMAT,
        "name": name,
        "published": published,
        "image": manifest_image(record, record.pushed, record.manifest_digest),
        "resolution": summary,
        "lock": {"digest": record.lock, "text": lock_text},
        "source": {"git_commit": source.git_commit, "git_dirty": source.git_dirty},
        "smoke": smoke,
        "built_with": {
            "reprobuild": record.reprobuild_version,
            "knowledge": record.knowledge_version,
            "engine": record.engine_version,
        },
        "published_with": __version__,
        "commands": commands(record.pushed, runs),
        "citation_cff": citation(name, record.pushed, summary_text(summary), record.lock),
        "badge": badge(record.pushed),
        "runs": runs,
    }
    if record.pushed_index is not None and record.other_platforms:
        document["index"] = record.pushed_index
        document["platforms"] = platform_entries(record, lock.platforms)
    return sealed(document)


def manifest_image(record: BuildRecord, pushed: str, manifest_digest: str) -> ManifestImage:
    image: ManifestImage = {
        "reference": pushed,
        "tag": record.pushed_tag,
        "config_digest": record.image_id,
        "manifest_digest": manifest_digest,
        "layers": [layer.diff_id for layer in record.layers],
        "size": sum(layer.size for layer in record.layers),
    }
    if record.platforms != (AMD64,):
        image["platform"] = record.platform
    return image


def unpushed_platforms(record: BuildRecord) -> str | None:
    """Why a build of several platforms cannot be published as it is: an image of another
    platform, or the index of them all, was not pushed. None for one platform."""
    if not record.other_platforms:
        return None
    unpushed = [
        other.platform
        for other in record.other_platforms
        if other.manifest_digest is None or pinned_reference(str(other.pushed)) is None
    ]
    if unpushed:
        were = "images were" if len(unpushed) > 1 else "image was"
        missing = f"its {', '.join(unpushed)} {were} not pushed"
    elif pinned_reference(str(record.pushed_index)) is None:
        missing = "the image index of them was not pushed"
    else:
        return None
    return (
        f"the last build has images for {', '.join(record.platforms)}, but {missing}, and a "
        "reader pulls each platform's image from the index: run `reprobuild build --push "
        "REGISTRY/NAME:TAG` (it pushes every platform's image and their index), then "
        "`reprobuild publish` without --to."
    )


def platform_entries(record: BuildRecord, order: tuple[str, ...]) -> list[ManifestPlatform]:
    """Each platform's pushed image, in `order` (the lock's)."""
    own: ManifestPlatform = {
        "platform": record.platform,
        "reference": str(record.pushed),
        "manifest_digest": str(record.manifest_digest),
        "config_digest": record.image_id,
    }
    others: list[ManifestPlatform] = [
        {
            "platform": other.platform,
            "reference": str(other.pushed),
            "manifest_digest": str(other.manifest_digest),
            "config_digest": other.image_id,
        }
        for other in record.other_platforms
    ]
    rank = {platform: position for position, platform in enumerate(order)}
    return sorted([own, *others], key=lambda entry: rank.get(entry["platform"], len(rank)))


def dumps(document: Manifest) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def reproduce_text(document: Manifest, archive: Cited | None = None) -> str:
    """REPRODUCE.md: the manifest for a reader, in the order they need it."""
    image, smoke, command = document["image"], document["smoke"], document["commands"]
    source = document["source"]
    lines = [
        f"# Reproducing {document['name']}",
        "",
        document["badge"],
        "",
        f"The training environment is the container image **`{image['reference']}`**: "
        f"{summary_text(document['resolution'])}. Its config digest (image ID) is "
        f"`{image['config_digest']}`; it was built from the lock `{document['lock']['digest']}` "
        "(embedded in `reprobuild.manifest.json`); `reprobuild verify --rebuild`, run in a "
        "checkout of the code, rebuilds that lock and compares the digest.",
        "",
        *_source_lines(source),
        *platform_lines(document),
        *archive_lines(archive, image["reference"]),
        "## Get it and check it",
        "",
        "```sh",
        command["pull"],
        f"{command['verify']}   # on a GPU host (add --cpu elsewhere): pulls by digest, checks "
        "it, re-runs the smoke test",
        "```",
        "",
        *reproduce_lines(document["runs"]),
        "## Train in it",
        "",
        f"Run your own command in it with `reprobuild run --image {image['reference']} -- "
        "COMMAND` (data with `--data NAME=PATH`, the run recorded under `runs/`), or with "
        "`docker run`. The smoke test, on a GPU host:",
        "",
        "```sh",
        command["smoke"],
        "# or, on an HPC site with Apptainer:",
        command["apptainer"],
        "```",
        "",
        "Inside the image torch is deterministic as it is imported (seeds, deterministic "
        "kernels, `CUBLAS_WORKSPACE_CONFIG`); `REPROBUILD_DETERMINISTIC=0` turns that off.",
        "",
        "## Determinism, as measured",
        "",
        *_smoke_lines(smoke),
        "## Cite it",
        "",
        "```yaml",
        document["citation_cff"].rstrip("\n"),
        "```",
        "",
    ]
    return "\n".join(lines)


def archive_lines(archive: Cited | None, reference: str) -> list[str]:
    """REPRODUCE.md's section on the archive: the image and its documents in one file, which
    outlives the registry."""
    if archive is None:
        return []
    sha256 = archive.sha256.removeprefix("sha256:")
    gigabytes = archive.size / 1e9
    return [
        "## The archive (no registry needed)",
        "",
        f"`{archive.name}` ({gigabytes:.2f} GB, sha256 `{sha256}`) holds the image "
        f"`{reference}` byte for byte as an OCI image layout, with this manifest, the lock, "
        "the SBOM (CycloneDX), the SLSA provenance and their signatures. Check it and use it "
        "without a network:",
        "",
        "```sh",
        f"sha256sum -c {archive.name}.sha256",
        f"reprobuild verify {archive.name} --key AUTHOR_KEY.pub   # offline; add --no-smoke "
        "to skip loading it",
        f"docker load -i {archive.name}",
        f"apptainer build {archive.ref_name}.sif docker-archive://{archive.name}",
        f"reprobuild restore {archive.name} --to REGISTRY/NAME:TAG   # same manifest digest",
        "```",
        "",
    ]


def platform_lines(document: Manifest) -> list[str]:
    """REPRODUCE.md on platforms: none for a linux/amd64 image published alone; for several,
    each platform's image by digest, how to pull it, and which one the smoke report is of."""
    image, entries, index = document["image"], document.get("platforms"), document.get("index")
    platform = image.get("platform")
    if platform is None:
        return []
    proof = _proof_sentence(platform, image["reference"], document["smoke"], several=bool(entries))
    if not entries or index is None:
        return [f"The image is for {platform}. {proof}", ""]
    return [
        "## Platforms",
        "",
        f"The lock was built for {', '.join(e['platform'] for e in entries)}, one image "
        f"each, pushed with an OCI image index that names them all: `{index}`.",
        "",
        "| platform | image | config digest (image ID) |",
        "|---|---|---|",
        *(f"| {e['platform']} | `{e['reference']}` | `{e['config_digest']}` |" for e in entries),
        "",
        "Pull a platform's image by its own digest:",
        "",
        "```sh",
        *(f"docker pull {e['reference']}" for e in entries),
        "```",
        "",
        "or through the index, which gives the image of the platform asked for (a Docker engine "
        "names one image by a digest, so pull one platform per engine this way):",
        "",
        *(f"- {e['platform']}: `docker pull --platform {e['platform']} {index}`" for e in entries),
        "",
        f"{proof} `reprobuild verify` checks that the index serves each platform's image with "
        f"its published digests, and pulls and smoke-tests the {platform} image.",
        "",
    ]


def _proof_sentence(platform: str, reference: str, smoke: SmokeReport, *, several: bool) -> str:
    """Which platform's image the smoke report is of; an arm64 image's CPU-mode report says
    nothing of its GPUs, which emulation on an x86_64 host cannot reach."""
    others = " (the other platforms' images were not smoke-tested)" if several else ""
    sentence = f"The smoke report below is of the {platform} image `{reference}`{others}."
    if platform == ARM64 and smoke.get("mode") != "gpu":
        machine = smoke.get("key", {}).get("machine") or "not named"
        sentence += (
            f" It ran in CPU mode (its key's machine: {machine}); on an x86_64 host an arm64 "
            "image runs under qemu emulation, which reaches no GPU, so its GPU determinism is "
            "shown only by a smoke test on a GH200 or GB200 node."
        )
    return sentence


def _source_lines(source: ManifestSource) -> list[str]:
    if not source["git_commit"]:
        return []
    dirty = " (with uncommitted changes)" if source["git_dirty"] else ""
    return [f"The code is commit `{source['git_commit']}`{dirty}, copied into the image.", ""]


def _smoke_lines(smoke: SmokeReport) -> list[str]:
    key = smoke.get("key", {})
    kernels = smoke.get("kernels", {})
    canary = smoke.get("canary", {})
    device = key.get("gpu") or key.get("cpu") or "the CPU"
    where = (
        f"on {device}"
        if smoke.get("mode") == "gpu"
        else "in CPU mode (no GPU was used: this shows the plumbing, not GPU determinism)"
    )
    lines = [
        f"The smoke test ran {where}: {len(kernels)} kernels and a short training run gave "
        f"bit-identical results in two fresh processes (verdict: {smoke.get('verdict')}).",
    ]
    if smoke.get("mode") == "gpu":
        lines.append(_canary_line(canary))
    lines += [
        "Identical bits are promised for an identical fingerprint key:",
        "",
        "| key | value |",
        "|---|---|",
        *(f"| {name} | {_cell(value)} |" for name, value in sorted(key.items())),
        "",
    ]
    return lines


def _canary_line(canary: dict[str, Any]) -> str:
    differed, witnesses = canary.get("differed", 0), canary.get("witnesses", 0)
    if not witnesses:
        return "The canary was not run, so this report does not show that the check can fail."
    if not differed:
        return (
            f"None of {witnesses} witness kernels differed without deterministic settings on "
            "this GPU: the check's power to fail was not shown here (verdict unproven)."
        )
    return (
        f"Without deterministic settings {differed} of {witnesses} witness kernels differed, so "
        "the check can fail."
    )


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text.replace("|", "\\|")


def write(output: Path, document: Manifest, archive: Cited | None = None) -> tuple[Path, Path]:
    """REPRODUCE.md, then the manifest, each atomically, into `output`; their paths."""
    manifest_path, reproduce_path = output / layout.MANIFEST_FILE, output / layout.REPRODUCE_FILE
    remedy = "give -o a folder you can write to."
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WriteError(f"cannot make {output} ({error.strerror or error}): {remedy}") from None
    files.write_output(reproduce_path, reproduce_text(document, archive), remedy)
    files.write_output(manifest_path, dumps(document), remedy)
    return manifest_path, reproduce_path


@dataclass(frozen=True)
class SmokeSource:
    """Where the smoke report comes from: a file, or a run here on these GPUs."""

    report_file: Path | None  # a `reprobuild smoke --json` report
    gpus: str | None  # for a run here; None: the CPU mode


def prepare(
    engine: Engine,
    current: CurrentLock,
    record: BuildRecord,
    *,
    push_to: str | None,
    smoke: SmokeSource,
    save: Callable[[BuildRecord], object],
    note: Callable[[str], None],
    runs: list[Path] | None = None,
) -> Manifest:
    """Check the smoke report, push the build if asked (`save` keeps the pushed record at
    once), and make the sealed manifest."""
    from builder import snapshots, source
    from builder.build import build, buildrecord
    from builder.check.smoke import run_noted

    if record.lock != current.digest:
        raise PublishError(
            f"the last build ({record.image}) is of the lock {record.lock}, but "
            f"{current.path} is {current.digest}: run `reprobuild build` first."
        )
    if several := several_platforms_problem(record, push_to):
        raise PublishError(several)
    if push_to is None and record.pushed is None:
        raise PublishError(
            f"the last build {record.image} was never pushed, and a paper needs an image "
            "readers can pull: give --to REGISTRY/NAME:TAG."
        )
    if push_to is None and (edited := buildrecord.unpinned_push(record, current.project)):
        raise PublishError(edited)
    published = published_runs(runs or [], record)
    chosen = None
    if smoke.report_file is not None:
        document = read_report(smoke.report_file)
    else:
        chosen = buildrecord.image_to_run(engine, current.project, record)
        document = run_noted(engine, chosen, gpus=smoke.gpus, note=note).to_dict()
    report = check_smoke(document, record)
    if push_to is not None:
        if chosen is None:  # the build must be in the engine to be pushed
            buildrecord.image_to_run(engine, current.project, record)
        record = build.push_and_point(engine, record, push_to, current, note)
        save(record)
    head, head_dirty = source.git_state(current.project)
    commit, dirty = (
        (record.git_commit, record.git_dirty) if record.git_commit else (head, head_dirty)
    )
    if head != commit:
        note(f"HEAD is {head}, but the build is of {commit}: the manifest names {commit}")
    if private := private_registry(str(record.pushed)):
        note(private)
    return manifest(
        record,
        current.lock,
        lock_text=current.text,
        smoke=report,
        source=Source(commit, dirty),
        published=snapshots.utc_now(),
        runs=published,
    )


def several_platforms_problem(record: BuildRecord, push_to: str | None) -> str | None:
    """Why publish cannot go on with a build of several platforms: --to would push only the
    record's own image, and a reader needs each platform's image and their index."""
    if push_to is not None and record.other_platforms:
        return (
            f"the last build has images for {', '.join(record.platforms)}, and `publish --to` "
            f"pushes only its own {record.platform} image: run `reprobuild build --push "
            f"{push_to}` (it pushes every platform's image and their index), then `reprobuild "
            "publish` without --to."
        )
    return unpushed_platforms(record)


def weak_proof(smoke: SmokeReport) -> str | None:
    """What a reader of the manifest must be told about a proof short of a GPU pass; None for
    a GPU pass."""
    if smoke.get("mode") == "gpu" and smoke.get("verdict") == "pass":
        return None
    if smoke.get("mode") != "gpu":
        return (
            "the smoke report is from the CPU mode: it shows the plumbing, not GPU determinism. "
            "Publish with a GPU run (`reprobuild publish` on a GPU host, or --smoke-report from "
            "`reprobuild smoke --json` there) before the paper goes out."
        )
    return (
        "the canary showed no power on this GPU (no witness differed without deterministic "
        "settings), so identical bits here prove less; REPRODUCE.md says so."
    )
