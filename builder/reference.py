"""Image references, `[registry/]repository[:tag][@sha256:digest]`: one type for every place
that reads one (the spec's base, the lock, the engine's pulls and pushes, the manifest, exports).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from builder.errors import RegistryError

DOCKER_HUB = "registry-1.docker.io"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# What a spec may write: a reference by digest, or by name and tag (a registry port allowed).
_BY_DIGEST = re.compile(r"^[a-z0-9][a-z0-9._/:-]*@sha256:[0-9a-f]{64}$")
_BY_TAG = re.compile(
    r"^[a-z0-9][a-z0-9._/-]*(:[0-9]+)?[a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?$"
)


@dataclass(frozen=True)
class ImageReference:
    registry: str  # host[:port]; registry-1.docker.io for Docker Hub
    repository: str  # library/python
    tag: str | None
    digest: str | None
    written: str  # as the user wrote it

    @classmethod
    def parse(cls, text: str) -> ImageReference:
        """Read a reference; RegistryError when it names a digest that is not sha256:<hex>."""
        rest, _, digest = text.partition("@")
        if digest and not DIGEST.match(digest):
            raise RegistryError(f"{text!r}: the digest must be sha256:<64 hex digits>.")
        name, tag = _split_tag(rest)
        first, _, remainder = name.partition("/")
        if remainder and ("." in first or ":" in first or first == "localhost"):
            registry, repository = first, remainder
        else:
            registry, repository = DOCKER_HUB, name
        if registry in ("docker.io", "index.docker.io"):
            registry = DOCKER_HUB
        if registry == DOCKER_HUB and "/" not in repository:
            repository = f"library/{repository}"
        if tag is None and not digest:
            tag = "latest"
        return cls(registry, repository, tag, digest or None, text)

    @property
    def name(self) -> str:
        """The repository as `FROM` writes it: python, nvidia/cuda, 127.0.0.1:5000/x/y."""
        if self.registry == DOCKER_HUB:
            return self.repository.removeprefix("library/")
        return f"{self.registry}/{self.repository}"

    @property
    def written_name(self) -> str:
        """The name as written, without its tag or digest."""
        return _split_tag(self.written.partition("@")[0])[0]

    def pinned(self, digest: str) -> str:
        return f"{self.name}@{digest}"

    @property
    def base_url(self) -> str:
        host = self.registry.split(":")[0]
        scheme = (
            "http" if host in ("127.0.0.1", "localhost") or host.startswith("127.") else "https"
        )
        return f"{scheme}://{self.registry}/v2/{self.repository}"


def _split_tag(reference: str) -> tuple[str, str | None]:
    slash, colon = reference.rfind("/"), reference.rfind(":")
    if colon > slash:
        return reference[:colon], reference[colon + 1 :]
    return reference, None


def pinned_reference(text: str) -> ImageReference | None:
    """`text` as a reference by digest with no whitespace in it; None when it is not one."""
    if any(character.isspace() for character in text) or not text.partition("@")[0]:
        return None
    try:
        reference = ImageReference.parse(text)
    except RegistryError:
        return None
    return reference if reference.digest is not None else None


def well_formed(text: str) -> bool:
    """Whether a spec may name a base image so: lower-case name[:port][/path][:tag] or
    name@sha256:<64 hex digits>."""
    return bool(_BY_DIGEST.match(text) or _BY_TAG.match(text))
