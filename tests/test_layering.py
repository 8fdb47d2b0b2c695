"""The house's rooms: verdicts are decided in core.assess only, and core modules import no circle."""

from __future__ import annotations

import ast
import re

from tests.conftest import ROOT

SRC = ROOT / "src" / "vramcalc"


def _module(path) -> str:  # type: ignore[no-untyped-def]
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _runtime_imports(path) -> set[str]:  # type: ignore[no-untyped-def]
    """vramcalc modules imported at module level (not under TYPE_CHECKING, not inside functions)."""
    out: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vramcalc"):
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("vramcalc")}
    return out


def test_no_import_cycle_in_the_core() -> None:
    """Every module-level import edge among vramcalc modules, searched for a cycle (DFS)."""
    graph = {_module(p): _runtime_imports(p) for p in SRC.rglob("*.py")}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join([*stack, node, nxt])
            if nxt not in state:
                visit(nxt, [*stack, node])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert "vramcalc.core.types" in graph["vramcalc.core.estimate"]
    assert "vramcalc.core.estimate" not in graph["vramcalc.core.engines.base"]


def test_verdicts_are_decided_in_assess_only() -> None:
    """No module outside core.assess assigns a verdict word, and render/cli never compare a byte
    count with a card's memory (the second place that decides a verdict, style.md)."""
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        rel = path.relative_to(SRC).as_posix()
        if rel in ("core/assess.py", "render/assessment.py"):
            continue  # the decision, and the one table of words that shows it
        assert not re.search(r"verdict\s*=\s*\"", text), rel
        if rel.startswith("render/") or rel == "cli.py":
            assert not re.search(r"(total|per_gpu|demand)_bytes\s*<=?\s*\w*usable", text), rel
