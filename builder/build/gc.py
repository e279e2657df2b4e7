"""The images earlier locks left in the engine: which of them to remove, and their removal.

Every build names its image `<name>:<lock digest, 12 hex>` and its dependencies image
`<name>:deps-<key>`; a new lock leaves the old ones behind. `select` is the whole choice, a pure
function of the engine's images and containers; `plan_gc` reads those from the engine and
`remove` removes what the plan chose, without force.

What an image frees is the bytes of its layers that no remaining image holds: the engine keys a
layer by its chain ID (the diff IDs below and including it), so two images share a layer exactly
when their lists of diff IDs share that prefix.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from builder import layout
from builder.build import imagecache
from builder.engine.images import EngineImage
from builder.engine.sdk import Engine
from builder.errors import EngineError
from builder.knowledge import AMD64, PLATFORMS, architecture
from builder.reference import ImageReference
from builder.render import plan

# current: the lock on disk's own; keep: one of the --keep newest earlier locks' (or the
# dependencies of such an image); remove: to go; skip: would go, but something uses it.
Verdict = Literal["current", "keep", "remove", "skip"]


@dataclass(frozen=True)
class GcEntry:
    """One of the project's images, with what gc does with it and why."""

    image_id: str
    reference: str  # the name reprobuild gave it
    tags: tuple[str, ...]  # every name it has: all of them go with it
    lock: str  # its dev.reprobuild.lock label
    deps: bool  # the dependencies image, not the final one
    size: int  # the engine's size: all its layers, shared ones too
    verdict: Verdict
    reason: str = ""
    frees: int = 0  # removal only: bytes of its layers no remaining image holds


@dataclass(frozen=True)
class GcPlan:
    name: str
    lock: str  # the current lock's digest
    keep: int
    entries: tuple[GcEntry, ...]  # the current lock's first, then each earlier lock's, newest first
    frees: int  # bytes the removals free, together
    exact: bool  # False: `frees` is an upper bound (see `_frees`)
    # What the engine held when planned: what a partial removal frees is counted against it.
    images: tuple[EngineImage, ...] = field(default=(), repr=False, compare=False)

    @property
    def removals(self) -> tuple[GcEntry, ...]:
        return tuple(entry for entry in self.entries if entry.verdict == "remove")

    @property
    def earlier_locks(self) -> int:
        return len({entry.lock for entry in self.entries if entry.lock != self.lock})


@dataclass(frozen=True)
class Refusal:
    entry: GcEntry
    reason: str  # the engine's


@dataclass(frozen=True)
class GcResult:
    plan: GcPlan
    removed: tuple[GcEntry, ...]
    refused: tuple[Refusal, ...]
    freed: int
    exact: bool


def final_reference(name: str, lock: str, platform: str = AMD64) -> str:
    """The name a build gives the image of `lock`: the spec's name, tagged by the lock, and by
    the architecture for a platform other than linux/amd64 (`:0123456789ab-arm64`)."""
    tag = lock.removeprefix("sha256:")[:12]
    if platform == AMD64:
        return f"{name}:{tag}"
    return f"{name}:{tag}-{architecture(platform)}"


def plan_gc(engine: Engine, *, name: str, lock: str, keep: int = 0) -> GcPlan:
    """What gc would remove of the images of the project `name` whose current lock is `lock`."""
    return select(engine.images(), engine.containers_by_image(), name=name, lock=lock, keep=keep)


def select(
    images: Sequence[EngineImage],
    containers: Mapping[str, tuple[str, ...]],
    *,
    name: str,
    lock: str,
    keep: int = 0,
) -> GcPlan:
    """The plan for the project `name`, from every image the engine holds and the containers made
    from each (by image ID).

    The project's images are those reprobuild labelled as built from a lock, titled `name`, and
    named as a build names them; an image without the label is never one, whatever its name.
    The current lock's images are never removed; of the earlier locks, the `keep` newest keep
    theirs, and so does a dependencies image that a kept or current image is built on (a
    dependencies image serves every later lock with the same dependencies, under the label of
    the lock that built it). An image a container (running or stopped) or a child image uses
    is skipped with the reason.
    """
    ours = [(image, reference) for image in images if (reference := _ours(image, name))]
    by_lock: dict[str, list[tuple[EngineImage, str]]] = {}
    for image, reference in ours:
        by_lock.setdefault(image.labels[layout.LOCK_LABEL], []).append((image, reference))
    earlier = sorted(
        (found for found in by_lock if found != lock),
        key=lambda found: _newest_first(found, [image for image, _ in by_lock[found]]),
    )
    kept = set(earlier[:keep])
    children = _children(images)
    verdicts: dict[str, tuple[Verdict, str]] = {}
    for found, members in by_lock.items():
        for image, _ in members:
            if found == lock:
                verdicts[image.image_id] = ("current", "the current lock")
            elif found in kept:
                verdicts[image.image_id] = ("keep", _kept_reason(keep))
            else:
                verdicts[image.image_id] = ("remove", "")
    _keep_dependencies(ours, verdicts, name)
    for image, _ in ours:
        verdict, _ = verdicts[image.image_id]
        users = containers.get(image.image_id, ())
        if verdict == "remove" and users:
            verdicts[image.image_id] = ("skip", f"used by container {', '.join(users)}")
        elif verdict == "remove" and children.get(image.image_id):
            built_on = ", ".join(_short(child) for child in children[image.image_id])
            verdicts[image.image_id] = ("skip", f"image {built_on} is built on it")
    removed = {image_id for image_id, (verdict, _) in verdicts.items() if verdict == "remove"}
    frees, exact = _frees(images, removed)
    # The current lock's images first (a reused dependencies image among them), then each
    # earlier lock's, newest first: final image, then dependencies.
    order = {found: index for index, found in enumerate([lock, *earlier])}
    entries = sorted(
        (
            GcEntry(
                image_id=image.image_id,
                reference=reference,
                tags=image.tags,
                lock=image.labels[layout.LOCK_LABEL],
                deps=_is_deps(reference, name),
                size=image.size,
                verdict=verdicts[image.image_id][0],
                reason=verdicts[image.image_id][1],
                frees=frees.get(image.image_id, 0),
            )
            for image, reference in ours
        ),
        key=lambda entry: (
            0 if entry.verdict == "current" else 1 + order[entry.lock],
            entry.deps,
            entry.reference,
            entry.image_id,
        ),
    )
    return GcPlan(name, lock, keep, tuple(entries), sum(frees.values()), exact, tuple(images))


def remove(
    engine: Engine, gc_plan: GcPlan, on_removed: Callable[[GcEntry], None] = lambda _: None
) -> GcResult:
    """Remove the plan's removals, each by its names and then by ID, without force: an image the
    engine refuses to remove (something came to use it since the plan) stays, with its reason."""
    removed: list[GcEntry] = []
    refused: list[Refusal] = []
    for entry in gc_plan.removals:
        try:
            for tag in entry.tags:
                engine.untag(tag)
            engine.delete_image(entry.image_id)
        except EngineError as error:
            refused.append(Refusal(entry, str(error)))
            continue
        removed.append(entry)
        on_removed(entry)
    if len(removed) == len(gc_plan.removals):
        freed, exact = gc_plan.frees, gc_plan.exact
    else:
        by_image, exact = _frees(gc_plan.images, {entry.image_id for entry in removed})
        freed = sum(by_image.values())
    return GcResult(gc_plan, tuple(removed), tuple(refused), freed, exact)


def _ours(image: EngineImage, name: str) -> str | None:
    """The name reprobuild gave `image`, when it is one of the project's images."""
    lock = image.labels.get(layout.LOCK_LABEL)
    if not lock or image.labels.get(layout.TITLE_LABEL) != name:
        return None
    # The dependencies image carries the final image's labels (the deps stage has the same
    # LABEL), so only the name a build gives each tells them apart: `:deps-<key>` or the lock's.
    # A label alone is not enough: an image built FROM one of ours inherits its labels.
    finals = {final_reference(name, lock, platform) for platform in PLATFORMS}
    for tag in sorted(image.tags):
        if tag in finals or _is_deps(tag, name):
            return tag
    return None


def _is_deps(reference: str, name: str) -> bool:
    parsed = ImageReference.parse(reference)
    return parsed.written_name == name and (parsed.tag or "").startswith(f"{plan.DEPS_STAGE}-")


def _newest_first(lock: str, images: list[EngineImage]) -> tuple[float, float, str]:
    """Earlier locks, newest first: by when a name last pointed at one of their images (the
    engine's LastTagTime: a build's tag, a push's, the user's `docker tag`), then by the images'
    dates, then by digest so that the order holds from run to run.

    The engine's LastTagTime is the only record it keeps of when an image got a name; `docker
    load`, which names every image reprobuild builds, leaves it unset (dockerd 20.10, measured),
    so the time reprobuild recorded the name it loaded (`imagecache.named_at`) counts as well.
    The images' own date is the lock's archive snapshot: later for a later lock on a registry
    base, where the lock takes the snapshot "now", but one date for every lock of a bootstrapped
    base (the base fixes it).
    """
    tagged = [image.last_tagged for image in images if image.last_tagged is not None]
    tagged += [
        loaded
        for image in images
        for tag in image.tags
        if (loaded := imagecache.named_at(tag, image.image_id)) is not None
    ]
    return (-max(tagged, default=0.0), -max(image.created for image in images), lock)


def _keep_dependencies(
    ours: list[tuple[EngineImage, str]], verdicts: dict[str, tuple[Verdict, str]], name: str
) -> None:
    """A dependencies image whose layers start a current final image's is the current lock's
    too, and one whose layers start a kept final image's is kept: that image was built on it,
    and the next build of its lock reuses it."""
    finals = [(image, reference) for image, reference in ours if not _is_deps(reference, name)]
    for image, reference in ours:
        verdict = verdicts[image.image_id][0]
        if verdict == "current" or not _is_deps(reference, name):
            continue
        users = [
            (verdicts[user.image_id][0], user_reference)
            for user, user_reference in finals
            if user.layers[: len(image.layers)] == image.layers
        ]
        for wanted in ("current", "keep"):
            served = [user_reference for found, user_reference in users if found == wanted]
            if served and (wanted == "current" or verdict == "remove"):
                verdicts[image.image_id] = (wanted, f"the dependencies of {served[0]}")
                break


def _kept_reason(keep: int) -> str:
    if keep == 1:
        return "the newest earlier lock (--keep 1)"
    return f"one of the {keep} newest earlier locks (--keep {keep})"


def _children(images: Sequence[EngineImage]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for image in images:
        if image.parent:
            found.setdefault(image.parent, []).append(image.image_id)
    return found


def _frees(images: Sequence[EngineImage], removed: set[str]) -> tuple[dict[str, int], bool]:
    """What removing the images `removed` frees, per image, and whether that is exact.

    Each removed image frees its layers above the longest chain a remaining image (or a removed
    one already counted, lowest first) holds. The bytes below that point are the size of the
    image whose layers are exactly that chain: the base, or the dependencies image, in practice.
    Where no image ends there, the engine does not say the size of those layers, and the
    nearest image below stands in: the count is then an upper bound.
    """
    chains = {image.image_id: _chain_ids(image.layers) for image in images}
    sized = {chains[image.image_id][-1]: image.size for image in images if image.layers}
    held = {
        chain
        for image in images
        if image.image_id not in removed
        for chain in chains[image.image_id]
    }
    frees: dict[str, int] = {}
    exact = True
    going = [image for image in images if image.image_id in removed]
    for image in sorted(going, key=lambda image: (len(image.layers), image.image_id)):
        own = chains[image.image_id]
        shared = 0
        while shared < len(own) and own[shared] in held:
            shared += 1
        below = next(
            (sized[own[index - 1]] for index in range(shared, 0, -1) if own[index - 1] in sized),
            0,
        )
        exact = exact and (shared == 0 or own[shared - 1] in sized)
        frees[image.image_id] = max(image.size - below, 0) if shared < len(own) else 0
        held.update(own)
    return frees, exact


def _chain_ids(diff_ids: tuple[str, ...]) -> list[str]:
    """The engine's key of each layer: its diff ID on the chain of those below it."""
    chain: list[str] = []
    for diff_id in diff_ids:
        if not chain:
            chain.append(diff_id)
        else:
            digest = hashlib.sha256(f"{chain[-1]} {diff_id}".encode()).hexdigest()
            chain.append(f"sha256:{digest}")
    return chain


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]
