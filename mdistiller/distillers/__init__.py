"""The methods: ``distiller_dict[KEY] = class`` (mdistiller's keys).

Adding a method is one file whose class carries ``@register_distiller("KEY")``
and its config block (``DEFAULTS``), plus one import line below; the config,
dataset layer, benchmark tables, diagnostics and demo pick it up from the class.
"""
from ..registry import distiller_dict, get_distiller_class, register_distiller  # noqa: F401
from .registry import build_distiller  # noqa: F401
from ._base import Distiller, ModelOutput, Vanilla  # noqa: F401

from .KD import KD  # noqa: E402,F401
from .DKD import DKD  # noqa: E402,F401
from .CRD import CRD  # noqa: E402,F401
from .OTKD import OTKD  # noqa: E402,F401
from .WCORD import WCORD  # noqa: E402,F401
from .combine import Combine  # noqa: E402,F401
from .WKD import WKD  # noqa: E402,F401
from .WKL import WKL  # noqa: E402,F401
from .KD2M import KD2M  # noqa: E402,F401
from .FITNET import FitNet  # noqa: E402,F401
from .AT import AT  # noqa: E402,F401
from .NST import NST  # noqa: E402,F401
from .PKT import PKT  # noqa: E402,F401
from .KDSVD import KDSVD  # noqa: E402,F401
from .RKD import RKD  # noqa: E402,F401
from .SP import SP  # noqa: E402,F401
from .VID import VID  # noqa: E402,F401
from .OFD import OFD  # noqa: E402,F401
from .REVIEWKD import REVIEWKD  # noqa: E402,F401
