"""Imports run one way: no module-level import cycle, and the light modules load no TensorFlow.

The static tests read every module's module-level import statements (function-level
imports are deliberate lazy delegates, such as ``Policy.apply`` importing ``augment``).
"""
import ast
import functools
import importlib.util
import pkgutil
import subprocess
import sys

import autoaug

# Modules that must stay TensorFlow-free: policies, configs and search spaces are plain
# data, and `autoaug --help` answers at once.
LIGHT = ["autoaug", "autoaug.config", "autoaug.opspec", "autoaug.policy", "autoaug.search.space",
         "autoaug.cli"]
HEAVY = ("tensorflow", "keras")


def _top_level(nodes):
    """The statements among `nodes` that run when the module is imported: not function
    bodies, not ``if TYPE_CHECKING:`` blocks."""
    for node in nodes:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from _top_level(node.orelse)
            continue
        yield node
        yield from _top_level(ast.iter_child_nodes(node))


def _imports(name: str, path: str, modules) -> set[str]:
    """Every module that `name` imports at module level, relative imports resolved."""
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    found = set()
    for node in _top_level(tree.body):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
            # `from pkg import name` imports the submodule pkg.name if there is one, else pkg
            found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names)
    return found - {name}


@functools.cache
def _package() -> tuple[dict[str, set[str]], set[str]]:
    """(autoaug module -> the autoaug modules it imports, the modules that import TensorFlow/Keras)."""
    names = ["autoaug"] + [m.name for m in pkgutil.walk_packages(autoaug.__path__, "autoaug.")]
    modules = {name: importlib.util.find_spec(name).origin for name in names}
    imports = {name: _imports(name, path, modules) for name, path in modules.items()}
    heavy = {name for name, found in imports.items() if any(m.split(".")[0] in HEAVY for m in found)}
    return {name: found & modules.keys() for name, found in imports.items()}, heavy


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _chain_to(start: str, graph: dict[str, set[str]], targets: set[str]) -> list[str] | None:
    """The shortest import chain from `start` to one of `targets`, or None. Importing a
    submodule runs its parent packages first, so they count as imported."""
    prev = {start: None}
    queue = [start]
    while queue:
        node = queue.pop(0)
        if node in targets:
            chain = []
            while node is not None:
                chain.append(node)
                node = prev[node]
            return chain[::-1]
        parents = {node.rsplit(".", k)[0] for k in range(1, node.count(".") + 1)}
        for nxt in sorted(graph[node] | parents):
            if nxt not in prev:
                prev[nxt] = node
                queue.append(nxt)
    return None


def test_module_level_imports_have_no_cycle():
    graph, _ = _package()
    assert {"autoaug.ops", "autoaug.augment", "autoaug.search.space"} <= graph.keys()
    assert {"autoaug.ops", "autoaug.policy"} <= graph["autoaug.augment"]  # relative imports resolved
    cycle = _cycle(graph)
    assert cycle is None, "module-level import cycle: " + " -> ".join(cycle)


def test_light_modules_import_no_tensorflow_module():
    graph, heavy = _package()
    assert {"autoaug.ops", "autoaug.augment", "autoaug.train"} <= heavy
    for name in LIGHT:
        chain = _chain_to(name, graph, heavy)
        assert chain is None, f"{' -> '.join(chain)} imports TensorFlow/Keras at module level"


def test_graph_helpers():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    graph = {"p": set(), "p.a": {"p.b"}, "p.b": set(), "p.c": set(), "q": {"p.c"}}
    assert _chain_to("p.a", graph, {"p.b"}) == ["p.a", "p.b"]
    assert _chain_to("q", graph, {"p"}) == ["q", "p.c", "p"]  # a submodule runs its package
    assert _chain_to("p", graph, {"p.b"}) is None


def test_policy_config_space_and_cli_parser_load_no_tensorflow():
    code = ("import sys, autoaug.config, autoaug.policy, autoaug.search.space, autoaug.cli\n"
            "autoaug.cli.build_parser()\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"TensorFlow or Keras imported: {out.stdout.strip()[:300]}"
