"""The harness's import graph, imports inside functions included: no cycle, and no module takes a private name
from another. Layers, bottom up: specs and store, planning (runner), executors, drivers (orchestrate, tuning),
the CLI; nothing imports upward."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules() -> dict[str, Path]:
    mods = {}
    for path in (ROOT / "bench").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


def _edges(mods: dict[str, Path]) -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    """Module → the bench modules it imports anywhere in its body; and every (importer, module, private name)."""
    graph: dict[str, set[str]] = {m: set() for m in mods}
    private = []
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:
                    target = f"{source}.{alias.name}" if f"{source}.{alias.name}" in mods else source
                    if target in mods and target != name:
                        graph[name].add(target)
                        if alias.name.startswith("_") and not alias.name.startswith("__"):
                            private.append((name, target, alias.name))
            elif isinstance(node, ast.Import):
                graph[name] |= {alias.name for alias in node.names if alias.name in mods and alias.name != name}
    return graph, private


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, or None (depth-first search with colours)."""
    colour, stack = dict.fromkeys(graph, 0), []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if colour[nxt] == 1:
                return stack[stack.index(nxt):] + [nxt]
            if colour[nxt] == 0 and (found := visit(nxt)):
                return found
        colour[node] = 2
        stack.pop()
        return None

    for start in sorted(graph):
        if colour[start] == 0 and (found := visit(start)):
            return found
    return None


def test_the_import_graph_has_no_cycle():
    graph, _ = _edges(_modules())
    assert "bench.runner" in graph["bench.orchestrate"]  # the walk sees imports inside functions
    cycle = _cycle(graph)
    assert cycle is None, " → ".join(cycle)


def test_no_module_imports_a_private_name_of_another():
    _, private = _edges(_modules())
    assert not private, private


def test_the_cycle_finder_finds_a_planted_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_file_over_450_lines_and_no_function_over_80():
    """The sizes the architecture review set (a file you can read, a function that does one thing)."""
    long_files, long_functions = [], []
    for package in ("bench", "baselines", "methods"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text()
            if text.count("\n") > 450:
                long_files.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                    long_functions.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: "
                                          f"{node.end_lineno - node.lineno + 1} lines")
    assert not long_files and not long_functions, long_files + long_functions
