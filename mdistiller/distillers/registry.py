"""The distiller registry and the one function that builds a distiller from a config."""

distiller_dict = {}


def register_distiller(name):
    """Class decorator: ``@register_distiller("KD")`` makes the class ``distiller_dict["KD"]``."""

    def add(cls):
        if name in distiller_dict and distiller_dict[name] is not cls:
            raise KeyError("Distiller {!r} is registered twice ({} and {})".format(name, distiller_dict[name], cls))
        distiller_dict[name] = cls
        cls.registry_name = name
        return cls

    return add


def get_distiller_class(name):
    try:
        return distiller_dict[name]
    except KeyError:
        raise KeyError(
            "Unknown distiller {!r} (DISTILLER.TYPE). Valid names: {}".format(name, ", ".join(sorted(distiller_dict)))
        ) from None


def build_distiller(cfg, student, teacher, num_data=None):
    """``cls(student, teacher, cfg)``, plus the training-set size for methods that need it."""
    cls = get_distiller_class(cfg.DISTILLER.TYPE)
    if getattr(cls, "requires_num_data", False):
        if num_data is None:
            raise ValueError("{} needs the training-set size (num_data)".format(cfg.DISTILLER.TYPE))
        return cls(student, teacher, cfg, num_data)
    return cls(student, teacher, cfg)
