"""The method registry: ``distiller_dict[KEY] = class``, filled by ``@register_distiller(KEY)`` next to each class.

This is the lowest layer of the package (it imports nothing from mdistiller), so
the dataset layer, the config and the benchmark runner can all ask a method
what it needs without importing the method implementations. The built-in
methods register themselves when ``mdistiller.distillers`` is imported, which
the config (``mdistiller.engine.cfg``) does: every config object comes with them.
"""
from collections import namedtuple

distiller_dict = {}
_listeners = []

# What a method needs from the data layer and the trainer:
#   teacher          a frozen teacher network is built and run;
#   contrastive_k    > 0: the train set yields CRD's (index, contrastive_index) with this many negatives;
#   contrastive_mode "exact" | "relax" (CRD's positive sampling);
#   num_data         the constructor takes the training-set size as its fourth argument.
DataNeeds = namedtuple("DataNeeds", ["teacher", "contrastive_k", "contrastive_mode", "num_data"])
DataNeeds.__new__.__defaults__ = (True, 0, "exact", False)


def register_distiller(key):
    """Class decorator: ``@register_distiller("KD")`` makes the class ``distiller_dict["KD"]``."""

    def add(cls):
        if key in distiller_dict and distiller_dict[key] is not cls:
            raise KeyError("Distiller {!r} is registered twice ({} and {})".format(key, distiller_dict[key], cls))
        distiller_dict[key] = cls
        cls.registry_name = key
        for listener in _listeners:
            listener(cls)
        return cls

    return add


def on_register(listener):
    """Call ``listener(cls)`` for every registered class, now and on every later registration."""
    _listeners.append(listener)
    for cls in list(distiller_dict.values()):
        listener(cls)


def get_distiller_class(key):
    """The class registered under ``key``; an unknown key lists the valid ones."""
    try:
        return distiller_dict[key]
    except KeyError:
        raise KeyError(
            "Unknown distiller {!r} (DISTILLER.TYPE). Valid names: {}".format(key, ", ".join(sorted(distiller_dict)))
        ) from None


def data_needs(cfg):
    """:data:`DataNeeds` of the configured method (``cfg.DISTILLER.TYPE``)."""
    return get_distiller_class(cfg.DISTILLER.TYPE).data_needs(cfg)


def method_label(cfg):
    """The configured method's name in result tables: its class's ``label(cfg)``, then ``+LS`` with logit
    standardization and ``+DOT`` when trained with the Distillation-Oriented Trainer."""
    label = get_distiller_class(cfg.DISTILLER.TYPE).label(cfg)
    if cfg.EXPERIMENT.LOGIT_STAND:
        label += "+LS"
    if str(cfg.SOLVER.TRAINER).lower() == "dot":
        label += "+DOT"
    return label
