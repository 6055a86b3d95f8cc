"""Distillation losses as pure functions of tensors.

Each function's docstring gives its equation and source; the method classes in
``mdistiller.distillers`` choose features, weights and schedules and call these.
"""
from .kd import kd_loss  # noqa: F401
from .dkd import dkd_loss, dkd_parts  # noqa: F401
from .standardize import standardize_logits  # noqa: F401
from .crd import contrast_scores, crd_loss, momentum_update, nce_loss  # noqa: F401
from .wcord import wcord_local_loss  # noqa: F401
from .otkd import ot_stage_loss, otkd_loss  # noqa: F401
from .kd2m import kd2m_distance  # noqa: F401
from .fitnet import hint_loss  # noqa: F401
from .at import at_loss  # noqa: F401
from .nst import nst_loss  # noqa: F401
from .pkt import pkt_loss  # noqa: F401
from .kdsvd import kdsvd_loss  # noqa: F401
from .rkd import rkd_loss  # noqa: F401
from .sp import sp_loss  # noqa: F401
from .vid import vid_loss  # noqa: F401
from .ofd import ofd_loss, ofd_margin  # noqa: F401
from .reviewkd import hcl_loss  # noqa: F401
