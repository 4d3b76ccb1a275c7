"""The package's layers (ARCHITECTURE.md): every import in molgen/, at module level or inside a function,
goes to the same subpackage or to a layer below; metrics/ imports only chem and the cache; and the
subpackages import each other without cycles."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "molgen"

#: unit -> layer; a unit is a subpackage (``chem``) or a top-level module (``samples``)
LAYERS = {
    "_atomic": 0, "_cache": 0, "_alloc": 0, "_cpu": 0, "chem": 0,
    "samples": 1, "datasets": 1, "metrics": 1, "nn": 1, "diffusion": 1,
    "models": 2, "references": 2, "evaluation": 2,
    "training": 3,
    "cli": 4, "_cli": 4, "sample": 4, "train": 4, "evaluate": 4, "interpolate": 4, "denoise": 4, "score": 4, "__main__": 4, "__init__": 4,
}
_ENTRY_POINTS = ("sample", "train", "evaluate", "interpolate", "denoise", "score", "__main__")  # python -m molgen.X: thin modules
#: imports allowed between units of one layer (importer -> imported)
SAME_LAYER = {("evaluation", "references"), ("datasets", "samples"), ("chem", "_atomic"), ("_cache", "_atomic"),
              *((m, c) for m in _ENTRY_POINTS for c in ("cli", "_cli")), ("cli", "_cli")}
ONLY = {"metrics": {"chem", "_cache", "metrics"}}


def _unit(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "molgen":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[str, int]]:
    package = list(path.relative_to(ROOT.parent).with_suffix("").parts[:-1])  # what "." means in the file
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:  # from . import x: the submodules named
                    out += [(f"{name}.{a.name}", node.lineno) for a in node.names]
                    continue
            else:
                name = node.module or ""
            out.append((name, node.lineno))
    return out


def _edges() -> list[tuple[str, str, str]]:
    edges = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        src = _unit(".".join(rel.parts))
        for name, line in _imports(path):
            dst = _unit(name)
            if dst is not None and dst != src:
                edges.append((src, dst, f"{path.relative_to(ROOT.parent)}:{line} imports {name}"))
    return edges


def test_every_unit_of_the_package_has_a_layer() -> None:
    units = {p.name if p.is_dir() else p.stem for p in ROOT.iterdir()
             if (p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py"}
    assert units <= set(LAYERS), f"give these a layer in LAYERS and ARCHITECTURE.md: {sorted(units - set(LAYERS))}"


def test_imports_go_down_the_layers() -> None:
    bad = []
    for src, dst, where in _edges():
        if src not in LAYERS or dst not in LAYERS:
            continue
        if src in ONLY and dst not in ONLY[src]:
            bad.append(f"{where} ({src} may import only {sorted(ONLY[src] - {src})})")
        elif LAYERS[dst] > LAYERS[src] or (LAYERS[dst] == LAYERS[src] and (src, dst) not in SAME_LAYER):
            bad.append(f"{where} ({src}, layer {LAYERS[src]}, imports {dst}, layer {LAYERS[dst]})")
    assert not bad, "\n".join(bad)


def test_no_import_cycle_between_units() -> None:
    graph: dict[str, set[str]] = {}
    for src, dst, _ in _edges():
        graph.setdefault(src, set()).add(dst)
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(trail[trail.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for unit in sorted(graph):
        if unit not in state:
            visit(unit, [unit])
