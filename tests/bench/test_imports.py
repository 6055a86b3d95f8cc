"""Import structure of the runner and the plots: plots never import the runner, no cycles, no repo-root lookups."""
import ast
import importlib
import os
import sys

import mdistiller
from mdistiller.engine.cfg import get_cfg
from tests.helpers.runutil import REPO

PACKAGE_DIR = os.path.dirname(os.path.abspath(mdistiller.__file__))


def _modules():
    """``{module name: path}`` of the runner package and the plots module."""
    found = {"mdistiller.plot": os.path.join(PACKAGE_DIR, "plot.py")}
    bench = os.path.join(PACKAGE_DIR, "benchmark")
    for name in sorted(os.listdir(bench)):
        if name.endswith(".py"):
            module = "mdistiller.benchmark" if name == "__init__.py" else "mdistiller.benchmark." + name[:-3]
            found[module] = os.path.join(bench, name)
    return found


def _imports(module, path):
    """Absolute names of every module ``path`` imports (top level and inside functions)."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names.add(base)
            names.update("{}.{}".format(base, alias.name) for alias in node.names)
    return names


def test_plots_do_not_import_the_runner_statically():
    modules = _modules()
    plots = _imports("mdistiller.plot", modules["mdistiller.plot"])
    assert not [n for n in plots if n == "mdistiller.benchmark" or n.startswith("mdistiller.benchmark.")]


def test_runner_and_plots_have_no_import_cycle():
    modules = _modules()
    graph = {m: {n for n in _imports(m, p) if n in modules and n != m} for m, p in modules.items()}
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in graph[node]:
            assert state.get(nxt) != "open", "import cycle: " + " -> ".join(stack + [node, nxt])
            if nxt not in state:
                visit(nxt, stack + [node])
        state[node] = "done"

    for module in graph:
        if module not in state:
            visit(module, [])


def test_no_file_based_paths_in_runner_and_plots():
    """Library code finds its data as package data, never the repository root (tools/, configs/) from __file__."""
    for module, path in _modules().items():
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        uses = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == "__file__"]
        assert not uses, "{} uses __file__ at line(s) {}".format(module, uses)


def test_plots_import_without_the_runner(tmp_path):
    """Importing the plots (and labelling a run folder) with the runner absent from sys.modules does not load it."""
    run_dir = tmp_path / "kd" / "seed0"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(get_cfg(os.path.join(REPO, "configs/digits/wkd_l.yaml")).dump())
    saved = {k: v for k, v in sys.modules.items() if k == "mdistiller.plot" or k.startswith("mdistiller.benchmark")}
    saved_attrs = {k: getattr(mdistiller, k) for k in ("plot", "benchmark") if hasattr(mdistiller, k)}
    try:
        for key in saved:
            del sys.modules[key]
        for key in saved_attrs:
            delattr(mdistiller, key)
        plots = importlib.import_module("mdistiller.plot")
        assert plots.run_label(str(run_dir)) == "WKD-L [kd/seed0]"
        loaded = [k for k in sys.modules if k == "mdistiller.benchmark" or k.startswith("mdistiller.benchmark.")]
        assert loaded == []
    finally:
        for key in [k for k in sys.modules if k == "mdistiller.plot" or k.startswith("mdistiller.benchmark")]:
            del sys.modules[key]
        sys.modules.update(saved)
        for key in ("plot", "benchmark"):
            if hasattr(mdistiller, key):
                delattr(mdistiller, key)
        for key, value in saved_attrs.items():
            setattr(mdistiller, key, value)
