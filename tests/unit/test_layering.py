"""The package's layout, held by its import graph (read with `ast`; nothing is imported).

- Dependencies run one way: the entry point -> cli -> the stages in pipeline order (a stage may
  import an earlier stage, never a later one) -> the edges (knowledge, engine) -> the leaf
  modules at the top of `builder/`. Imports inside functions and under TYPE_CHECKING count.
- No import cycles, lazy imports included.
- No alias re-exports: a name is used from the module that defines it.
- `reprobuild run`'s way to the container's start keeps to the standard library (see
  builder/run/__init__.py for the rule; run/test_launch.py checks a real interpreter's imports).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "builder"
LEAVES = {"__init__", "errors", "layout", "reference", "compat", "files", "tarstream", "snapshots"}
LEAVES |= {"source", "codeset", "wheelinstall", "scratch", "shapes"}
# Lowest first: a room may import the rooms before it and the leaves, never one after it.
ROOMS = (
    "engine",
    "knowledge",
    "spec",
    "resolve",
    "lock",
    "render",
    "build",
    "smoke",
    "check",
    "run",
    "publish",
    "cli",
    "launch",
    "__main__",
)
# The modules on `reprobuild run`'s way to the container's start, and the imports none of them
# may make at module level: each costs a measurable share of a 0.3 s run.
RUN_PATH = {
    "builder",
    "builder.launch",
    "builder.errors",
    "builder.layout",
    "builder.snapshots",
    "builder.cli",
    "builder.cli.run_report",
    "builder.run",
    "builder.run.args",
    "builder.run.run",
    "builder.engine",
    "builder.engine.common",
    "builder.engine.wire",
    "builder.build",
    "builder.build.recordfile",
    "builder.shapes",
}
HEAVY = {"click", "docker", "requests", "rich", "pynvml", "dataclasses", "pathlib", "typing"}


@dataclass(frozen=True)
class Import:
    target: str  # a module of builder, or any other module's top-level name
    module_level: bool  # executed on import (not in a function, not under TYPE_CHECKING)
    line: int


def module_names() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = module_names()


def _imports(tree: ast.AST, module_level: bool = True) -> Iterator[Import]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from _imports(node, module_level=False)
        elif isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for statement in node.body:
                yield from _imports(ast.Module([statement], []), module_level=False)
            for statement in node.orelse:
                yield from _imports(ast.Module([statement], []), module_level)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(_target(alias.name), module_level, node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                yield Import(_target(f"{node.module}.{alias.name}"), module_level, node.lineno)
        else:
            yield from _imports(node, module_level)


def _target(dotted: str) -> str:
    """The builder module an import names (a name from a module counts as that module), or
    another module's top-level name."""
    top = dotted.split(".", maxsplit=1)[0]
    if top != "builder":
        return top
    while dotted not in MODULES:
        dotted = dotted.rsplit(".", 1)[0]
    return dotted


IMPORTS = {name: list(_imports(ast.parse(path.read_text()))) for name, path in MODULES.items()}


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def allowed(importer: str, imported: str) -> bool:
    here, there = room(importer), room(imported)
    if here == there:
        return True
    if there in LEAVES:
        return True
    return here not in LEAVES and ROOMS.index(there) < ROOMS.index(here)


def test_every_module_lives_in_a_known_room() -> None:
    unknown = sorted(name for name in MODULES if room(name) not in {*LEAVES, *ROOMS})
    assert unknown == [], "a new top-level module or package: add it to LEAVES or ROOMS"


def test_dependencies_run_one_way() -> None:
    wrong = [
        f"{importer}:{item.line} imports {item.target}"
        for importer, items in IMPORTS.items()
        for item in items
        if item.target in MODULES and not allowed(importer, item.target)
    ]
    assert wrong == [], "imports against the pipeline's order (ROOMS in this test):\n" + "\n".join(
        wrong
    )


def test_the_order_check_can_fail() -> None:
    assert allowed("builder.build.build", "builder.render.plan")
    assert not allowed("builder.render.plan", "builder.build.build")
    assert not allowed("builder.engine.sdk", "builder.lock.model")
    assert not allowed("builder.files", "builder.engine.sdk")  # a leaf imports no room
    assert allowed("builder.files", "builder.errors")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for after in sorted(graph.get(node, ())):
            if state.get(after) == 1:
                found.append([*path[path.index(after) :], after])
            elif after not in state:
                visit(after)
        path.pop()
        state[node] = 2

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph)))
    try:
        for node in sorted(graph):
            if node not in state:
                visit(node)
    finally:
        sys.setrecursionlimit(limit)
    return found


def test_module_level_means_what_runs_as_the_module_loads() -> None:
    source = (
        "import a\nif TYPE_CHECKING:\n    import b\nelse:\n    import c\n"
        "if not TYPE_CHECKING:\n    import d\nclass K:\n    import e\n"
        "def f() -> None:\n    import g\n"
    )
    found = {item.target: item.module_level for item in _imports(ast.parse(source))}
    assert found == {"a": True, "b": False, "c": True, "d": True, "e": True, "g": False}


def test_only_the_cli_imports_by_name_at_run_time() -> None:
    """A module imported from a string is an edge the graph above cannot see: only the group of
    verbs does so (builder/cli/main.py, its own room's modules)."""
    dynamic = sorted(
        name
        for name, path in MODULES.items()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and ast.unparse(node.func) in ("importlib.import_module", "import_module", "__import__")
    )
    assert dynamic == ["builder.cli.main"]


def test_no_import_cycles_lazy_imports_included() -> None:
    graph = {
        name: {i.target for i in items if i.target in MODULES and i.target != name}
        for name, items in IMPORTS.items()
    }
    assert cycles(graph) == []
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def alias_re_exports(source: str) -> list[str]:
    """Module-level `NAME = other.NAME` (or a tuple of them), and `NAME = Imported`, where the
    right side comes from another builder module."""
    tree = ast.parse(source)
    from_builder: set[str] = set()  # names bound by imports from builder
    found = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("builder"):
            from_builder.update(alias.asname or alias.name for alias in node.names)
            found += [
                f"line {node.lineno}: {ast.unparse(node)}"
                for alias in node.names
                if alias.asname == alias.name  # the explicit re-export idiom
            ]
    for node in tree.body:
        if not isinstance(node, ast.Assign | ast.AnnAssign) or node.value is None:
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        unpacked = any(isinstance(target, ast.Tuple) for target in targets)
        values = node.value.elts if unpacked and isinstance(node.value, ast.Tuple) else [node.value]
        if any(_from_builder(value, from_builder) for value in values):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def _from_builder(value: ast.expr, names: set[str]) -> bool:
    """Whether `value` is a name imported from builder, or an attribute of one."""
    while isinstance(value, ast.Attribute):
        value = value.value
    return isinstance(value, ast.Name) and value.id in names


def test_no_alias_re_exports() -> None:
    found = [
        f"{name} {problem}"
        for name, path in MODULES.items()
        for problem in alias_re_exports(path.read_text())
    ]
    assert found == [], "use these names from the module that defines them:\n" + "\n".join(found)
    sample = (
        "from builder import layout\nfrom builder.x import Y\nfrom builder.z import W as W\n"
        "A = layout.A\nB, C = Y, 1\nD = (layout.A, layout.B)\nE = layout.A + 1\n"
    )
    assert alias_re_exports(sample) == [
        "line 3: from builder.z import W as W",
        "line 4: A = layout.A",
        "line 5: B, C = (Y, 1)",
    ]


def module_level_closure(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += [i.target for i in IMPORTS[name] if i.module_level and i.target in MODULES]
        todo += [package for package in _packages_of(name) if package not in seen]
    return seen


def _packages_of(name: str) -> list[str]:
    """The packages Python imports before a module: builder, builder.run, ..."""
    parts = name.split(".")
    return [".".join(parts[:count]) for count in range(1, len(parts))]


@pytest.mark.parametrize("start", ["builder.launch", "builder.cli.run_report", "builder.run.run"])
def test_the_way_to_the_start_keeps_to_the_standard_library(start: str) -> None:
    closure = module_level_closure(start)
    assert closure <= RUN_PATH, f"{start} now imports {sorted(closure - RUN_PATH)} at start"
    heavy = sorted(
        f"{name}:{item.line} {item.target}"
        for name in closure
        for item in IMPORTS[name]
        if item.module_level and item.target in HEAVY
    )
    assert heavy == []


def test_subpackages_hold_only_their_role() -> None:
    """Each room's __init__ says what the room is, in its first line, and runs nothing (the
    run path imports several of them). `knowledge` is its own model and loader; `smoke` the
    in-image payload, copied into every image as it is."""
    for path in sorted(PACKAGE.glob("*/__init__.py")):
        tree = ast.parse(path.read_text())
        docstring = ast.get_docstring(tree)
        assert docstring and docstring.splitlines()[0].endswith("."), path
        if path.parent.name not in ("knowledge", "smoke"):
            assert len(tree.body) == 1, f"{path} should hold its docstring only"
