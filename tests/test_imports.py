"""The package's import graph (every import, the ones inside functions included): no cycles
between modules, the report layer never reaches into the CLI, protocol.py imports no report code."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mtl_bench"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """mtl_bench modules ``path`` imports anywhere in its body (``from .x import y`` -> ``x.y`` when
    ``y`` is a module, else ``x``)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, known) for name, path in known.items()}


def reaches(edges, start) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_graph_is_read():
    edges = graph()
    assert "mtl_bench.report.tables" in edges["mtl_bench.report.pipeline"]
    assert "mtl_bench.paths" in edges["mtl_bench.cli"]


def test_no_module_imports_itself_back():
    """A cycle through a package's __init__ (which re-exports its modules) does not count; a cycle
    between two modules does, lazy imports included."""
    edges = {name: {m for m in targets if not PACKAGE.joinpath(*m.split(".")[1:], "__init__.py").exists()}
             for name, targets in graph().items()}
    cycles = sorted(name for name in edges if name in reaches(edges, name))
    assert cycles == []


@pytest.mark.parametrize("layer", ["mtl_bench.report", "mtl_bench.protocol", "mtl_bench.train",
                                   "mtl_bench.strategies"])
def test_lower_layers_never_import_the_cli(layer):
    edges = graph()
    for name, targets in edges.items():
        if name == layer or name.startswith(layer + "."):
            assert "mtl_bench.cli" not in targets, name


def test_protocol_imports_no_report_code():
    assert not {m for m in reaches(graph(), "mtl_bench.protocol") if m.startswith("mtl_bench.report")}
