"""The rules of the code's shape (docs/architecture.md), read off the source itself: every import of every module,
function-level ones included, so that a lazy import cannot hide a cycle or a layer reached around."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "loomwork"
FEATURES = ("lens", "steering", "graders", "tuning", "ledger", "supervision")


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = ("loomwork",) + path.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _imports(module: str, path: Path) -> list[tuple[str, list[str], int]]:
    """(module imported, names taken from it, line) for every import in the file, at any depth."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for a in node.names:  # `from . import ops` imports the module loomwork.ops
                full = f"{target}.{a.name}"
                out.append((full, [], node.lineno) if full in MODULES else (target, [a.name], node.lineno))
    return out


def _unit(module: str) -> str:
    """The package (or top-level module) a module belongs to: loomwork.web.api -> web, loomwork.ops -> ops."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "loomwork"


def _edges():
    edges: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for module, path in MODULES.items():
        for target, _names, line in _imports(module, path):
            if target.startswith("loomwork") and _unit(target) not in (_unit(module), "loomwork"):
                edges[_unit(module)][_unit(target)].append(f"{path.relative_to(SRC)}:{line}")
    return edges


def test_no_import_cycle_between_packages():
    edges = _edges()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append({a: {b: edges[a][b][:2] for b in component if b in edges[a]} for a in component})

    for v in list(edges):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles between packages: {cycles}"


def _uses(unit: str) -> dict[str, list[str]]:
    return _edges().get(unit, {})


def test_layers_import_only_downwards():
    rules = {
        "engine": {"backends", "levers", "ops", "store", "ledger", "curation", "web", "cli", *FEATURES},
        "levers": {"backends", "engine", "models", "store", "ops", "ledger", "web", "cli", *FEATURES} - {"ledger"},
        "backends": {"tuning", "graders", "lens", "steering", "supervision", "ledger", "curation", "ops", "web", "cli"},
        "ops": {"steering", "graders", "lens", "tuning", "ledger", "web", "cli"},
        "store": {"backends", "ops", "web", "cli", *FEATURES},
    }
    broken = {unit: {t: where for t, where in _uses(unit).items() if t in banned} for unit, banned in rules.items()}
    assert not any(broken.values()), broken


def test_no_sql_outside_the_store():
    offenders = [f"{path.relative_to(SRC)}:{line}" for module, path in MODULES.items() if _unit(module) != "store"
                 for target, _names, line in _imports(module, path) if target.split(".")[0] == "sqlalchemy"]
    assert not offenders, offenders


def test_features_use_the_model_contract_not_its_insides():
    """No lens, steering, grader, tuning, ledger or supervision module reaches into a backend (its torch model,
    tokenizer or thread) or takes another package's private names."""
    reach = []
    for module, path in MODULES.items():
        if _unit(module) not in FEATURES:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in ("lm", "tok", "_model_thread") \
                    and not (isinstance(node.value, ast.Name) and node.value.id == "self"):
                reach.append(f"{path.relative_to(SRC)}:{node.lineno} .{node.attr}")
        for target, names, line in _imports(module, path):
            private = [n for n in names if n.startswith("_")]
            if target.startswith("loomwork") and _unit(target) != _unit(module) and private:
                reach.append(f"{path.relative_to(SRC)}:{line} {target}.{private}")
    assert not reach, reach


def test_one_server_sent_events_helper():
    where = [str(p.relative_to(SRC)) for p in (SRC / "web").glob("*.py") if "text/event-stream" in p.read_text()]
    assert where == ["web/sse.py"], where


def test_the_pages_modules_import_one_way():
    """The page's ES modules (web/static): no import cycle (state ← page ← actions ← main, views below page), and
    every name a module imports is one the other exports."""
    import re

    static = Path(__file__).resolve().parents[1] / "src" / "loomwork" / "web" / "static"
    imports, exports = {}, {}
    for f in static.glob("*.js"):
        text = f.read_text()
        imports[f.name] = re.findall(r'import\s*(\{[^}]*\}|\*\s+as\s+\w+)\s*from\s*"\./([\w.]+)"', text)
        exports[f.name] = set(re.findall(r"export\s+(?:async\s+)?(?:function|const|let|class)\s+(\w+)", text))
    for f, items in imports.items():
        for names, src in items:
            assert src in exports, f"{f} imports {src}, which does not exist"
            if names.startswith("{"):
                for name in filter(None, (n.strip() for n in names.strip("{}").split(","))):
                    assert name in exports[src], f"{f} imports {name} from {src}, which does not export it"
    graph = {f: {src for _, src in items} for f, items in imports.items()}

    def reaches(start: str, goal: str, seen: set) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and (seen.add(nxt) or reaches(nxt, goal, seen))):
                return True
        return False

    cycles = [f for f in graph if reaches(f, f, set())]
    assert cycles == [], f"modules in an import cycle: {sorted(cycles)}"
    assert not any("main.js" in deps for deps in graph.values())  # the entry module is imported by no one
