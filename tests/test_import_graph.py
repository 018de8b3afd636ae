"""The package's layers point down: no import cycles (lazy imports inside functions included), and
the runtime (what runs while music is made) imports neither training, evaluation nor the corpus."""
import ast
from pathlib import Path

import lmdm

ROOT = Path(lmdm.__file__).parent
# lower layers than these packages: the runtime may import them, never the reverse
NOT_FOR_RUNTIME = ("lmdm.train", "lmdm.eval", "lmdm.data")
RUNTIME = ("lmdm.nn", "lmdm.models", "lmdm.audio", "lmdm.config", "lmdm.errors", "lmdm.engine", "lmdm.checkpoints")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every lmdm module `path` imports, at any depth of its code (lazy imports count)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("lmdm")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("lmdm"):
                found.add(target)
                found |= {f"{target}.{a.name}" for a in node.names}   # `from .x import y` may import module y
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        targets = set()
        for t in imports_of(path):
            while t and t not in modules:   # `from .x import name` -> module x
                t = t.rpartition(".")[0]
            if t and t != name and not name.startswith(t + ".") and t != "lmdm":
                targets.add(t)
        edges[name] = targets
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == "open":
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        state[n] = "done"
        stack.pop()
        return None

    for n in sorted(edges):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_the_graph_reads_lazy_imports():
    edges = graph()
    assert "lmdm.engine.stream" in edges["lmdm.engine.model"]   # imported inside LiveMusicModel.stream
    assert "lmdm.models.dit" in edges["lmdm.engine.cache"]


def test_no_import_cycles():
    cycle = find_cycle(graph())
    assert cycle is None, " -> ".join(cycle)


def test_a_cycle_would_be_found():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_runtime_imports_neither_train_eval_nor_data():
    edges = graph()
    bad = sorted(f"{m} -> {t}" for m, ts in edges.items() if m.startswith(RUNTIME)
                 for t in ts if t.startswith(NOT_FOR_RUNTIME))
    assert not bad, bad
