"""The package's import graph, read from the source: layered and free of cycles.

Every ``import``/``from ... import`` statement of ``mdistiller/`` counts, at any
depth (a function-level import is still a dependency), and so does ``importlib.import_module("mdistiller...")``
with a literal name.
"""
import ast
import os

import mdistiller

PACKAGE_DIR = os.path.dirname(os.path.abspath(mdistiller.__file__))
# Lower layers never import these.
LOWER_LAYERS = ("dataset", "models", "ot", "ops", "losses", "registry")
UPPER_LAYERS = ("distillers", "engine", "benchmark", "tune", "train", "eval", "plot", "cost_matrix")


def module_name(path):
    rel = os.path.relpath(path, os.path.dirname(PACKAGE_DIR))[:-3].split(os.sep)
    if rel[-1] == "__init__":
        rel = rel[:-1]
    return ".".join(rel)


def package_modules():
    modules = {}
    for root, _, files in os.walk(PACKAGE_DIR):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                modules[module_name(path)] = path
    return modules


def imports_of(name, path, modules):
    """The mdistiller modules imported by ``name`` (``from pkg import sub`` counts as ``pkg.sub`` when it is one)."""
    is_package = path.endswith("__init__.py")
    tree = ast.parse(open(path).read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            targets = []
            for alias in node.names:
                full = "{}.{}".format(prefix, alias.name)
                targets.append(full if full in modules else prefix)
        elif (isinstance(node, ast.Call) and isinstance(node.func, (ast.Attribute, ast.Name))
              and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            targets = [node.args[0].value]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target.startswith("mdistiller") and target != name:
                found.add(target)
    return found


def graph():
    modules = package_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def layer(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def find_cycle(edges):
    state, stack = {}, []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if state.get(nxt) is None:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if state.get(node) is None:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_module_import_cycles():
    edges = graph()
    # a package's __init__ importing its own submodules is how a package is assembled, not a cycle
    edges = {m: {t for t in ts if not (m.count(".") < t.count(".") and t.startswith(m + "."))} for m, ts in edges.items()}
    assert find_cycle(edges) is None


def test_no_cycles_between_layers():
    layers = {}
    for module, targets in graph().items():
        for target in targets:
            if layer(module) and layer(target) and layer(module) != layer(target):
                layers.setdefault(layer(module), set()).add(layer(target))
    assert find_cycle(layers) is None, layers


def test_lower_layers_import_no_upper_layer():
    offending = [
        (module, target)
        for module, targets in graph().items()
        if layer(module) in LOWER_LAYERS
        for target in targets
        if layer(target) in UPPER_LAYERS
    ]
    assert offending == []


def test_the_checker_sees_relative_and_function_level_imports(tmp_path):
    source = ("from ..engine import cfg\n\ndef f():\n    from mdistiller.distillers import KD\n"
              "    importlib.import_module('mdistiller.plot')\n")
    path = tmp_path / "x.py"
    path.write_text(source)
    modules = package_modules()
    found = imports_of("mdistiller.ot.x", str(path), modules)
    assert {"mdistiller.engine.cfg", "mdistiller.distillers.KD", "mdistiller.plot"} <= found
