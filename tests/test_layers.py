"""Imports go down the layers: the import graph of t2t_jax, function-level imports included, has no cycle, and the
reusable model and decoding packages import no training, data or serving code."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1] / "t2t_jax"


def _modules() -> dict[str, pathlib.Path]:
    names = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            lines.update(range(node.lineno, node.end_lineno + 1))
    return lines


def import_graph() -> dict[str, set[str]]:
    """module -> the t2t_jax modules it imports anywhere in its code (not for type checking only)."""
    modules, graph = _modules(), {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        skip, edges = _type_checking_lines(tree), set()
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            if isinstance(node, ast.Import):
                edges.update(alias.name for alias in node.names if alias.name in modules)
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("t2t_jax"):
                for alias in node.names:  # `from t2t_jax import sharding` names a module, `from t2t_jax.x import f` not
                    module = f"{node.module}.{alias.name}"
                    edges.add(module if module in modules else node.module)
        graph[name] = {edge for edge in edges if edge != name and not name.startswith(edge + ".")}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    state, stack = {}, []

    def visit(node: str) -> list[str]:
        state[node] = "open"
        stack.append(node)
        for after in sorted(graph.get(node, ())):
            if state.get(after) == "open":
                return stack[stack.index(after):] + [after]
            if after not in state and (found := visit(after)):
                return found
        stack.pop()
        state[node] = "done"
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_the_import_graph_has_no_cycle():
    assert _cycle(import_graph()) == []


def test_the_reusable_packages_import_only_each_other():
    graph = import_graph()
    allowed = ("t2t_jax.model", "t2t_jax.decoding")
    for name, edges in graph.items():
        if name.startswith(allowed):
            assert all(edge.startswith(allowed) for edge in edges), (name, edges)


def test_the_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
