"""Suite files: a yaml naming a sweep's configs, seeds and overrides (and, for ``mdistiller-tune``, its ``tune``
block: :data:`mdistiller.tune.study.SETTINGS`). Suites shipped with the package (``mdistiller/suites/``) are found by
name from any folder: ``tune_digits.yaml``."""
import os
from importlib import resources

SUITE_KEYS = ("configs", "seeds", "opts", "jobs", "name", "out", "tune")


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


def load_suite(path):
    """A suite yaml: ``configs: [...]``, ``seeds: [...]``, ``opts: [...]`` (optional ``jobs``, ``name``, ``out``,
    ``tune``), found by :func:`resolve_suite_path`.

    Config paths are taken relative to the working directory, else to the suite file's folder (else they name
    packaged configs, ``digits/kd.yaml``).
    """
    import yaml

    path = resolve_suite_path(path)
    with open(path) as f:
        suite = yaml.safe_load(f) or {}
    unknown = set(suite) - set(SUITE_KEYS)
    if unknown:
        raise ValueError("Unknown keys in suite {}: {}".format(path, ", ".join(sorted(unknown))))
    if not suite.get("configs"):
        raise ValueError("Suite {} lists no configs".format(path))
    here = os.path.dirname(os.path.abspath(path))
    configs = []
    for config in suite["configs"]:
        config = str(config)
        if not os.path.exists(config) and os.path.exists(os.path.join(here, config)):
            config = os.path.join(here, config)
        configs.append(config)
    suite["configs"] = configs
    suite["seeds"] = [int(s) for s in suite.get("seeds", [0])]
    suite["opts"] = [str(o) for o in suite.get("opts", [])]
    return suite
