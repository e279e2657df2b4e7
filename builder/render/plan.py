"""Lock -> BuildPlan: one ordered description of the image that both templates render.

The Dockerfile and the Apptainer definition are two renderings of this one plan, so they carry
the same base, packages, Python layers, environment, labels and entry behaviour by
construction. Layer order serves caching: OS packages, then the torch/CUDA stack, then the rest
of the closure, then the smoke payload, then user code last.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Any

from builder import __version__, layout, snapshots
from builder.knowledge import AMD64, architecture
from builder.lock.apt import DEFAULT_PATH, AptArchive
from builder.lock.model import Lock, LockedPackage
from builder.render import requirement

VENV = "/opt/venv"
HOME = "/opt/reprobuild"
HOOK = f"{HOME}/hook"  # the runtime determinism hook (builder/smoke/hook.py) and its .pth
HOOK_MODULE, HOOK_PTH = "_reprobuild_determinism.py", "reprobuild-determinism.pth"
HOOK_PTH_TEXT = "import _reprobuild_determinism; _reprobuild_determinism.install()\n"
CONTEXT = "reprobuild"  # folder of generated files inside the build context
# Trees copied onto / in one COPY each: copying onto an existing folder would date that folder
# by the build, copying onto / keeps the dates the context carries.
IMAGE_TREE = f"{CONTEXT}/image"  # holds opt/reprobuild: the payload, entry, expectations
CODE_TREE = "code"  # holds workspace: the user's code
WHEELS = f"{CONTEXT}/wheels"  # the lock's wheels, verified on the host before the build
INSTALL = f"{CONTEXT}/install"  # builder/wheelinstall.py, its plan and pypa/installer
INSTALLER_SCRIPT = "wheelinstall.py"
INSTALL_PLAN = "layers.json"
INSTALL_STAGE = "install"  # the throwaway stage that installs the Python layers
LAYERS = f"{HOME}/layers"  # where that stage puts each layer, as a tree rooted at /
# The Dockerfile stage that holds everything but the context's own files (payload, code): built
# once per lock and kept as an image, the final stage starts from it.
DEPS_STAGE = "deps"
# The torch stack in two layers, so that a torch patch release on the same CUDA wheels keeps the
# CUDA layer (about 3 GB of the 5 GB): the CUDA libraries, then torch and its compiler.
CUDA_PREFIXES = ("nvidia-", "cuda-")
TORCH_STACK = ("torch", "triton")
# The date of every file in a layer whose inputs carry no date of their own: the venv, the wheels
# (pip keeps none of their dates), the user and hook links, the payload and the code. A layer is
# then a function of its own inputs only: a re-lock (a new archive snapshot, so a new lock epoch)
# or another project with the same base and wheels gives it the same bytes, and the engine and
# the registry already hold it. 1980-01-01, the earliest date a zip archive can hold, so that
# zipping files from the image never fails on their dates.
LAYER_EPOCH = 315532800
# Files a step created or changed, dated later than the lock's epoch, get the epoch as their
# mtime: the layer then holds the same bytes on every build. What the step touched is told by
# ctime against a marker made as the step starts, to the nanosecond, on /dev/shm (a tmpfs, so the
# marker is never part of a layer); files of the base, however recently the engine unpacked them,
# are older and are never copied up. Mount points of the build container are skipped.
STEP_MARKER = "/dev/shm/reprobuild-step"
CLAMP_CHANGED = (
    "find / -xdev \\( -path /proc -o -path /sys -o -path /dev -o -path /etc/hosts"
    " -o -path /etc/hostname -o -path /etc/resolv.conf \\) -prune"
    f' -o -cnewer {STEP_MARKER} -newermt "@$SOURCE_DATE_EPOCH"'
    ' -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +'
)


@dataclass(frozen=True)
class PythonLayer:
    name: str
    stage: str  # names its tree in the install stage, e.g. "torch"
    packages: tuple[LockedPackage, ...]


@dataclass(frozen=True)
class BuildPlan:
    name: str
    base: str  # FROM: name@sha256 (or the local name of a bootstrapped base)
    epoch: int
    apt_sources: str  # "" when no system packages are installed
    system_packages: tuple[str, ...]
    interpreter: str  # creates the venv, e.g. python3.11
    layers: tuple[PythonLayer, ...]
    # The system packages install the interpreter (a Debian base with Python from apt), so they
    # come before the venv; else after the Python layers, whose bytes then do not depend on them.
    system_first: bool
    env: tuple[tuple[str, str], ...]
    labels: tuple[tuple[str, str], ...]
    expect: dict[str, Any] = field(default_factory=dict)  # locked versions for the smoke test

    def system_install(self) -> str:
        """Snapshot sources in, pinned packages, then the noise out: package lists and caches
        deleted, logs this step wrote emptied. Files of the base are truncated, never deleted:
        a deletion leaves a whiteout dated by the build. Runs inside `clamped`."""
        sources = " ".join(shlex.quote(line) for line in self.apt_sources.splitlines())
        return (
            f"rm -f /etc/apt/sources.list.d/* && printf '%s\\n' {sources} > /etc/apt/sources.list"
            " && apt-get update -o Acquire::Check-Valid-Until=false"
            f" && apt-get install -y --no-install-recommends {' '.join(self.system_packages)}"
            " && rm -rf /var/lib/apt/lists/*_* /var/cache/apt/*.bin /var/cache/ldconfig/aux-cache"
            f" && find /var/log -type f -cnewer {STEP_MARKER} ! -empty -exec truncate -s 0 {{}} +"
        )

    def wheel_paths(self) -> tuple[str, ...]:
        """Every wheel of the Python layers, as the context holds it."""
        return tuple(f"{WHEELS}/{p.filename}" for layer in self.layers for p in layer.packages)

    @staticmethod
    def clamped(command: str, epoch: int = LAYER_EPOCH) -> str:
        """`command` run with SOURCE_DATE_EPOCH set to `epoch` (apt, dpkg and useradd date what
        they write by it), then the files it changed dated to `epoch` (see CLAMP_CHANGED). Each
        step names its own epoch: one ENV for the whole file would make every step, and so
        every layer, depend on the lock's date."""
        return (
            f"export SOURCE_DATE_EPOCH={epoch} && touch {STEP_MARKER} && {command}"
            f" && {CLAMP_CHANGED} && rm {STEP_MARKER}"
        )

    @property
    def python_version(self) -> str:
        """The venv's Python as its paths name it, e.g. 3.11."""
        return self.interpreter.removeprefix("python")

    def create_venv(self) -> str:
        return f"{self.interpreter} -m venv --without-pip {VENV}"

    def site_packages(self) -> str:
        return f"{VENV}/lib/{self.interpreter}/site-packages"

    def finish(self) -> str:
        """The non-root user, and the determinism hook linked into the venv's site-packages (one
        step, after the Python layers, so both formats get it the same way)."""
        return (
            f"useradd --uid {layout.UID} --user-group --create-home --home-dir /home/{layout.USER}"
            f" --shell /bin/sh {layout.USER}"
            f" && ln -s {HOOK}/{HOOK_MODULE} {HOOK}/{HOOK_PTH} {self.site_packages()}/"
        )


def bootstrap_image_name(lock: Lock) -> str:
    """The local name a bootstrapped base is imported under: a pure function of the lock's
    image, its architecture named for a platform other than linux/amd64 (one suite and snapshot
    gives a root filesystem per architecture)."""
    stamp = snapshots.snapshot_stamp(lock.base.snapshot).lower()
    if lock.platform != AMD64:
        stamp += f"-{architecture(lock.platform)}"
    return f"reprobuild-base/debian-{lock.base.suite}:{stamp}"


def _layers(lock: Lock) -> tuple[PythonLayer, ...]:
    """The closure in layers, each holding only its own wheels: the CUDA libraries, torch, the
    rest. Empty ones are left out (a CPU-only build has no CUDA layer)."""
    packages = lock.python.packages
    cuda = tuple(p for p in packages if p.name.startswith(CUDA_PREFIXES))
    torch = tuple(p for p in packages if p.name in TORCH_STACK)
    rest = tuple(p for p in packages if p not in cuda and p not in torch)
    layers = (
        PythonLayer("The CUDA libraries", "cuda", cuda),
        PythonLayer("torch", "torch", torch),
        PythonLayer("The other dependencies", "closure", rest),
    )
    return tuple(layer for layer in layers if layer.packages)


# The image's ENV that makes a run repeatable; launchers outside Docker pass it explicitly.
DETERMINISM_ENV = (
    "PYTHONHASHSEED",
    "CUBLAS_WORKSPACE_CONFIG",
    "REPROBUILD_SEED",
    "REPROBUILD_TF32",
    "NVIDIA_TF32_OVERRIDE",
    "REPROBUILD_DETERMINISTIC",
)


def determinism_env(env: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """The determinism part of an image's ENV, in its order."""
    return tuple((key, value) for key, value in env if key in DETERMINISM_ENV)


def _env(lock: Lock) -> tuple[tuple[str, str], ...]:
    determinism = lock.determinism
    tf32 = bool(determinism["tf32"])
    env = [
        ("PATH", f"{VENV}/bin:{HOME}/bin:{DEFAULT_PATH}"),
        ("VIRTUAL_ENV", VENV),
        ("PYTHONDONTWRITEBYTECODE", "1"),
        ("PYTHONHASHSEED", "0"),
        ("PYTHONPATH", f"{HOME}/payload"),
        ("SOURCE_DATE_EPOCH", str(_epoch(lock))),
        ("CUBLAS_WORKSPACE_CONFIG", str(determinism["cublas_workspace_config"])),
        ("REPROBUILD_DETERMINISTIC", "1"),
        ("REPROBUILD_SEED", str(determinism["seed"])),
        ("REPROBUILD_TF32", "1" if tf32 else "0"),
    ]
    if not tf32:
        env.append(("NVIDIA_TF32_OVERRIDE", "0"))
    cuda = lock.resolution.get("cuda")
    if cuda:
        env += [
            ("NVIDIA_VISIBLE_DEVICES", "all"),
            ("NVIDIA_DRIVER_CAPABILITIES", "compute,utility"),
            # Not cuda>=X.Y: the runtime refused cuda>=12.4 on driver 535.104.05 (CUDA 12.2), which
            # the resolver admits for 12.4 under minor-version compatibility.
            ("NVIDIA_REQUIRE_CUDA", requirement.of_record(lock.resolution)),
        ]
    return tuple(env)


def _epoch(lock: Lock) -> int:
    return snapshots.epoch_seconds(lock.base.snapshot or lock.system.snapshot)


def _labels(lock: Lock, lock_digest: str) -> tuple[tuple[str, str], ...]:
    resolution = lock.resolution
    torch = resolution["torch"]
    created = snapshots.epoch_time(lock.base.snapshot or lock.system.snapshot)
    cuda = resolution.get("cuda") or "none"
    summary = f"torch {torch['label']}, CUDA {cuda}, Python {lock.base.python}"
    labels = (
        (layout.TITLE_LABEL, str(resolution["name"])),
        ("org.opencontainers.image.created", created.strftime("%Y-%m-%dT%H:%M:%SZ")),
        ("org.opencontainers.image.base.name", lock.base.image or lock.base.reference),
        ("org.opencontainers.image.base.digest", lock.base.digest),
        ("dev.reprobuild.version", __version__),
        (layout.LOCK_LABEL, lock_digest),
        ("dev.reprobuild.knowledge", lock.knowledge_version),
        ("dev.reprobuild.resolution", summary),
        ("dev.reprobuild.min-driver", str(resolution.get("min_driver") or "")),
    )
    return tuple((key, value) for key, value in labels if value)


def plan(lock: Lock, lock_digest: str) -> BuildPlan:
    base = lock.base.image if lock.base.kind == "registry" else bootstrap_image_name(lock)
    suite = lock.base.suite
    archive = AptArchive(lock.system.snapshot, lock.system.mirror, lock.system.security_mirror)
    torch = lock.resolution["torch"]
    expect = {
        "torch": torch["version"],
        "cuda": lock.resolution.get("cuda"),
        "cudnn": lock.resolution.get("cudnn"),
        "min_driver": lock.resolution.get("min_driver"),
    }
    return BuildPlan(
        name=str(lock.resolution["name"]),
        base=base,
        epoch=_epoch(lock),
        apt_sources=archive.sources(suite) if lock.system.packages else "",
        system_packages=lock.system.packages,
        interpreter=f"python{lock.python.python}",
        layers=_layers(lock),
        system_first=lock.base.python_source == "apt",
        env=_env(lock),
        labels=_labels(lock, lock_digest),
        expect=expect,
    )


def install_plan_json(build_plan: BuildPlan) -> str:
    """The plan the install stage's `wheelinstall.py` runs: each layer's wheels, in order, with
    the sha256 the lock pins (checked again before installing), and where its tree goes."""
    document = {
        "venv": VENV,
        "python": build_plan.python_version,
        "epoch": LAYER_EPOCH,
        "wheels": f"{HOME}/wheels",
        "output": LAYERS,
        "layers": [
            {
                "name": layer.stage,
                "wheels": [{"file": p.filename, "sha256": p.sha256} for p in layer.packages],
            }
            for layer in build_plan.layers
        ],
    }
    return json.dumps(document, indent=2) + "\n"


def expect_json(build_plan: BuildPlan) -> str:
    return json.dumps(build_plan.expect, indent=2, sort_keys=True) + "\n"
