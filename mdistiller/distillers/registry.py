"""Building a distiller from a config (the registry itself is :mod:`mdistiller.registry`)."""
from ..dataset.table import task_of
from ..registry import distiller_dict, get_distiller_class, register_distiller, task_distillers  # noqa: F401


def construct(cls, student, teacher, cfg, num_data=None):
    """``cls(student, teacher, cfg)``, plus the training-set size when ``cls.data_needs(cfg).num_data``."""
    if cfg.EXPERIMENT.LOGIT_STAND and not cls.LOGIT_STANDARDIZATION:
        supported = sorted(k for k, c in task_distillers[cls.task].items() if c.LOGIT_STANDARDIZATION)
        raise ValueError(
            "EXPERIMENT.LOGIT_STAND is not supported by {} (it has no logit distillation term); "
            "methods that support it: {}".format(cls.registry_name, ", ".join(supported))
        )
    if cls.data_needs(cfg).num_data:
        if num_data is None:
            raise ValueError("{} needs the training-set size (num_data)".format(cls.registry_name))
        return cls(student, teacher, cfg, num_data)
    return cls(student, teacher, cfg)


def build_distiller(cfg, student, teacher, num_data=None):
    """The distiller named by ``cfg.DISTILLER.TYPE`` around ``student`` and ``teacher``: the method's variant for the
    task of ``DATASET.TYPE`` (detection: the RCNNKD step, ``distillers/_detection.py``)."""
    return construct(get_distiller_class(cfg.DISTILLER.TYPE, task_of(cfg)), student, teacher, cfg, num_data)
