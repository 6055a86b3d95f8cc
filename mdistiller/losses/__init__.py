"""Distillation losses as pure functions of tensors.

Each function's docstring gives its equation and source; the method classes in
``mdistiller.distillers`` choose features, weights and schedules and call these.
"""
from .kd import kd_loss  # noqa: F401
from .dkd import dkd_loss, dkd_parts  # noqa: F401
from .rkd import rkd_loss  # noqa: F401
from .sp import sp_loss  # noqa: F401
from .vid import vid_loss  # noqa: F401
from .ofd import ofd_loss, ofd_margin  # noqa: F401
from .reviewkd import hcl_loss  # noqa: F401
