"""scheduling's modules import one another without a circle (type-only imports count too)."""

import ast

from tests.conftest import ROOT


def _imports(path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "scheduling":
                found.update(f"scheduling.{alias.name}" for alias in node.names)
            elif node.module.startswith("scheduling."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("scheduling."))
    return found


def test_scheduling_modules_form_no_import_circle():
    graph = {f"scheduling.{path.stem}": _imports(path) for path in (ROOT / "scheduling").glob("*.py")}
    visiting, done = set(), set()

    def visit(module: str, trail: list[str]) -> None:
        if module in done or module not in graph:
            return
        assert module not in visiting, " -> ".join([*trail[trail.index(module) :], module])
        visiting.add(module)
        for target in graph[module]:
            visit(target, [*trail, module])
        visiting.discard(module)
        done.add(module)

    for module in graph:
        visit(module, [])
