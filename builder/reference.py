"""Image references, `[registry/]repository[:tag][@sha256:digest]`: one type for every place
that reads one (the spec's base, the lock, the engine's pulls and pushes, the manifest, exports).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from builder.errors import RegistryError

DOCKER_HUB = "registry-1.docker.io"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# The distribution reference grammar (github.com/distribution/reference, regexp.go): a name is
# [domain "/"] path, a domain is a host (DNS name, IPv4, or [IPv6]) with an optional port.
NAME_LIMIT = 255
_PATH_PART = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_PATH_CHARACTERS = re.compile(r"[a-z0-9._-]+")
_HOST_NAME = re.compile(
    r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
    r"(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*"
)
_IPV6 = re.compile(r"\[[a-fA-F0-9:]+\]")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
NAME_FORM = (
    "write [HOST[:PORT]/]PATH, with path parts of lower-case letters and digits joined by '.', "
    "'_', '__' or '-', e.g. \"lab/resnet-train\" or \"registry.lab.example:5000/lab/train\""
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
        registry = self.registry
        host = registry[1:].split("]")[0] if registry.startswith("[") else registry.split(":")[0]
        loopback = host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")
        scheme = "http" if loopback else "https"
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
    """Whether a spec may name a base image so: name[:tag], name@sha256:<64 hex digits> or
    name:tag@sha256:<64 hex digits>, the name as `name_problem` reads it."""
    rest, at, digest = text.partition("@")
    if at and not DIGEST.fullmatch(digest):
        return False
    name, tag = _split_tag(rest)
    return (tag is None or bool(_TAG.fullmatch(tag))) and name_problem(name) is None


def name_problem(text: str) -> str | None:
    """Why `text` is not an image name (`[host[:port]/]path`, no tag, no digest), as one clause
    that ends with the fix; None when it is one. A first part with '.' or ':' in it, or
    `localhost`, is the registry host, as Docker reads a name."""
    first, slash, rest = text.partition("/")
    host, path = (first, rest) if slash and _is_host(first) else (None, text)
    problem = _suffix_problem(text, host, path)
    if problem is not None:
        return problem
    reason = _form_problem(text, host, path)
    return None if reason is None else f"{reason}; {NAME_FORM}"


def _is_host(part: str) -> bool:
    return "." in part or ":" in part or part == "localhost"


def _suffix_problem(text: str, host: str | None, path: str) -> str | None:
    """A tag or a digest: what a build gives an image, never part of its name."""
    name, at, _ = text.partition("@")
    if at:
        alone = _split_tag(name)[0]
        return f'it ends in a digest, which only a built image has; write the name alone, "{alone}"'
    bare, tag = _split_tag(path)
    if tag is None:
        return None
    alone = bare if host is None else f"{host}/{bare}"
    return (
        f"it ends in the tag ':{tag}', but each build is tagged with its lock's digest; write "
        f'the name alone, "{alone}"'
    )


def _form_problem(text: str, host: str | None, path: str) -> str | None:
    if not text:
        return "it is empty"
    if len(text) > NAME_LIMIT:
        return f"it is {len(text)} characters long, more than {NAME_LIMIT}"
    if host is not None and (problem := _host_problem(host)) is not None:
        return problem
    return next(filter(None, map(_part_problem, path.split("/"))), None)


def _part_problem(part: str) -> str | None:
    if not part:
        return "it has an empty path part ('//', or '/' at an end)"
    if _PATH_PART.fullmatch(part):
        return None
    if _PATH_PART.fullmatch(part.lower()):
        return f"the path part {part!r} has upper-case letters"
    odd = [c for c in part.lower() if not _PATH_CHARACTERS.fullmatch(c)]
    if odd:
        return f"the path part {part!r} has {odd[0]!r}, which no name may hold"
    return f"the path part {part!r} has a separator at an end or two in a row"


def _host_problem(host: str) -> str | None:
    ipv6 = host.startswith("[")
    split = host.index("]") + 1 if ipv6 and "]" in host else host.find(":") if not ipv6 else -1
    address, port = (
        (host, None) if split < 0 or split == len(host) else (host[:split], host[split:])
    )
    if port is not None:
        number = port.removeprefix(":")
        if not (port.startswith(":") and number.isascii() and number.isdigit()):
            return f"the registry port {number!r} of {host!r} is not a number from 1 to 65535"
        if not 0 < int(number) < 65536:
            return f"the registry port {number} of {host!r} is not a number from 1 to 65535"
    if not (_IPV6 if ipv6 else _HOST_NAME).fullmatch(address):
        return f"the registry host {address!r} is not a host name or IP address"
    return None
