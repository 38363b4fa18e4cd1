"""The one-way rules of the package's layers, read from the imports (``ast``, no import runs).

archive -> manifest -> cache -> views -> encoder -> method -> trainer -> run folder -> budgets ->
probes -> report: each layer imports only layers below it, so a change has one place to go.
The rules and the layout are described in ``docs/layout.md``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "medcontrast"
# The commands: only these read the config; below them code receives plain arguments.
# train_loop is the pretraining entry point's loop, split off for length.
ENTRY_POINTS = {"cli", "demo", "pretrain", "train_loop", "evaluate"}


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


FILES = {_module(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(module: str) -> set[str]:
    """The package's modules that ``module`` imports, at the top or inside a function.
    ``from medcontrast import checkpoint`` names ``medcontrast.checkpoint``; ``from medcontrast
    import __version__`` names ``medcontrast`` itself, the package's face."""
    path = FILES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            out |= {f"{base}.{a.name}" if f"{base}.{a.name}" in FILES else base for a in node.names}
    return {m for m in out if m in FILES and m != module}


GRAPH = {m: _imports(m) for m in FILES}
MODULES = set(FILES)


def _within(module: str, *layers: str) -> bool:
    return any(
        module == f"medcontrast.{x}" or module.startswith(f"medcontrast.{x}.") for x in layers
    )


def _offending(modules: list[str], forbidden: tuple[str, ...]) -> list[str]:
    return [f"{m} imports {d}" for m in modules for d in sorted(GRAPH[m]) if _within(d, *forbidden)]


def test_the_graph_is_read():
    assert "medcontrast.data.manifest" in GRAPH["medcontrast.data.cache"]
    assert (
        "medcontrast.checkpoint" in GRAPH["medcontrast.runs"]
    )  # from medcontrast import checkpoint


@pytest.mark.parametrize("layer", ["data", "archive", "phantoms"])
def test_file_handling_imports_nothing_of_learning(layer):
    below = sorted(m for m in MODULES if _within(m, layer))
    forbidden = ("augment", "models", "methods", "evaluation", "config", "configs", "losses")
    assert below and _offending(below, forbidden) == []


def test_data_does_not_import_the_archive_reader_or_the_phantom_writer():
    data = sorted(m for m in MODULES if _within(m, "data"))
    assert _offending(data, ("archive", "phantoms")) == []


def test_only_entry_points_import_the_config():
    entry = {f"medcontrast.{e}" for e in ENTRY_POINTS}
    others = sorted(m for m in MODULES - entry if not _within(m, "config", "configs"))
    assert _offending(others, ("config",)) == []


def test_the_evaluation_library_imports_no_entry_point():
    evaluation = sorted(m for m in MODULES if _within(m, "evaluation"))
    assert _offending(evaluation, tuple(ENTRY_POINTS)) == []


def test_nothing_below_the_top_imports_the_package_face():
    assert [m for m in sorted(MODULES) if "medcontrast" in GRAPH[m]] == []


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A circle of the import graph as its path (depth-first search), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return [*stack[stack.index(n) :], n]
            if n not in state and (found := visit(n)):
                return found
        state[m] = 2
        stack.pop()
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_checker_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle():
    assert _cycle(GRAPH) is None
