"""BuildPlan -> text: the Dockerfile and the Apptainer definition from Jinja2 templates.

Templates come from the top-level `templates/` (shipped inside the wheel); a project overrides
any of them with a file of the same name in `reprobuild-templates/`. Rendering is strict: an
undefined name in a template is an error, never an empty string.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import jinja2

from builder import __version__, files, layout
from builder.errors import RenderError
from builder.render import plan

OVERRIDE_FOLDER = "reprobuild-templates"
TEMPLATES = ("Dockerfile.j2", "apptainer.def.j2")
DEFINITION = "reprobuild.def"
OUTPUTS = ("Dockerfile", DEFINITION)
# The two parts of Dockerfile.j2 the build takes apart (see render_dockerfile).
DOCKERFILE_BLOCKS = ("dependencies", "image")
# The packaged template's blocks around the Python layers (see DockerfileStages).
PACKAGED_BLOCKS = ("system", "finish")
_PLAIN = re.compile(r"^[A-Za-z0-9_./:,=@+-]*$")


def packaged_templates() -> Path:
    """Inside the wheel: builder/templates; in a source tree: the top-level templates/."""
    inside = Path(__file__).parents[1] / "templates"
    return inside if inside.is_dir() else Path(__file__).parents[2] / "templates"


def docker_quote(value: str) -> str:
    return value if value and _PLAIN.match(value) else json.dumps(value)


def docker_pairs(pairs: tuple[tuple[str, str], ...]) -> str:
    """KEY=value pairs of one ENV or LABEL instruction, one per continuation line."""
    return " \\\n    ".join(f"{key}={docker_quote(value)}" for key, value in pairs)


def docker_list(items: tuple[str, ...]) -> str:
    """The JSON form of COPY: one source per continuation line, the destination last."""
    return "[" + ", \\\n    ".join(json.dumps(item) for item in items) + "]"


def docker_continue(command: str) -> str:
    return command.replace(" && ", " \\\n    && ")


class _TemplateCache(jinja2.FileSystemBytecodeCache):
    """Compiled templates kept between runs, keyed by each template's source checksum (an edited
    override is compiled again). A cache that cannot be written is skipped, not an error."""

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)


def _template_cache() -> jinja2.BytecodeCache | None:
    folder = files.cache_root() / "templates"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return _TemplateCache(str(folder))


def environment(project: Path | None) -> jinja2.Environment:
    folders = [packaged_templates()]
    if project is not None and (project / OVERRIDE_FOLDER).is_dir():
        folders.insert(0, project / OVERRIDE_FOLDER)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(folder) for folder in folders]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        bytecode_cache=_template_cache(),
    )
    env.filters.update(
        docker_quote=docker_quote,
        docker_pairs=docker_pairs,
        docker_continue=docker_continue,
        docker_list=docker_list,
        shell_quote=shlex.quote,
    )
    return env


@dataclass(frozen=True)
class DockerfileStages:
    """The rendered Dockerfile as `reprobuild build` builds it, in two passes: the dependencies
    (every stage up to the final `FROM deps`, built once per lock and kept as an image), then
    the final stage on that image, from a context without the wheels."""

    dependencies: str  # the template's `dependencies` block: the text before `FROM deps`
    image: str  # its `image` block: the final stage's instructions after `FROM deps`
    # The packaged template's `system` block (the stage the Python layers go on) and `finish`
    # block (the deps stage's steps after them): `reprobuild build` builds these with the
    # engine and writes the Python layers between them itself. None for an override.
    system: str | None = None
    finish: str | None = None

    @property
    def trust_copies(self) -> bool:
        """The packaged template's final stage only copies files reprobuild wrote into the
        context (and sets the config), so the layers it copies need not be read back."""
        return self.system is not None

    @property
    def key(self) -> str:
        """Names the dependencies image: a pure function of the text that builds it (which
        names the lock digest and reprobuild's version)."""
        return hashlib.sha256(self.dependencies.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RenderedDockerfile:
    text: str
    stages: DockerfileStages | None  # None: a template override built in one pass


def _values(
    build_plan: plan.BuildPlan, lock_digest: str, from_image: str | None
) -> dict[str, object]:
    return {
        "plan": build_plan,
        "version": __version__,
        "lock_digest": lock_digest,
        "from_image": from_image,
        "venv": plan.VENV,
        "home": plan.HOME,
        "code": layout.CODE,
        "user": layout.USER,
        "uid": layout.UID,
        "context": plan.CONTEXT,
        "wheels": plan.WHEELS,
        "install": plan.INSTALL,
        "install_stage": plan.INSTALL_STAGE,
        "installer_script": plan.INSTALLER_SCRIPT,
        "install_plan": plan.INSTALL_PLAN,
        "layers": plan.LAYERS,
        "image_tree": plan.IMAGE_TREE,
        "code_tree": plan.CODE_TREE,
        "deps_stage": plan.DEPS_STAGE,
    }


def _template(env: jinja2.Environment, name: str) -> jinja2.Template:
    try:
        return env.get_template(name)
    except jinja2.TemplateNotFound:
        missing = f"the template {name} is missing from {packaged_templates()}"
        raise RenderError(f"{missing}; reinstall reprobuild.") from None
    except jinja2.TemplateError as error:
        raise _broken(name, error) from None


def _broken(name: str, error: jinja2.TemplateError) -> RenderError:
    return RenderError(
        f"the template {name} failed to render ({type(error).__name__}: {error}). "
        f"If it is an override in {OVERRIDE_FOLDER}/, fix or remove it."
    )


def _rendered(template: jinja2.Template, values: dict[str, object], block: str | None) -> str:
    """The whole template, or one of its blocks alone, with the same values."""
    try:
        if block is None:
            return template.render(values)
        return "".join(template.blocks[block](template.new_context(values)))
    except jinja2.TemplateError as error:
        raise _broken(str(template.name), error) from None


def _text(env: jinja2.Environment, name: str, values: dict[str, object]) -> str:
    return _rendered(_template(env, name), values, None)


def render_dockerfile(
    build_plan: plan.BuildPlan, lock_digest: str, project: Path | None
) -> RenderedDockerfile:
    """The Dockerfile, and its stages where the template keeps the two blocks the build needs:
    `dependencies`, then `FROM deps` and nothing else, then `image`. An override that does not
    keep them is built in one pass."""
    template = _template(environment(project), TEMPLATES[0])
    values = _values(build_plan, lock_digest, None)
    text = _rendered(template, values, None)
    if not set(DOCKERFILE_BLOCKS) <= set(template.blocks):
        return RenderedDockerfile(text, None)
    dependencies, image = (_rendered(template, values, block) for block in DOCKERFILE_BLOCKS)
    if text != f"{dependencies}FROM {plan.DEPS_STAGE}\n{image}":
        return RenderedDockerfile(text, None)
    packaged = Path(str(template.filename)).resolve().parent == packaged_templates().resolve()
    if not packaged:
        return RenderedDockerfile(text, DockerfileStages(dependencies, image))
    system, finish = (_rendered(template, values, block) for block in PACKAGED_BLOCKS)
    stages = DockerfileStages(dependencies, image, system=system, finish=finish)
    return RenderedDockerfile(text, stages)


def render_definition(
    build_plan: plan.BuildPlan, lock_digest: str, project: Path | None, from_image: str | None
) -> str:
    """The Apptainer definition: it bootstraps `from_image` (the pushed build) when given, else
    rebuilds from the base in %post."""
    values = _values(build_plan, lock_digest, from_image)
    return _text(environment(project), TEMPLATES[1], values)


def render(
    build_plan: plan.BuildPlan,
    lock_digest: str,
    project: Path | None,
    from_image: str | None = None,
) -> dict[str, str]:
    """{"Dockerfile": ..., "reprobuild.def": ...} for one plan: the texts only (the build takes
    the Dockerfile's stages from `render_dockerfile`)."""
    env = environment(project)
    return {
        output: _text(env, template, _values(build_plan, lock_digest, from_image))
        for template, output in zip(TEMPLATES, OUTPUTS, strict=True)
    }


def write_definition(
    context_dir: Path,
    build_plan: plan.BuildPlan,
    lock_digest: str,
    project: Path,
    from_image: str | None,
) -> Path:
    """Write the context's Apptainer definition (after a push: From the pushed image)."""
    path = context_dir / DEFINITION
    files.write_output(path, render_definition(build_plan, lock_digest, project, from_image))
    return path
