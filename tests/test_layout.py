"""The shape of the house (issue 15): packages by concern, imports one way, small modules, thin pages.

These read the source with :mod:`ast`; nothing is imported, so they cost
milliseconds and say exactly which file breaks which rule.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PORTAL = ROOT / "portal"
PAGES = ROOT / "app_pages"
MAX_MODULE_LINES = 400
MAX_PAGE_LINES = 80
GENERATED = ("_pb2.py", "_pb2_grpc.py")

# The data path of DESIGN.md, bottom to top: a package may import its own layer and those below.
LAYERS = {
    "errors": 0, "config": 0, "services": 0, "figures": 0,
    "storage": 1, "ingest": 1,
    "serving": 2, "demo": 2,
    "compress": 3, "explain": 3, "monitor": 3,
    "core": 4,
    "views": 5,
    "api": 6, "cli": 6, "ui": 6,
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PORTAL.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that runs (those under ``if TYPE_CHECKING:`` only feed the type checker)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        else:
            yield from _imports(node)


def _resolve(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> list[tuple[str, str | None]]:
    """(imported module, imported name or None) pairs, absolute, for portal targets only."""
    if isinstance(node, ast.Import):
        return [(a.name, None) for a in node.names if a.name.split(".")[0] == "portal"]
    if node.level:
        base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target.split(".")[0] != "portal":
        return []
    out = []
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        out.append((sub, None) if sub in MODULES else (target, alias.name))
    return out


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in MODULES.items():
        for node in _imports(ast.parse(path.read_text())):
            for target, _ in _resolve(module, path, node):
                if target in MODULES and target != module:
                    graph[module].add(target)
    return graph


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_module_is_over_400_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in MODULES.values()
            if not p.name.endswith(GENERATED) and (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_no_import_cycles_between_modules() -> None:
    graph = _graph()
    cycles, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if _is_package_init(nxt) and nxt in (node.rsplit(".", 1)[0],):
                continue  # a module importing its own package's __init__ for a re-export is not a loop of logic
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(MODULES):
        if module not in state:
            visit(module)
    assert cycles == []


def _is_package_init(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def test_packages_import_down_the_data_path_only() -> None:
    upward = []
    for module, targets in _graph().items():
        source = _package(module)
        if source not in LAYERS:
            continue
        for target in targets:
            dest = _package(target)
            if dest in LAYERS and LAYERS[dest] > LAYERS[source]:
                upward.append(f"{module} -> {target}")
    assert sorted(upward) == []


def test_every_package_says_what_it_owns() -> None:
    silent = []
    for module, path in MODULES.items():
        if path.name == "__init__.py" and module != "portal":
            doc = ast.get_docstring(ast.parse(path.read_text())) or ""
            if len(doc.split()) < 12:
                silent.append(module)
    assert silent == []


def test_no_private_name_is_imported_from_another_module() -> None:
    crossing = []
    for module, path in MODULES.items():
        for node in _imports(ast.parse(path.read_text())):
            for target, name in _resolve(module, path, node):
                leaf = name if name is not None else target.rsplit(".", 1)[-1]
                if leaf.startswith("_") and not leaf.startswith("__") and target != module:
                    if name is None and leaf == "_worker":
                        continue  # a sandbox child's entry module, run with ``python -m``
                    crossing.append(f"{module}: {target}{'.' + name if name else ''}")
    assert crossing == []


def test_only_portal_ui_imports_streamlit() -> None:
    offenders = []
    for module, path in MODULES.items():
        if _package(module) == "ui":
            continue
        for node in _imports(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if any(n.split(".")[0] == "streamlit" for n in names):
                offenders.append(module)
    assert offenders == []


def test_no_parameter_is_a_portal_of_any_type() -> None:
    loose = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.arg) and node.arg == "portal":
                annotation = ast.unparse(node.annotation) if node.annotation else "(none)"
                if annotation in ("Any", "(none)", "object"):
                    loose.append(f"{module}:{node.lineno} portal: {annotation}")
    assert loose == []


@pytest.mark.parametrize("page", sorted(p.name for p in PAGES.glob("*.py")))
def test_pages_are_thin(page: str) -> None:
    path = PAGES / page
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_PAGE_LINES, f"{page} has {lines} lines"
    portal_imports = set()
    for node in _imports(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("portal"):
            portal_imports.add(node.module)
        elif isinstance(node, ast.Import):
            portal_imports |= {a.name for a in node.names if a.name.startswith("portal")}
    assert all(m.startswith("portal.ui") for m in portal_imports), f"{page} imports {sorted(portal_imports)}"
    assert len({m for m in portal_imports if m != "portal.ui"}) <= 1, f"{page} imports {sorted(portal_imports)}"
