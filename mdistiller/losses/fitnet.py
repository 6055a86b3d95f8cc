"""FitNets' hint loss (Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015)."""
import torch.nn.functional as F


def hint_loss(regressed_student, hint_teacher):
    """``mean((r(f_s) − f_t)²)`` over every element: the hint loss of Romero et al., Section 2.2, Eq. (3).

    The paper's ``½‖u_h − r(v_g)‖²`` is taken as a mean (``F.mse_loss``), as
    mdistiller's FitNet computes it; the weight (``FITNET.LOSS.FEAT_WEIGHT``)
    absorbs the scale.

    Args:
        regressed_student: (B, C, H, W) student hint after the regressor ``r`` (``ConvReg``).
        hint_teacher: the teacher's hint feature, same shape.
    """
    return F.mse_loss(regressed_student, hint_teacher)
