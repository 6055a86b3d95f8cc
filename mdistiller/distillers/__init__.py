"""Registry of distillers: ``distiller_dict[KEY] = class`` (mdistiller's keys).

Adding a method is one file with ``@register_distiller("KEY")`` on its class,
one import line below, and its config block in ``mdistiller/engine/cfg.py``.
"""
from .registry import distiller_dict, register_distiller, get_distiller_class, build_distiller  # noqa: F401
from ._base import Distiller, Vanilla  # noqa: F401

register_distiller("NONE")(Vanilla)

# One import per method file; the decorator next to each class fills distiller_dict.
from .KD import KD  # noqa: E402,F401
from .DKD import DKD  # noqa: E402,F401
from .CRD import CRD  # noqa: E402,F401
from .OTKD import OTKD  # noqa: E402,F401
from .WCORD import WCORD  # noqa: E402,F401
from .combine import Combine  # noqa: E402,F401
from .WKD import WKD  # noqa: E402,F401
from .WKL import WKL  # noqa: E402,F401
from .KD2M import KD2M  # noqa: E402,F401
