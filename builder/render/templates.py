"""BuildPlan -> text: the Dockerfile and the Apptainer definition from Jinja2 templates.

Templates come from the top-level `templates/` (shipped inside the wheel); a project overrides
any of them with a file of the same name in `reprobuild-templates/`. Rendering is strict: an
undefined name in a template is an error, never an empty string.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
from pathlib import Path

import jinja2

from builder import __version__, files
from builder.errors import ReprobuildError
from builder.render import plan

OVERRIDE_FOLDER = "reprobuild-templates"
TEMPLATES = ("Dockerfile.j2", "apptainer.def.j2")
DEFINITION = "reprobuild.def"
OUTPUTS = ("Dockerfile", DEFINITION)
_PLAIN = re.compile(r"^[A-Za-z0-9_./:,=@+-]*$")


class RenderError(ReprobuildError):
    """A template is missing or broken."""


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


def render(
    build_plan: plan.BuildPlan,
    lock_digest: str,
    project: Path | None,
    from_image: str | None = None,
) -> dict[str, str]:
    """{"Dockerfile": ..., "reprobuild.def": ...} for one plan."""
    values = {
        "plan": build_plan,
        "version": __version__,
        "lock_digest": lock_digest,
        "from_image": from_image,
        "venv": plan.VENV,
        "home": plan.HOME,
        "code": plan.CODE,
        "user": plan.USER,
        "uid": plan.UID,
        "context": plan.CONTEXT,
        "wheels": plan.WHEELS,
        "staging": plan.STAGING,
        "image_tree": plan.IMAGE_TREE,
        "code_tree": plan.CODE_TREE,
        "deps_stage": plan.DEPS_STAGE,
    }
    env = environment(project)
    outputs = {}
    for template, output in zip(TEMPLATES, OUTPUTS, strict=True):
        try:
            outputs[output] = env.get_template(template).render(values)
        except jinja2.TemplateNotFound:
            missing = f"the template {template} is missing from {packaged_templates()}"
            raise RenderError(f"{missing}; reinstall reprobuild.") from None
        except jinja2.TemplateError as error:
            raise RenderError(
                f"the template {template} failed to render ({type(error).__name__}: {error}). "
                f"If it is an override in {OVERRIDE_FOLDER}/, fix or remove it."
            ) from None
    return outputs


def write_definition(
    context_dir: Path,
    build_plan: plan.BuildPlan,
    lock_digest: str,
    project: Path,
    from_image: str | None,
) -> Path:
    """Rewrite the context's Apptainer definition (after a push: From the pushed image)."""
    text = render(build_plan, lock_digest, project, from_image)[DEFINITION]
    path = context_dir / DEFINITION
    files.write_atomic(path, text)
    return path
