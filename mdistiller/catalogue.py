"""What the package offers, read without importing torch: the shipped configs, the built-in methods, the models.

``mdistiller-train --help`` lists every method with its description, every model and every shipped
config; importing the methods and models to ask them takes seconds (torch), so this module reads
their sources instead: the methods are the classes decorated ``@register_distiller("KEY")`` in the
modules that ``mdistiller/distillers/__init__.py`` imports (their descriptions, the first line of the
class docstring, as :meth:`Distiller.description` gives it), the models the keys of the zoo dicts in
``mdistiller/models``. A test checks both against the imported registry and zoos.

Configs: a ``--cfg`` path that exists (relative to the current directory) is read as is; otherwise a
name of a config shipped inside the package, ``mdistiller/configs/`` (``digits/kd.yaml``, also
written ``configs/digits/kd.yaml``, mdistiller's spelling), is read from there
(:func:`resolve_config_path`), so every config works from an installed wheel without the repository. Suites
(``mdistiller/suites/``: ``tune_digits.yaml``) are found by name the same way (:func:`resolve_suite_path`).
"""
import ast
import os
from importlib import resources

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _packaged_root():
    return resources.files("mdistiller").joinpath("configs")


def packaged_configs():
    """Names of the configs shipped in the package (``digits/kd.yaml``, ...), sorted."""
    names = []

    def walk(node, prefix):
        for child in node.iterdir():
            if child.is_dir():
                walk(child, prefix + child.name + "/")
            elif child.name.endswith(".yaml"):
                names.append(prefix + child.name)

    root = _packaged_root()
    if root.is_dir():
        walk(root, "")
    return sorted(names)


def resolve_config_path(path):
    """``path`` when it exists; else the packaged config of that name (``digits/kd.yaml`` or
    ``configs/digits/kd.yaml``); else ``FileNotFoundError`` saying where the configs are listed."""
    if not path or os.path.exists(path):
        return path
    name = str(path).replace(os.sep, "/")
    while name.startswith("./"):
        name = name[2:]
    for candidate in (name, name[len("configs/"):] if name.startswith("configs/") else None):
        if candidate and not os.path.isabs(candidate):
            node = _packaged_root()
            for part in candidate.split("/"):
                node = node.joinpath(part)
            if node.is_file():
                return str(node)
    raise FileNotFoundError(
        "Config file not found: {} (no such file in {}, and no config of that name ships with the package; "
        "`mdistiller-train --help` lists the {} shipped configs, e.g. digits/kd.yaml)".format(
            path, os.getcwd(), len(packaged_configs())))


def packaged_suites():
    """Names of the suites shipped in the package, sorted."""
    root = resources.files("mdistiller").joinpath("suites")
    return sorted(p.name for p in root.iterdir() if p.name.endswith(".yaml")) if root.is_dir() else []


def resolve_suite_path(path):
    """``path`` when it exists, else the packaged suite of that name (``tune_digits.yaml``, ``suites/tune_digits``);
    else ``FileNotFoundError`` listing the packaged suites."""
    if os.path.exists(path):
        return path
    name = os.path.basename(str(path))
    name = name if name.endswith(".yaml") else name + ".yaml"
    candidate = resources.files("mdistiller").joinpath("suites", name)
    if candidate.is_file():
        return str(candidate)
    raise FileNotFoundError("Suite file not found: {} (no such file in {}, and no packaged suite of that name; packaged "
                            "suites: {})".format(path, os.getcwd(), ", ".join(packaged_suites()) or "none"))


def _parse(relative):
    with open(os.path.join(PACKAGE_DIR, relative), encoding="utf-8") as f:
        return ast.parse(f.read())


def _registered_classes(tree, task="classification"):
    """``(key, description)`` of the classes of a module decorated ``@register_distiller("KEY")`` for ``task`` (the
    decorator's ``task=`` keyword, classification without it)."""
    found = []
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        for decorator in node.decorator_list:
            if (isinstance(decorator, ast.Call) and getattr(decorator.func, "id", None) == "register_distiller"
                    and decorator.args and isinstance(decorator.args[0], ast.Constant)):
                keywords = {k.arg: getattr(k.value, "value", None) for k in decorator.keywords}
                if keywords.get("task", "classification") != task:
                    continue
                key = decorator.args[0].value
                doc = (ast.get_docstring(node) or "").strip()
                found.append((key, doc.splitlines()[0] if doc else key))
    return found


def builtin_methods(task="classification"):
    """``[(DISTILLER.TYPE key, one-line description)]`` of the built-in methods of ``task`` (the datasets' task:
    classification, or detection for the methods' detection variants), in registration order."""
    modules = [os.path.join("distillers", "_base.py"), os.path.join("distillers", "_detection.py")]
    for node in _parse(os.path.join("distillers", "__init__.py")).body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module and not node.module.startswith("_"):
            modules.append(os.path.join("distillers", node.module.replace(".", os.sep) + ".py"))
    methods = []
    for path in modules:
        if os.path.isfile(os.path.join(PACKAGE_DIR, path)):
            methods += [m for m in _registered_classes(_parse(path), task) if m not in methods]
    return methods


def _dict_keys(relative, name):
    for node in _parse(relative).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return [k.value for k in node.value.keys if isinstance(k, ast.Constant)]
    raise LookupError("{} not found in {}".format(name, relative))  # pragma: no cover - the test reads both


def model_names():
    """``{zoo: [model names]}``: ``cifar`` (cifar_model_dict), ``imagenet``, ``tiny_imagenet`` and ``detection``
    (the backbones of the Faster R-CNN detectors)."""
    init = os.path.join("models", "__init__.py")
    return {
        "cifar": _dict_keys(init, "cifar_model_dict"),
        "imagenet": _dict_keys(os.path.join("models", "imagenet", "__init__.py"), "imagenet_model_dict"),
        "tiny_imagenet": _dict_keys(init, "tiny_imagenet_model_dict"),
        "detection": _dict_keys(os.path.join("models", "detection.py"), "DETECTION_BACKBONES"),
    }
