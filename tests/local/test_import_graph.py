"""The local stack's modules import each other in one direction: no module
of local/ (the Stripe sandbox's included) reaches itself again through its
imports, those made only for type checking included."""
import ast
from pathlib import Path
from typing import Dict, List, Optional, Set

ROOT = Path(__file__).resolve().parents[2]


def import_graph(package: str) -> Dict[str, Set[str]]:
    graph: Dict[str, Set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        if module.endswith(".__init__"):
            # A package's __init__ re-exports its parts: it is not one of them.
            continue
        graph[module] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            graph[module].update(name for name in names if name.startswith(package + "."))
    return graph


def a_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    done: Set[str] = set()

    def visit(module: str, path: List[str]) -> Optional[List[str]]:
        for imported in sorted(graph.get(module, ())):
            if imported in path:
                return path[path.index(imported):] + [imported]
            if imported not in done:
                found = visit(imported, path + [imported])
                if found:
                    return found
        done.add(module)
        return None

    for module in sorted(graph):
        found = visit(module, [module])
        if found:
            return found
    return None


def test_no_module_of_the_local_stack_imports_itself_in_a_circle():
    graph = import_graph("local")
    assert "local.stripe_sandbox.core" in graph and "local.stripe_sandbox.server" in graph
    assert a_cycle(graph) is None, " → ".join(a_cycle(graph))


def test_a_circle_is_found():
    assert a_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert a_cycle({"a": {"b"}, "b": set()}) is None
