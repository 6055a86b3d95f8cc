"""Suite files: a yaml naming a sweep's configs, seeds and overrides (and, for ``mdistiller-tune``, its ``tune``
block: :data:`mdistiller.tune.study.SETTINGS`). Suites shipped with the package (``mdistiller/suites/``) are found by
name from any folder: ``tune_digits.yaml`` (:func:`mdistiller.catalogue.resolve_suite_path`)."""
import os

from .._cli import load_yaml_mapping
from ..catalogue import resolve_suite_path

SUITE_KEYS = ("configs", "seeds", "opts", "jobs", "name", "out", "tune")


def load_suite(path):
    """A suite yaml: ``configs: [...]``, ``seeds: [...]``, ``opts: [...]`` (optional ``jobs``, ``name``, ``out``,
    ``tune``), found by :func:`resolve_suite_path`.

    Config paths are taken relative to the working directory, else to the suite file's folder (else they name
    packaged configs, ``digits/kd.yaml``).
    """
    path = resolve_suite_path(path)
    suite = load_yaml_mapping(path, "suite")
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
