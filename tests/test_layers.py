"""Static checks of the source tree: layer direction, file length, no pickle, light CLI imports.

Layer rules (README.md, "imports point downward only"), checked on every ``avat3r_cli`` import
in every module under ``src/avat3r_cli`` -- absolute or relative, at module level or inside a
function, under ``TYPE_CHECKING`` or not:

- Layers: ``core`` = 0; ``io``, ``model``, ``render`` = 1; ``preprocess``, ``data`` = 2;
  ``pipeline``, ``train``, ``eval`` = 3; ``cli`` = 4. A package not in this table fails the test
  until it is given a layer here.
- A module may import its own package and any package of a lower layer, never a higher one.
- L1 packages are independent of each other: ``io``, ``model`` and ``render`` never import one
  another (a model takes tensors, not files; the renderer takes Gaussians, not files).
- In L2 and L3, a package may use a peer of the same layer (``data`` may use ``preprocess``;
  ``pipeline`` may use ``train`` / ``eval``), but only in one direction: the graph of such
  same-layer package imports has no cycles.
- The top-level ``avat3r_cli/__init__.py`` imports no subpackage (every layer imports it for
  ``__version__``); ``avat3r_cli/__main__.py`` may import only ``cli``.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "avat3r_cli"
LAYERS = {
    "core": 0,
    "io": 1, "model": 1, "render": 1,
    "preprocess": 2, "data": 2,
    "pipeline": 3, "train": 3, "eval": 3,
    "cli": 4,
}  # fmt: skip
INDEPENDENT_LAYERS = {1}
MAX_LINES = 400
HEAVY = ("torch", "gsplat")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files() -> list[Path]:
    return sorted(PKG.rglob("*.py"))


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def exists_module(dotted: str) -> bool:
    rel = Path(*dotted.split("."))
    return (SRC / rel).is_dir() or (SRC / rel).with_suffix(".py").is_file()


def imported_modules(tree: ast.AST, module: str, package: bool) -> Iterator[tuple[str, int]]:
    """``(dotted target, line)`` for every import in ``tree`` (relative ones resolved)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            # `from pkg import sub` imports the submodule pkg.sub when there is one.
            subs = [f"{target}.{a.name}" for a in node.names if exists_module(f"{target}.{a.name}")]
            yield from ((t, node.lineno) for t in (subs or [target]))


def layer_package(dotted: str) -> str | None:
    """``io`` for ``avat3r_cli.io.ply``; None for the top-level package and its ``__main__``."""
    parts = dotted.split(".")
    if parts[0] != "avat3r_cli" or len(parts) < 2 or parts[1] in ("__main__", "__init__"):
        return None
    return parts[1]


def layer_violations(path: Path) -> list[str]:
    module = module_name(path)
    own = layer_package(module)
    problems = []
    for target, line in imported_modules(parse(path), module, is_package(path)):
        other = layer_package(target)
        if not target.startswith("avat3r_cli"):
            continue
        where = f"{path.relative_to(SRC)}:{line} imports {target}"
        if own is None:
            if module == "avat3r_cli" and other is not None:
                problems.append(f"{where}: the top-level __init__ must not import subpackages")
            elif module == "avat3r_cli.__main__" and other not in (None, "cli"):
                problems.append(f"{where}: __main__ may import only cli")
            continue
        if own not in LAYERS:
            problems.append(f"{path.relative_to(SRC)}: package '{own}' has no layer in tests/test_layers.py")
            break
        if other is None or other == own:
            continue
        if other not in LAYERS:
            problems.append(f"{where}: package '{other}' has no layer")
        elif LAYERS[other] > LAYERS[own]:
            problems.append(f"{where}: L{LAYERS[own]} {own} must not import L{LAYERS[other]} {other}")
        elif LAYERS[other] == LAYERS[own] in INDEPENDENT_LAYERS:
            problems.append(f"{where}: L{LAYERS[own]} packages are independent ({own} -> {other})")
    return problems


def same_layer_edges() -> set[tuple[str, str]]:
    edges = set()
    for path in source_files():
        module = module_name(path)
        own = layer_package(module)
        for target, _ in imported_modules(parse(path), module, is_package(path)):
            other = layer_package(target)
            if own in LAYERS and other in LAYERS and own != other and LAYERS[own] == LAYERS[other]:
                edges.add((own, other))
    return edges


def find_cycle(edges: set[tuple[str, str]]) -> list[str] | None:
    graph: dict[str, list[str]] = {}
    for a, b in edges:
        graph.setdefault(a, []).append(b)
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                return [*path, node, nxt]
            if nxt not in state and (found := visit(nxt, [*path, node])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [])):
            return cycle
    return None


# --- the checks on the real tree --------------------------------------------------------------


def test_source_tree_is_found() -> None:
    names = {module_name(p) for p in source_files()}
    assert {"avat3r_cli.core.camera", "avat3r_cli.cli.app", "avat3r_cli.pipeline.turntable"} <= names


def test_imports_point_downward() -> None:
    problems = [p for path in source_files() for p in layer_violations(path)]
    assert not problems, "\n".join(problems)


def test_same_layer_imports_have_no_cycle() -> None:
    cycle = find_cycle(same_layer_edges())
    assert cycle is None, " -> ".join(cycle or [])


def test_no_source_file_over_400_lines() -> None:
    long = {str(p.relative_to(SRC)): n for p in source_files() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines: {long}"


def _qualified_names(tree: ast.AST) -> dict[str, str]:
    """Local name -> dotted name it is bound to by imports (``np`` -> ``numpy``)."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                names[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def _call_name(func: ast.expr, names: dict[str, str]) -> str | None:
    attrs = []
    while isinstance(func, ast.Attribute):
        attrs.append(func.attr)
        func = func.value
    if not isinstance(func, ast.Name):
        return None
    return ".".join([names.get(func.id, func.id), *reversed(attrs)])


def _keyword_is(call: ast.Call, name: str, value: bool) -> bool:
    return any(k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is value for k in call.keywords)


def pickle_problems(source: str, filename: str = "<src>") -> list[str]:
    """``torch.load`` without ``weights_only=True``, ``np.load`` with pickles, pickle imports."""
    tree = ast.parse(source)
    names = _qualified_names(tree)
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if any(m.split(".")[0] in ("pickle", "dill", "cloudpickle", "joblib") for m in mods):
                problems.append(f"{filename}:{node.lineno}: pickle-based module imported")
        if not isinstance(node, ast.Call):
            continue
        name = _call_name(node.func, names)
        if name in ("torch.load", "torch.serialization.load") and not _keyword_is(node, "weights_only", True):
            problems.append(f"{filename}:{node.lineno}: {name} without weights_only=True")
        if name == "numpy.load" and any(k.arg == "allow_pickle" for k in node.keywords):
            if not _keyword_is(node, "allow_pickle", False):
                problems.append(f"{filename}:{node.lineno}: numpy.load with allow_pickle")
    return problems


def test_never_unpickle() -> None:
    problems = [p for path in source_files() for p in pickle_problems(path.read_text(), str(path.relative_to(SRC)))]
    assert not problems, "\n".join(problems)


def module_level_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports executed when the module is imported: not in function bodies or TYPE_CHECKING."""
    todo: list[ast.AST] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
        else:
            todo.extend(ast.iter_child_nodes(node))


def heavy_at_import(module: str, seen: set[str] | None = None) -> list[str]:
    """Chains ``a -> b -> torch`` by which importing ``module`` loads a heavy package."""
    seen = set() if seen is None else seen
    if module in seen:
        return []
    seen.add(module)
    rel = Path(*module.split("."))
    path = SRC / rel / "__init__.py" if (SRC / rel).is_dir() else (SRC / rel).with_suffix(".py")
    if not path.is_file():
        return []
    chains = []
    # Importing a.b.c runs a/__init__ and a/b/__init__ first.
    parents = [".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)]
    for parent in parents:
        chains += [f"{module} -> {c}" for c in heavy_at_import(parent, seen)]
    for node in module_level_imports(parse(path)):
        targets = [t for t, _ in imported_modules(ast.Module(body=[node], type_ignores=[]), module, is_package(path))]
        for target in targets:
            if target.split(".")[0] in HEAVY:
                chains.append(f"{module} -> {target} (line {node.lineno})")
            elif target.startswith("avat3r_cli"):
                chains += [f"{module} -> {c}" for c in heavy_at_import(target, seen)]
    return chains


@pytest.mark.parametrize("path", sorted((PKG / "cli").glob("*.py")), ids=lambda p: p.name)
def test_cli_imports_torch_only_inside_functions(path: Path) -> None:
    chains = heavy_at_import(module_name(path))
    assert not chains, "importing this CLI module loads a heavy package:\n" + "\n".join(chains)


# --- the checkers themselves can fail ---------------------------------------------------------


def test_relative_imports_resolve() -> None:
    tree = ast.parse("from ..render import api\nfrom . import atomic\nfrom .ply import read_ply\n")
    got = [t for t, _ in imported_modules(tree, "avat3r_cli.io.video", package=False)]
    assert got == ["avat3r_cli.render.api", "avat3r_cli.io.atomic", "avat3r_cli.io.ply"]
    tree = ast.parse("from ..core import errors\n")
    assert [t for t, _ in imported_modules(tree, "avat3r_cli.render", package=True)] == ["avat3r_cli.core.errors"]


def test_layer_checker_flags_bad_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_src = tmp_path / "src"
    for pkg in ("core", "io", "render", "pipeline", "cli"):
        (fake_src / "avat3r_cli" / pkg).mkdir(parents=True)
        (fake_src / "avat3r_cli" / pkg / "__init__.py").write_text("")
    files = {
        "core/bad.py": "def f():\n    from avat3r_cli.cli import app\n",  # upward, inside a function
        "io/bad.py": "from ..render import api\n",  # L1 peer
        "pipeline/ok.py": "from avat3r_cli.io import ply\nfrom avat3r_cli.core.errors import Avat3rError\n",
        "cli/ok.py": "import avat3r_cli.pipeline.ok\nfrom avat3r_cli import __version__\n",
    }
    for rel, text in files.items():
        (fake_src / "avat3r_cli" / rel).write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "SRC", fake_src)
    root = fake_src / "avat3r_cli"
    assert any("L0 core must not import L4 cli" in p for p in layer_violations(root / "core/bad.py"))
    assert any("independent (io -> render)" in p for p in layer_violations(root / "io/bad.py"))
    assert layer_violations(root / "pipeline/ok.py") == []
    assert layer_violations(root / "cli/ok.py") == []


def test_cycle_finder() -> None:
    assert find_cycle({("data", "preprocess")}) is None
    assert find_cycle({("pipeline", "train"), ("train", "eval"), ("eval", "pipeline")}) is not None


def test_pickle_checker() -> None:
    assert pickle_problems("import torch\ntorch.load(f)\n")
    assert pickle_problems("import torch\ntorch.load(f, weights_only=False)\n")
    assert pickle_problems("from torch import load\nload(f)\n")
    assert not pickle_problems("import torch\ntorch.load(f, map_location='cpu', weights_only=True)\n")
    assert pickle_problems("import numpy as np\nnp.load(f, allow_pickle=True)\n")
    assert not pickle_problems("import numpy as np\nnp.load(f)\n")
    assert pickle_problems("import pickle\n")


def test_module_level_import_finder() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n"
        "def f():\n    import gsplat\ntry:\n    import torch.nn\nexcept ImportError:\n    pass\n"
    )
    found = [a.name for n in module_level_imports(tree) if isinstance(n, ast.Import) for a in n.names]
    assert found == ["torch.nn"]


def test_heavy_chain_finder() -> None:
    # The pipeline loads torch on import (through core), which is why cli imports it lazily.
    chains = heavy_at_import("avat3r_cli.pipeline.turntable")
    assert any("-> torch (line" in c for c in chains), chains
    assert heavy_at_import("avat3r_cli.core.errors") == []
