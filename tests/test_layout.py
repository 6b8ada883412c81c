"""The engine's layout: no import circle, no import running up a floor, nothing imports flows/.

Every import of a `blinaetl` module is counted, at module level and inside functions alike: a
late import hides a dependency from the interpreter, not from the design
(`docs/architecture.md`, "Layout").
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "blinaetl"

# top floor first; a module may import its own floor and the floors below it
FLOORS: list[tuple[str, ...]] = [
    ("blinaetl.cli",),
    ("blinaetl.pipeline",),
    ("blinaetl.reports",),
    ("blinaetl.ingest",),
    ("blinaetl.warehouse", "blinaetl.analytics"),
    ("blinaetl.text", "blinaetl.config", "blinaetl.validate"),
    ("blinaetl.synth", "blinaetl.privacy", "blinaetl.resources", "blinaetl.engines"),
    ("blinaetl",),
]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Every `blinaetl`/`flows` module that `path` imports, resolved to a known module name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # `from blinaetl.warehouse import models` imports the module blinaetl.warehouse.models
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    found = set()
    for name in names:
        if name.split(".")[0] == "flows":
            found.add("flows")
        elif name in known:
            found.add(name)
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    files = [p for p in package.rglob("*.py") if "_resources" not in p.parts]
    known = {module_name(p, package.parent) for p in files}
    graph = {}
    for p in files:
        me = module_name(p, package.parent)
        graph[me] = {m for m in imported_modules(p, known) if m != me}
    return graph


def floor_of(module: str) -> int:
    best = None
    for index, prefixes in enumerate(FLOORS):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            # the longest matching prefix decides (blinaetl.text before blinaetl)
            if matches and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    assert best is not None, f"{module} is on no floor of FLOORS; add it there"
    return best[0]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_circle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_nothing_imports_upward() -> None:
    upward = [
        f"{me} (floor {floor_of(me)}) imports {dep} (floor {floor_of(dep)})"
        for me, deps in import_graph().items()
        for dep in deps
        if dep != "flows" and floor_of(dep) < floor_of(me)
    ]
    assert upward == []


def test_engine_does_not_import_flows() -> None:
    offenders = sorted(me for me, deps in import_graph().items() if "flows" in deps)
    assert offenders == []


def test_every_module_is_on_a_floor() -> None:
    for module in import_graph():
        floor_of(module)


# the checker itself, on small trees: a circle and an upward import must be found


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_checker_finds_a_circle_through_a_late_import(tmp_path: Path) -> None:
    root = _write(
        tmp_path,
        {
            "blinaetl/__init__.py": "",
            "blinaetl/pipeline.py": "from blinaetl.reports import steward\n",
            "blinaetl/reports/__init__.py": "",
            "blinaetl/reports/steward.py": "def f():\n    from blinaetl.pipeline import x\n",
        },
    )
    graph = import_graph(root / "blinaetl")
    assert find_cycle(graph) in (
        ["blinaetl.pipeline", "blinaetl.reports.steward", "blinaetl.pipeline"],
        ["blinaetl.reports.steward", "blinaetl.pipeline", "blinaetl.reports.steward"],
    )


def test_checker_finds_an_upward_import_and_a_flows_import(tmp_path: Path) -> None:
    root = _write(
        tmp_path,
        {
            "blinaetl/__init__.py": "",
            "blinaetl/warehouse/__init__.py": "",
            "blinaetl/warehouse/models.py": "import blinaetl.pipeline\nimport flows.pipeline\n",
            "blinaetl/pipeline.py": "",
        },
    )
    graph = import_graph(root / "blinaetl")
    deps = graph["blinaetl.warehouse.models"]
    assert deps == {"blinaetl.pipeline", "flows"}
    assert floor_of("blinaetl.pipeline") < floor_of("blinaetl.warehouse.models")


@pytest.mark.parametrize(
    ("module", "floor"),
    [("blinaetl.text", 5), ("blinaetl.reports.gx", 2), ("blinaetl", 7), ("blinaetl.cli", 0)],
)
def test_floor_of_takes_the_longest_prefix(module: str, floor: int) -> None:
    assert floor_of(module) == floor
