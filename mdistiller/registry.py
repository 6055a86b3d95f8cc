"""The method registry: ``distiller_dict[KEY] = class``, filled by ``@register_distiller(KEY)`` next to each class.

This is the lowest layer of the package (it imports nothing from mdistiller at import time), so
the dataset layer, the config and the benchmark runner can all ask a method
what it needs without importing the method implementations. The built-in
methods register themselves when ``mdistiller.distillers`` is imported, which
the config (``mdistiller.engine.cfg``) does: every config object comes with them.

A method's variant for another task (``DatasetSpec.task`` of ``DATASET.TYPE``, e.g. detection) registers under
the same key with ``@register_distiller(KEY, task="detection")`` and shares the method's config block; it lives
in :data:`task_distillers`. ``distiller_dict`` is the classification table (mdistiller's).
"""
from collections import namedtuple

distiller_dict = {}
# SOLVER.TRAINER names that train with the Distillation-Oriented Trainer (engine.dot.DotStep); mdistiller's names.
DOT_TRAINERS = ("dot", "crd_dot")
# DatasetSpec.task -> {KEY: class}; "classification" is distiller_dict itself.
task_distillers = {"classification": distiller_dict}
_listeners = []

# What a method needs from the data layer and the trainer:
#   teacher          a frozen teacher network is built and run;
#   contrastive_k    > 0: the train set yields CRD's (index, contrastive_index) with this many negatives;
#   contrastive_mode "exact" | "relax" (CRD's positive sampling);
#   num_data         the constructor takes the training-set size as its fourth argument.
DataNeeds = namedtuple("DataNeeds", ["teacher", "contrastive_k", "contrastive_mode", "num_data"])
DataNeeds.__new__.__defaults__ = (True, 0, "exact", False)


def register_distiller(key, task="classification"):
    """Class decorator: ``@register_distiller("KD")`` makes the class ``distiller_dict["KD"]``;
    ``@register_distiller("KD", task="detection")`` makes it KD's variant for the detection task."""

    def add(cls):
        table = task_distillers.setdefault(task, {})
        if key in table and table[key] is not cls:
            raise KeyError("Distiller {!r} ({}) is registered twice ({} and {})".format(key, task, table[key], cls))
        table[key] = cls
        cls.registry_name = key
        cls.task = task
        for listener in _listeners:
            listener(cls)
        return cls

    return add


def on_register(listener):
    """Call ``listener(cls)`` for every registered class, now and on every later registration."""
    _listeners.append(listener)
    for cls in list(distiller_dict.values()):
        listener(cls)


def get_distiller_class(key, task="classification"):
    """The class registered under ``key`` for ``task``; an unknown key lists the valid ones (a method without a
    variant for ``task`` lists the methods that have one)."""
    table = task_distillers.get(task, {})
    try:
        return table[key]
    except KeyError:
        if task != "classification" and key in distiller_dict:
            raise KeyError("DISTILLER.TYPE {} has no {} variant; {} methods: {}".format(
                key, task, task, ", ".join(sorted(table)))) from None
        raise KeyError(
            "Unknown distiller {!r} (DISTILLER.TYPE). Valid names: {}".format(key, ", ".join(sorted(table)))
        ) from None


def data_needs(cfg):
    """:data:`DataNeeds` of the configured method (``cfg.DISTILLER.TYPE``; a task's variant shares its method's)."""
    return get_distiller_class(cfg.DISTILLER.TYPE).data_needs(cfg)


def method_label(cfg):
    """The configured method's name in result tables: its class's ``label(cfg)``, then ``+LS`` with logit
    standardization and ``+DOT`` when trained with the Distillation-Oriented Trainer."""
    label = get_distiller_class(cfg.DISTILLER.TYPE).label(cfg)
    if cfg.EXPERIMENT.LOGIT_STAND:
        label += "+LS"
    if str(cfg.SOLVER.TRAINER).lower() in DOT_TRAINERS:
        label += "+DOT"
    return label
