"""gc's choice, a pure function of the engine's images and containers, on made-up records."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from builder.build.gc import GcEntry, GcResult, Refusal, _frees, final_reference, select
from builder.cli.present import gc_lines, gc_result_lines
from builder.codeset import size_text
from builder.engine.images import EngineImage, engine_time
from builder.knowledge import ARM64

NAME = "lab/train"
CURRENT, OLD, OLDER, OLDEST = (f"sha256:{letter * 64}" for letter in "abcd")


def digest(text: str) -> str:
    return f"sha256:{text.ljust(64, '0')}"


BASE_LAYER = digest("0a")


def image(
    image_id: str,
    layers: tuple[str, ...],
    size: int,
    *,
    lock: str | None = None,
    tags: tuple[str, ...] = (),
    title: str = NAME,
    last_tagged: float | None = None,
    parent: str = "",
) -> EngineImage:
    """An image as the engine describes it; `lock` gives it reprobuild's labels."""
    labels = {} if lock is None else {"dev.reprobuild.lock": lock, "dev.reprobuild.version": "1"}
    if lock is not None:
        labels["org.opencontainers.image.title"] = title
    return EngineImage(
        image_id=digest(image_id),
        tags=tags,
        labels=labels,
        size=size,
        created=1_700_000_000.0,
        parent=parent,
        layers=layers,
        last_tagged=last_tagged,
    )


def lock_images(
    lock: str, number: int, *, last_tagged: float | None, deps_on: int | None = None
) -> tuple[EngineImage, EngineImage]:
    """A lock's dependencies image (`{number}d`: the base's layer of 1000 bytes and one of 100)
    and its final image (`{number}f`: those and one of 10 bytes), or the final image on the
    layers of the lock numbered `deps_on`."""
    deps_layers = (BASE_LAYER, digest(f"{deps_on or number}a"))
    deps = image(
        f"{number}d",
        deps_layers,
        1100,
        lock=lock,
        tags=(f"{NAME}:deps-k{number}",),
        last_tagged=last_tagged,
    )
    final = image(
        f"{number}f",
        (*deps_layers, digest(f"{number}b")),
        1110,
        lock=lock,
        tags=(final_reference(NAME, lock),),
        last_tagged=last_tagged,
    )
    return deps, final


BASE = image("0e", (BASE_LAYER,), 1000, tags=("debian:bookworm",))
DEPS_NOW, FINAL_NOW = lock_images(CURRENT, 1, last_tagged=400.0)
DEPS_OLD, FINAL_OLD = lock_images(OLD, 2, last_tagged=300.0)
DEPS_OLDER, FINAL_OLDER = lock_images(OLDER, 3, last_tagged=200.0)
DEPS_OLDEST, FINAL_OLDEST = lock_images(OLDEST, 4, last_tagged=100.0)
# Listed in no particular order, as the engine does.
ENGINE = [
    FINAL_OLDER,
    BASE,
    DEPS_OLDEST,
    DEPS_NOW,
    FINAL_OLD,
    DEPS_OLD,
    FINAL_NOW,
    DEPS_OLDER,
    FINAL_OLDEST,
]


def verdicts(
    images: list[EngineImage],
    keep: int = 0,
    containers: Mapping[str, tuple[str, ...]] | None = None,
) -> list[str]:
    plan = select(images, containers or {}, name=NAME, lock=CURRENT, keep=keep)
    return [
        f"{entry.verdict} {entry.reference} {entry.frees} {entry.reason}".rstrip()
        for entry in plan.entries
    ]


def test_every_earlier_lock_goes_and_the_current_one_stays() -> None:
    assert verdicts(ENGINE) == [
        "current lab/train:aaaaaaaaaaaa 0 the current lock",
        "current lab/train:deps-k1 0 the current lock",
        "remove lab/train:bbbbbbbbbbbb 10",
        "remove lab/train:deps-k2 100",
        "remove lab/train:cccccccccccc 10",
        "remove lab/train:deps-k3 100",
        "remove lab/train:dddddddddddd 10",
        "remove lab/train:deps-k4 100",
    ]
    plan = select(ENGINE, {}, name=NAME, lock=CURRENT)
    assert (plan.frees, plan.exact, plan.earlier_locks) == (330, True, 3)
    assert [entry.image_id for entry in plan.removals] == [
        digest(text) for text in ("2f", "2d", "3f", "3d", "4f", "4d")
    ]


def test_keep_holds_the_newest_earlier_locks_by_when_they_were_last_tagged() -> None:
    assert verdicts(ENGINE, keep=2)[2:] == [
        "keep lab/train:bbbbbbbbbbbb 0 one of the 2 newest earlier locks (--keep 2)",
        "keep lab/train:deps-k2 0 one of the 2 newest earlier locks (--keep 2)",
        "keep lab/train:cccccccccccc 0 one of the 2 newest earlier locks (--keep 2)",
        "keep lab/train:deps-k3 0 one of the 2 newest earlier locks (--keep 2)",
        "remove lab/train:dddddddddddd 10",
        "remove lab/train:deps-k4 100",
    ]
    # One of the oldest lock's images tagged last (pushed, say): now the newest earlier lock.
    retagged = [
        dataclasses.replace(item, last_tagged=500.0) if item is DEPS_OLDEST else item
        for item in ENGINE
    ]
    assert verdicts(retagged, keep=1)[2:] == [
        "keep lab/train:dddddddddddd 0 the newest earlier lock (--keep 1)",
        "keep lab/train:deps-k4 0 the newest earlier lock (--keep 1)",
        "remove lab/train:bbbbbbbbbbbb 10",
        "remove lab/train:deps-k2 100",
        "remove lab/train:cccccccccccc 10",
        "remove lab/train:deps-k3 100",
    ]
    assert verdicts(ENGINE, keep=5)[2:] == [
        line.replace("one of the 2", "one of the 5").replace("--keep 2", "--keep 5")
        for line in verdicts(ENGINE, keep=2)[2:6]
    ] + [
        "keep lab/train:dddddddddddd 0 one of the 5 newest earlier locks (--keep 5)",
        "keep lab/train:deps-k4 0 one of the 5 newest earlier locks (--keep 5)",
    ]


def test_never_tagged_locks_come_after_tagged_ones_then_by_date_then_by_digest() -> None:
    newest = "sha256:" + "e" * 64
    tagged_once = image(
        "5f",
        (digest("5a"),),
        1,
        lock=newest,
        tags=(final_reference(NAME, newest),),
        last_tagged=1.0,
    )
    engine = [
        FINAL_NOW,
        dataclasses.replace(FINAL_OLD, last_tagged=None, created=9.0),
        dataclasses.replace(FINAL_OLDER, last_tagged=None, created=5.0),
        dataclasses.replace(FINAL_OLDEST, last_tagged=None, created=9.0),
        dataclasses.replace(tagged_once, created=0.0),
    ]
    assert [line.split()[1] for line in verdicts(engine, keep=4)] == [
        "lab/train:aaaaaaaaaaaa",
        "lab/train:eeeeeeeeeeee",  # tagged at all
        "lab/train:bbbbbbbbbbbb",  # created 9, digest b...
        "lab/train:dddddddddddd",  # created 9, digest d...
        "lab/train:cccccccccccc",  # created 5
    ]


def test_a_dependencies_image_stays_with_the_images_built_on_it() -> None:
    """A dependencies image serves every later lock with the same dependencies, under the label
    of the lock that built it: the current lock's image is on lock 2's, the kept lock 3's (the
    newest earlier lock, lock 2's aside) on lock 4's."""
    now = lock_images(CURRENT, 1, last_tagged=400.0, deps_on=2)[1]
    old = lock_images(OLDER, 3, last_tagged=350.0, deps_on=4)[1]
    engine = [BASE, now, DEPS_OLD, FINAL_OLD, old, DEPS_OLDEST, FINAL_OLDEST]
    assert verdicts(engine, keep=1) == [
        "current lab/train:aaaaaaaaaaaa 0 the current lock",
        "current lab/train:deps-k2 0 the dependencies of lab/train:aaaaaaaaaaaa",
        "keep lab/train:cccccccccccc 0 the newest earlier lock (--keep 1)",
        "remove lab/train:bbbbbbbbbbbb 10",  # lock 2: its deps image is the current one's
        "remove lab/train:dddddddddddd 10",
        "keep lab/train:deps-k4 0 the dependencies of lab/train:cccccccccccc",
    ]


def test_images_in_use_are_skipped_and_hold_their_layers() -> None:
    child = image("7c", (*FINAL_OLDER.layers, digest("7a")), 1200, parent=FINAL_OLDER.image_id)
    containers = {FINAL_OLDEST.image_id: ("a (running)",), FINAL_OLD.image_id: ("t (exited)",)}
    assert verdicts([*ENGINE, child], keep=0, containers=containers)[2:] == [
        "skip lab/train:bbbbbbbbbbbb 0 used by container t (exited)",
        "remove lab/train:deps-k2 0",  # the skipped image holds its layers
        "skip lab/train:cccccccccccc 0 image 7c0000000000 is built on it",
        "remove lab/train:deps-k3 0",
        "skip lab/train:dddddddddddd 0 used by container a (running)",
        "remove lab/train:deps-k4 0",
    ]


def test_only_images_reprobuild_labelled_titled_and_named_count() -> None:
    other_layer = digest("9a")
    engine = [
        FINAL_NOW,
        # A reprobuild name without the label.
        image("3e", (other_layer,), 5, tags=(final_reference(NAME, OLD),)),
        # Labelled for another project, under this one's name.
        image("4e", (other_layer,), 6, lock=OLD, title="lab/x", tags=(final_reference(NAME, OLD),)),
        # Built FROM one of ours: it inherits the labels, not a name a build gives.
        image("5e", (*FINAL_OLD.layers, other_layer), 7, lock=OLD, tags=(f"{NAME}:mine",)),
        # Not the name its own lock gives.
        image("6e", (other_layer,), 8, lock=OLD, tags=(final_reference(NAME, OLDER),)),
        # Another repository.
        image("7e", (other_layer,), 9, lock=OLD, tags=("lab/x:deps-k2",)),
        # No name at all.
        image("8e", (other_layer,), 9, lock=OLD),
    ]
    assert verdicts(engine) == ["current lab/train:aaaaaaaaaaaa 0 the current lock"]


def test_every_name_of_a_removed_image_goes_with_it() -> None:
    pushed = dataclasses.replace(FINAL_OLD, tags=("127.0.0.1:5000/lab/train:v1", *FINAL_OLD.tags))
    plan = select([BASE, FINAL_NOW, DEPS_OLD, pushed], {}, name=NAME, lock=CURRENT)
    assert plan.removals[0] == GcEntry(
        image_id=FINAL_OLD.image_id,
        reference="lab/train:bbbbbbbbbbbb",
        tags=("127.0.0.1:5000/lab/train:v1", "lab/train:bbbbbbbbbbbb"),
        lock=OLD,
        deps=False,
        size=1110,
        verdict="remove",
        frees=10,
    )


def test_frees_counts_each_layer_once_and_only_where_nothing_else_holds_it() -> None:
    both = {DEPS_OLD.image_id, FINAL_OLD.image_id}
    assert _frees(ENGINE, both) == ({DEPS_OLD.image_id: 100, FINAL_OLD.image_id: 10}, True)
    assert _frees(ENGINE, {DEPS_OLD.image_id}) == ({DEPS_OLD.image_id: 0}, True)
    assert _frees(ENGINE, {BASE.image_id}) == ({BASE.image_id: 0}, True)
    assert _frees([BASE], {BASE.image_id}) == ({BASE.image_id: 1000}, True)
    # Two images share a layer that no image ends at: its size is not known, the nearest image
    # below (the base) stands in, and the count is an upper bound.
    left = image("5e", (BASE_LAYER, digest("7a"), digest("5a")), 1500)
    right = image("6e", (BASE_LAYER, digest("7a"), digest("6a")), 1600)
    assert _frees([BASE, left, right], {left.image_id}) == ({left.image_id: 500}, False)
    assert _frees([BASE, left, right], {left.image_id, right.image_id}) == (
        {left.image_id: 500, right.image_id: 600},
        False,
    )


def test_plan_text() -> None:
    plan = select(ENGINE, {}, name=NAME, lock=CURRENT, keep=2)
    kept = "one of the 2 newest earlier locks (--keep 2)"
    assert gc_lines(plan, dry_run=True) == [
        "lab/train: current lock sha256:aaaaaaaaaaaa, 3 earlier locks",
        "  current  lab/train:aaaaaaaaaaaa  sha256:1f0000000000    1.1 kB  the current lock",
        "  current  lab/train:deps-k1       sha256:1d0000000000    1.1 kB  the current lock",
        f"  keep     lab/train:bbbbbbbbbbbb  sha256:2f0000000000    1.1 kB  {kept}",
        f"  keep     lab/train:deps-k2       sha256:2d0000000000    1.1 kB  {kept}",
        f"  keep     lab/train:cccccccccccc  sha256:3f0000000000    1.1 kB  {kept}",
        f"  keep     lab/train:deps-k3       sha256:3d0000000000    1.1 kB  {kept}",
        "  remove   lab/train:dddddddddddd  sha256:4f0000000000    1.1 kB  frees 10 B",
        "  remove   lab/train:deps-k4       sha256:4d0000000000    1.1 kB  frees 100 B",
        "dry run: would remove 2 images, freeing 110 B",
    ]
    assert gc_lines(select([BASE], {}, name=NAME, lock=CURRENT), dry_run=True) == [
        "lab/train: the engine holds no image built from a lock of this project"
    ]
    assert gc_lines(select(ENGINE, {}, name=NAME, lock=CURRENT, keep=3), dry_run=False)[-1] == (
        "nothing to remove"
    )


def test_result_text() -> None:
    plan = select(ENGINE, {}, name=NAME, lock=CURRENT, keep=2)
    first, second = plan.removals
    refused = Refusal(first, "the engine kept lab/train:dddddddddddd: in use.")
    result = GcResult(plan, (second,), (refused,), 100, False)
    assert gc_result_lines(result) == [
        "  refused  lab/train:dddddddddddd: the engine kept lab/train:dddddddddddd: in use.",
        "removed 1 image, freed up to 100 B",
    ]


def test_sizes_read_as_the_engine_shows_them() -> None:
    sizes = (0, 999, 1000, 1110, 216_714_567, 5 * 10**9, 10**16)
    assert [size_text(size) for size in sizes] == [
        "0 B",
        "999 B",
        "1.0 kB",
        "1.1 kB",
        "216.7 MB",
        "5.0 GB",
        "10000.0 TB",
    ]


def test_engine_times() -> None:
    assert engine_time("0001-01-01T00:00:00Z") is None
    assert engine_time("") is None
    assert engine_time("2026-12-06T04:50:40.207668379Z") == 1796532640.207668
    assert engine_time("2024-01-01T00:00:00Z") == 1704067200.0
    assert engine_time("2024-01-01T01:00:00.5+01:00") == 1704067200.5


def test_the_arm64_image_of_a_lock_is_one_of_its_images() -> None:
    arm_now = image(
        "1g", (digest("1c"),), 7, lock=CURRENT, tags=(final_reference(NAME, CURRENT, ARM64),)
    )
    arm_old = image("2g", (digest("2c"),), 5, lock=OLD, tags=("lab/train:bbbbbbbbbbbb-arm64",))
    found = verdicts([BASE, DEPS_NOW, FINAL_NOW, arm_now, DEPS_OLD, FINAL_OLD, arm_old])
    assert found == [
        "current lab/train:aaaaaaaaaaaa 0 the current lock",
        "current lab/train:aaaaaaaaaaaa-arm64 0 the current lock",
        "current lab/train:deps-k1 0 the current lock",
        "remove lab/train:bbbbbbbbbbbb 10",
        "remove lab/train:bbbbbbbbbbbb-arm64 5",
        "remove lab/train:deps-k2 100",
    ]
