"""The package's layers, as the README's Layout table states them: every import of every module
(function-level ones included) goes to a layer it may import, and no two units import each other
in a circle. Read from the source with `ast`: nothing is imported to check it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# unit -> layer; a unit is a folder of crpo_bench (or training/) or a loose module, by its dotted name
LAYER = {
    "crpo_bench.jsonl": 0, "crpo_bench.text": 0, "crpo_bench.fingerprints": 0, "crpo_bench.lmeval_hook": 0,
    "crpo_bench.models": 1, "crpo_bench.metrics": 2, "crpo_bench.muce": 3, "crpo_bench.scoring": 4,
    "crpo_bench.run": 5, "crpo_bench.noveltybench": 6, "crpo_bench.stats": 7, "crpo_bench.results": 8,
    "crpo_bench.lmeval": 9, "crpo_bench.training": 9,
    "crpo_bench.commands": 10, "crpo_bench.cli": 10, "crpo_bench.training.cli": 10,
}
IO = {"crpo_bench.jsonl", "crpo_bench.text", "crpo_bench.fingerprints", "crpo_bench.lmeval_hook"}
# what a unit may import, the README's last column ("everything below" is the layer rule itself)
MAY_IMPORT = {
    0: set(), 1: {"io"}, 2: set(), 3: {"io"}, 4: {"io", "crpo_bench.models", "crpo_bench.metrics", "crpo_bench.muce"},
    5: {"io", "crpo_bench.models"},
    6: {"io", "crpo_bench.models", "crpo_bench.scoring", "crpo_bench.run"},
    7: set(), 8: {"io", "crpo_bench.scoring"},
}
# names the package root hands out lazily (crpo_bench/__init__.py): importing them is importing scoring
ROOT_NAMES = {"Scorer": "crpo_bench.scoring", "ScoringConfig": "crpo_bench.scoring", "ScoreResult": "crpo_bench.scoring",
              "METRICS": "crpo_bench.scoring", "__version__": None}


def modules() -> dict[str, Path]:
    """Dotted name -> file, for crpo_bench/ and training/ (mapped to crpo_bench.training)."""
    out = {}
    for top, dotted in (("crpo_bench", "crpo_bench"), ("training", "crpo_bench.training")):
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT / top).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join([dotted, *parts])] = path
    return out


def unit_of(name: str) -> str | None:
    """The layer unit a dotted module name belongs to (longest match: training.cli before training)."""
    for unit in sorted(LAYER, key=len, reverse=True):
        if name == unit or name.startswith(unit + "."):
            return unit
    return None


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every module of ours that `name` imports, at any depth of its code, relative imports resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "crpo_bench")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "crpo_bench":
                continue
            for alias in node.names:
                child = f"{source}.{alias.name}"
                if child in known:  # `from .. import muce`: a module, not a name
                    found.add(child)
                elif source == "crpo_bench":
                    if ROOT_NAMES.get(alias.name):
                        found.add(ROOT_NAMES[alias.name])
                else:
                    found.add(source)
    return found


def edges() -> list[tuple[str, str, str]]:
    """(importing module, its unit, imported unit) for every import between two different units."""
    known = modules()
    out = []
    for name, path in known.items():
        unit = unit_of(name)
        if unit is None:  # the package root: only the lazy re-export of scoring
            continue
        for target in imports_of(name, path, known):
            other = unit_of(target)
            if other is not None and other != unit:
                out.append((name, unit, other))
    return out


def allowed(unit: str, other: str) -> bool:
    layer, below = LAYER[unit], LAYER[other]
    if layer >= 9:  # lmeval, training: everything below; commands: everything
        return below < layer or layer == 10
    may = MAY_IMPORT[layer]
    return other in may or ("io" in may and other in IO)


def test_every_module_belongs_to_a_layer():
    loose = [n for n in modules() if n != "crpo_bench" and unit_of(n) is None]
    assert loose == []


def test_no_module_imports_a_layer_it_may_not():
    wrong = sorted({f"{name} ({unit}, layer {LAYER[unit]}) imports {other} (layer {LAYER[other]})"
                    for name, unit, other in edges() if not allowed(unit, other)})
    assert wrong == []


def test_no_import_cycle_between_units():
    graph: dict[str, set[str]] = {}
    for _, unit, other in edges():
        graph.setdefault(unit, set()).add(other)
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(unit: str, path: list[str]) -> None:
        state[unit] = 1
        for nxt in sorted(graph.get(unit, ())):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[unit] = 2

    for unit in sorted(graph):
        if unit not in state:
            visit(unit, [unit])


def test_the_check_sees_an_upward_import(tmp_path):
    """The walk is not blind: a function-level import of results from scoring is caught."""
    known = modules()
    fake = tmp_path / "scorer.py"
    fake.write_text("def f():\n    from ..results import leaderboard\n    return leaderboard\n")
    found = imports_of("crpo_bench.scoring.scorer", fake, known)
    assert "crpo_bench.results.leaderboard" in found
    assert not allowed("crpo_bench.scoring", unit_of("crpo_bench.results.leaderboard"))
