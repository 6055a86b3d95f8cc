"""Planning a sweep: one :class:`Run` per (config, seed), its folder name and its method label.

Labels come from the registry (:func:`mdistiller.registry.method_label`);
the only keys this module knows are the run-level ones (``DISTILLER.*``, ``DATASET.TYPE``,
``SOLVER.EPOCHS``) and ``NONE``, the ``DISTILLER.TYPE`` of a model trained alone.
"""
import os
import re
from collections import OrderedDict
from collections.abc import Mapping

from ..engine.cfg import CFG
from ..registry import distiller_dict
from ..registry import method_label as registered_label

# DISTILLER.TYPE of a model trained without a teacher (mdistiller's key; labelled "student" or "teacher")
ALONE = "NONE"


def _with_defaults(node, default):
    """``node`` with the keys it lacks read from ``default`` (nested mappings merged), as a yacs CfgNode."""
    from yacs.config import CfgNode

    def merge(value, fallback):
        if not isinstance(value, Mapping) or not isinstance(fallback, Mapping):
            return value
        merged = {k: fallback[k] for k in fallback}
        for key in value:
            merged[key] = merge(value[key], fallback[key]) if key in fallback else value[key]
        return merged

    return CfgNode(merge(node, default))


def method_label(cfg):
    """The method's name as in ``published_results.csv`` (``KD``, ``WKD-L``, ``IPOT+CRD+KD``, ``KD2M-W2(E)``...).

    :func:`mdistiller.registry.method_label` (the registered class's ``label(cfg)``, ``+LS`` with
    logit standardization). A config lacking a block is read with the default block; a
    ``DISTILLER.TYPE`` not registered here is its own label. ``NONE`` is
    ``student`` (a model trained alone), or ``teacher`` when the config names the same model as
    teacher and student (how the demo's teacher config marks itself).
    """
    cfg = _with_defaults(cfg, CFG)
    if cfg.DISTILLER.TYPE not in distiller_dict:
        return str(cfg.DISTILLER.TYPE)
    return registered_label(cfg)


def slug(text):
    """Lower-case, with runs of anything but letters and digits turned into ``_``."""
    return re.sub(r"[^a-z0-9]+", "_", str(text).lower()).strip("_")


def run_name(config_path, cfg):
    """Folder name of a config's runs: the file's stem, prefixed with the method when the stem lacks it.

    ``configs/digits/kd.yaml`` -> ``kd``; ``configs/cifar100/dkd/res32x4_res8x4.yaml`` ->
    ``dkd_res32x4_res8x4``; ``configs/cifar100/ipot_kd/vgg13_vgg8.yaml`` -> ``ipot_kd_vgg13_vgg8``.
    """
    stem = slug(os.path.splitext(os.path.basename(config_path))[0]) or "config"
    if cfg is None:
        return stem
    kind = str(cfg.DISTILLER.TYPE)
    label = method_label(cfg)
    method = ("vanilla" if label == "student" else slug(label)) if kind == ALONE else slug(label)
    parent = slug(os.path.basename(os.path.dirname(os.path.abspath(config_path))))
    candidates = {method, slug(kind)}
    if kind == ALONE:
        candidates |= {"vanilla", "baseline", "student", "teacher", "scratch"}
    if any(c and c in stem for c in candidates):
        return stem
    if kind != ALONE and parent and parent.startswith(slug(kind)):
        return "{}_{}".format(parent, stem)  # mdistiller layout: <method folder>/<pair>.yaml
    return "{}_{}".format(method, stem)


class Run:
    """One (config, seed) of a sweep, run in ``<sweep_dir>/<name>/<folder>`` (``folder`` default ``seed<seed>``) by
    ``python -m <module>`` (default ``mdistiller.train``; a hyper-parameter search's trials run ``mdistiller.tune.trial``,
    the same training with a reporter)."""

    def __init__(self, config, seed, name, sweep_dir, cfg=None, load_error=None, folder=None, module=None):
        self.config = config
        self.seed = int(seed)
        self.name = name
        self.folder = folder or "seed{}".format(self.seed)
        self.module = module
        self.run_dir = os.path.join(sweep_dir, name, self.folder)
        self.cfg = cfg
        self.load_error = load_error
        self.label = method_label(cfg) if cfg is not None else "?"
        self.kind = str(cfg.DISTILLER.TYPE) if cfg is not None else "?"
        self.dataset = str(cfg.DATASET.TYPE) if cfg is not None else ""
        self.teacher = str(cfg.DISTILLER.TEACHER) if cfg is not None else ""
        self.student = str(cfg.DISTILLER.STUDENT) if cfg is not None else ""
        self.epochs = int(cfg.SOLVER.EPOCHS) if cfg is not None else 0
        self.action = None  # "skip" | "resume" | "new" | "failed-config"

    def __repr__(self):
        return "Run({}/{})".format(self.name, self.folder)


def plan_runs(configs, seeds, sweep_dir, opts=()):
    """One :class:`Run` per (config, seed), configs in order; names made unique within the sweep."""
    from ..engine.cfg import get_cfg

    runs, used = [], {}
    for config in OrderedDict.fromkeys(configs):  # a config listed twice runs once
        cfg, error = None, None
        try:
            cfg = get_cfg(config, list(opts))
        except Exception as e:  # reported as a failed row, never raised
            error = "{}: {}".format(type(e).__name__, e).splitlines()[0]
        name = run_name(config, cfg)
        if name in used and used[name] != config:  # e.g. configs/<dataset>/<pair>/kd.yaml of two pairs
            parent = slug(os.path.basename(os.path.dirname(os.path.abspath(config))))
            name = "{}_{}".format(parent, name) if parent else name
        if name in used and used[name] != config:
            i = 2
            while "{}_{}".format(name, i) in used:
                i += 1
            name = "{}_{}".format(name, i)
        used[name] = config
        for seed in seeds:
            runs.append(Run(config, seed, name, sweep_dir, cfg, error))
    return runs
