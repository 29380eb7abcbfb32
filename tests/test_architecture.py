"""The code's shape, checked: no two modules import each other (directly or in a loop, function-level imports
included), plain rooms never import Dagster, floors only import downwards, and the vocabulary is defined once."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("domain", "ingest", "models", "storage", "compute", "trading", "serving", "resources", "assets", "pipelines")
PLAIN = ("domain", "ingest", "models", "storage", "compute", "trading", "serving")  # no Dagster import, at any level
# what each room may import from the project (its own room always): the floors of DESIGN.md
MAY_IMPORT = {
    "domain": set(),
    "ingest": {"domain"},
    "models": {"domain", "ingest"},
    "storage": {"domain", "ingest", "models"},
    "compute": {"domain", "ingest", "models", "storage"},
    "trading": {"domain", "models"},
    "serving": {"domain", "ingest", "models", "storage", "trading"},
    "resources": {"domain", "ingest", "models", "storage", "compute", "trading"},
    "assets": {"domain", "ingest", "models", "storage", "compute", "trading", "serving", "resources"},
    "pipelines": {"domain", "ingest", "models", "storage", "compute", "trading", "serving", "resources", "assets"},
}


def modules() -> dict[str, Path]:
    found = {}
    for room in ROOMS:
        for path in (ROOT / room).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the project modules it imports anywhere in its body (absolute and relative imports)."""
    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {resolve(a.name) for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets |= {resolve(f"{base}.{a.name}") if f"{base}.{a.name}" in mods else resolve(base)
                            for a in node.names}
        graph[name] = {t for t in targets if t and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_loop():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_two_modules_import_each_other():
    found = cycles(imports(modules()))
    assert not found, f"import cycles: {found}"


def test_rooms_import_only_downwards_and_plain_rooms_never_import_dagster():
    mods = modules()
    wrong = []
    for name, targets in imports(mods).items():
        room = name.split(".")[0]
        wrong += [f"{name} -> {t}" for t in targets if t.split(".")[0] not in MAY_IMPORT[room] | {room}]
    assert not wrong, f"imports against the floors: {wrong}"
    dagster = [name for name, path in mods.items() if name.split(".")[0] in PLAIN
               and re.search(r"^\s*(import dagster|from dagster)", path.read_text(), re.M)]
    assert not dagster, f"plain modules importing dagster: {dagster}"


def test_the_vocabulary_is_defined_once():
    names = ("ASSET_CLASSES", "TARGETS", "BASELINES", "BASELINE_MODELS", "CLASS_FREQ", "BENCHMARK_MODELS",
             "SERVED_ALIASES", "VOLATILITY_BASELINES", "PRICE_BASELINES", "STATISTICAL_BASELINES",
             "RANDOM_WALK_BASELINES", "SERVED_BASELINES")
    pattern = re.compile(rf"^\s*({'|'.join(names)})\s*(:[^=]*)?=", re.M)
    definitions = [f"{path.relative_to(ROOT)}: {m.group(1)}" for path in modules().values()
                   for m in pattern.finditer(path.read_text())]
    assert sorted(definitions) == sorted(f"domain/vocabulary.py: {n}" for n in names if n != "BASELINE_MODELS")
    rule = [str(p.relative_to(ROOT)) for p in modules().values() if 'f"nhits-{' in p.read_text()]
    assert rule == ["domain/vocabulary.py"], f"the model naming rule is written out in {rule}"
