"""Package layering: no import cycles between medtl's packages, no import against the layer
order, and no Streamlit in the library.

Every module of ``medtl/`` and ``app/`` is parsed (not imported), and every import counts,
including those inside functions and under ``TYPE_CHECKING``: a lazy import is still a
dependency. The layer order below is the real one, measured; the design guide states it too.
"""

from __future__ import annotations

import ast
import functools
import itertools
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Lowest first. Units in one layer may import each other, as long as no cycle forms.
LAYERS: list[set[str]] = [
    {
        "medtl",
        "_lazy",
        "_cli",
        "_net",
        "paths",
    },  # version, lazy exports, CLI/net helpers, MEDTL_HOME
    {"io"},
    {"artifacts"},
    # data uses training's cached dataset (training.data.cached_dataset); training imports
    # neither data nor models: one layer, kept acyclic by the cycle test.
    {"data", "models", "training"},
    {"evaluation"},  # statistics; reads run folders through artifacts
    {"transfer"},  # strategies, experiments, learning curves (use evaluation's statistics)
    {"inference"},
    {"reports"},  # report, card, package: needs inference for the domain guard and saliency
    {"review"},
    {"pacs"},
    {"cli", "demo", "app_launcher", "schemas", "app"},
]
LEVEL = {unit: k for k, layer in enumerate(LAYERS) for unit in layer}


def _unit(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "app":
        return "app"
    if parts[0] != "medtl":
        return None
    return parts[1] if len(parts) > 1 else "medtl"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, int]]:
    """``(absolute module, line)`` of every import in a file."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((target, node.lineno))
            # ``from medtl import data`` imports the subpackage
            if target in ("medtl",):
                out += [(f"medtl.{a.name}", node.lineno) for a in node.names]
    return out


def _sources() -> list[Path]:
    return sorted([*ROOT.glob("medtl/**/*.py"), *ROOT.glob("app/**/*.py")])


@functools.cache
def _edges() -> dict[tuple[str, str], list[str]]:
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in _sources():
        src = _unit(_module_name(path))
        for target, line in _imports(path):
            dst = _unit(target)
            if src and dst and dst != src and not target.endswith(".__version__"):
                edges[(src, dst)].append(f"{path.relative_to(ROOT)}:{line}")
    return edges


def test_every_package_has_a_layer() -> None:
    units = {_unit(_module_name(p)) for p in _sources()}
    missing = sorted(u for u in units if u not in LEVEL)
    assert not missing, f"place these in LAYERS (tests/test_import_layers.py): {missing}"


def test_no_import_against_the_layer_order() -> None:
    bad = [
        f"{src} -> {dst}: {', '.join(where)}"
        for (src, dst), where in sorted(_edges().items())
        if LEVEL.get(dst, 0) > LEVEL.get(src, 0)
    ]
    assert not bad, "imports that go up the layers:\n" + "\n".join(bad)


def test_no_import_cycle_between_packages() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for src, dst in _edges():
        graph[src].add(dst)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    edges = _edges()
    described = [
        " -> ".join(c) + "  (" + "; ".join(edges[(a, b)][0] for a, b in itertools.pairwise(c)) + ")"
        for c in cycles
    ]
    assert not cycles, "import cycles between packages:\n" + "\n".join(described)


def test_library_does_not_import_streamlit() -> None:
    hits = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in ROOT.glob("medtl/**/*.py")
        for target, line in _imports(path)
        if target.split(".")[0] == "streamlit"
    ]
    assert not hits, f"medtl/ must not import streamlit: {hits}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from medtl.transfer.presets import x\n", "medtl.transfer.presets"),
        ("def f():\n    from ..evaluation import run\n", "medtl.evaluation"),
        ("def f():\n    import medtl.review.store as s\n", "medtl.review.store"),
        ("from . import bootstrap\n", "medtl.data"),
    ],
)
def test_parser_sees_every_kind_of_import(tmp_path, monkeypatch, source, expected) -> None:
    """The checker itself: relative and in-function imports are found."""
    fake_root = tmp_path
    (fake_root / "medtl" / "data").mkdir(parents=True)
    path = fake_root / "medtl" / "data" / "mod.py"
    path.write_text(source)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", fake_root)
    assert expected in [t for t, _ in _imports(path)]
