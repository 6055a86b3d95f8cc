"""WKD: Wasserstein-distance knowledge distillation (Lv, Yang & Li, NeurIPS 2024).

Two parts, each on when its weight is > 0 (config block ``WKD``):

* WKD-L (logits). ``L = L_t + γ(e)·W`` with
  ``L_t = −mean_b softmax(z_t)[y]·log_softmax(z_s)[y]`` (T = 1, the teacher's
  target probability detached) and ``W`` the batch mean of the entropic
  transport cost, under a class-to-class ground cost D, between the teacher's
  and the student's distributions softmax(z/T) over the C − 1 non-target
  classes (fixed 10-iteration Sinkhorn, λ = 0.05; ``mdistiller.ot.sinkhorn``).
  D is ``1 − CKA`` between the teacher's class features (a file made by
  ``tools/generate_cost_matrix.py`` or fetched by ``download_ckpts.sh``) or
  ``1 − cos`` of the teacher's classifier rows (``COST_MATRIX fc``), sharpened
  ``D ← 1 − exp(−s·D)`` and clipped ``relu(D) + 1e-8`` as released.
* WKD-F (features). Each image's stage-``HINT_LAYER`` feature map (the
  student's after a projector to the teacher's shape) is modelled per channel
  and per window of a grid × grid partition (adaptive-pooling windows) as a
  diagonal Gaussian ``N(μ, diag σ²)``, ``σ = sqrt(unbiased var + EPS)``; the
  loss is the 2-Wasserstein distance between these Gaussians,
  ``MEAN_COV_RATIO·Σ‖Δμ‖² + Σ‖Δσ‖²``, divided by grid²·batch.

Both weights follow the release's schedule: constant up to
``COSINE_DECAY_EPOCH``, then cosine decay to 0 at ``SOLVER.EPOCHS``.

The computation matches the release (github.com/JiamingLv/WKD,
``mdistiller/distillers/WKD.py``) value for value and gradient for gradient,
except that WKD-L runs one shared (C, C) Sinkhorn kernel with each sample's
target class masked out (``sinkhorn_nontarget``) instead of copying the cost
to a (B, C − 1, C − 1) tensor per step: the same iterates (exactly, in exact
arithmetic; see ``sinkhorn_masked``), and at B = 256, C = 1000 on 2 CPU cores
0.15 s and 72 MB instead of 30 s and 8 GB per forward + backward
(``benchmarks/wkd_logit_speed.py``).
"""
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ot.gaussian import gaussian_w2_diag
from ..ot.sinkhorn import SINKHORN_STAB, sinkhorn_kernel, sinkhorn_nontarget
from ._base import Distiller, fp32_losses
from ._common import ConvReg, probe_features, probe_input_size
from ._common import resample_conv as _resample_conv
from ..registry import register_distiller

# The release clips the ground cost with relu(D) + this constant.
COST_FLOOR = 1e-8
# Hidden width of the release's bottleneck projector.
BOTTLENECK_HIDDEN = 256
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COST_MATRIX_HINT = (
    "Fetch the released matrices with `bash download_ckpts.sh` (they go to wkd_cost_matrix/...), or compute one "
    "with `python tools/generate_cost_matrix.py --teacher NAME --dataset cifar100|imagenet`, or use "
    "`WKD.COST_MATRIX fc` (1 - cos of the teacher's classifier weights, no file needed)."
)


# ---------------------------------------------------------------------------
# Schedules
# ---------------------------------------------------------------------------


def cosine_decay_weight(weight, epoch, decay_epoch, total_epochs):
    """The release's loss-weight schedule.

    ``weight`` while ``epoch <= decay_epoch``, then
    ``0.5·weight·(1 + cos(π·(epoch − decay_epoch)/(total_epochs − decay_epoch)))``,
    which is ``weight/2`` half-way and 0 at ``epoch == total_epochs`` (epochs are
    1-based as in mdistiller's trainer).
    """
    if epoch <= decay_epoch or total_epochs <= decay_epoch:
        return weight
    progress = (epoch - decay_epoch) / (total_epochs - decay_epoch)
    return 0.5 * weight * (1.0 + math.cos(math.pi * progress))


# ---------------------------------------------------------------------------
# WKD-L
# ---------------------------------------------------------------------------


def _hard_target(target):
    """Class indices from labels given as indices (B,) or as (soft) one-hot rows (B, C) (argmax, as released)."""
    if target.dim() > 1:
        return target.argmax(dim=1)
    return target


def wkd_logit_parts(logits_student, logits_teacher, target, cost, temperature, reg, num_iter, kernel=None):
    """The two terms of WKD-L: ``(loss_t, w)``; the release's loss is ``loss_t + γ·w``.

    * ``loss_t = −mean_b p_t[b, y_b]·log p_s[b, y_b]`` with p = softmax(z) (T = 1),
      the teacher's factor detached;
    * ``w = mean_b W_b``, W_b the fixed-iteration Sinkhorn transport cost
      (student → teacher, λ = ``reg``, ``num_iter`` iterations, u⁰ = 1/(C−1))
      between softmax(z_s/T) and softmax(z_t/T) restricted to the C − 1
      non-target classes, under ``cost`` restricted likewise (unweighted).

    Args:
        logits_student, logits_teacher: (B, C), fp32 (or fp64) logits; the
            gradient flows to ``logits_student`` through both terms.
        target: (B,) class indices, or (B, C) (soft) labels (argmax is used).
        cost: the final (C, C) ground cost, i.e. already sharpened and clipped
            (``prepare_cost_matrix``); ignored when ``kernel`` is given.
        temperature, reg, num_iter: T, λ and the Sinkhorn iteration count.
        kernel: optional precomputed ``sinkhorn_kernel(cost, reg)``.

    Source: Lv et al., NeurIPS 2024, Eqs. (4)-(5); release
    ``wkd_logit_loss_with_speration``, computed here with a shared masked
    kernel (``mdistiller.ot.sinkhorn.sinkhorn_nontarget``).
    """
    label = _hard_target(target).view(-1, 1)
    log_p_student = F.log_softmax(logits_student, dim=1)
    p_teacher = F.softmax(logits_teacher, dim=1)
    loss_t = -(p_teacher.gather(1, label).detach() * log_p_student.gather(1, label)).mean()

    non_target = torch.ones_like(logits_student, dtype=torch.bool).scatter_(1, label, False)
    minus_inf = logits_student.new_tensor(float("-inf"))
    q_student = F.softmax(torch.where(non_target, logits_student / temperature, minus_inf), dim=1)
    q_teacher = F.softmax(torch.where(non_target, logits_teacher / temperature, minus_inf), dim=1)
    w = sinkhorn_nontarget(q_student, q_teacher, label.view(-1), cost, reg, num_iter, stab=SINKHORN_STAB, kernel=kernel)
    return loss_t, w.mean()


def wkd_logit_loss(logits_student, logits_teacher, target, cost, temperature, reg, num_iter, gamma, kernel=None):
    """``loss_t + gamma·w`` (the release's ``wkd_logit_loss_with_speration``)."""
    loss_t, w = wkd_logit_parts(logits_student, logits_teacher, target, cost, temperature, reg, num_iter, kernel=kernel)
    return loss_t + gamma * w


def classifier_weight(model):
    """The (C, d) weight of a model's final linear classifier.

    Looks for a ``nn.Linear`` named ``fc``, ``linear``, ``classifier`` or
    ``head`` (possibly an ``nn.Sequential`` ending with one), else takes the
    last ``nn.Linear`` among the model's modules.
    """
    for name in ("fc", "linear", "classifier", "head"):
        module = getattr(model, name, None)
        if isinstance(module, nn.Sequential):
            linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
            module = linears[-1] if linears else None
        if isinstance(module, nn.Linear):
            return module.weight
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("{} has no nn.Linear classifier; WKD.COST_MATRIX fc needs one".format(type(model).__name__))
    return linears[-1].weight


def fc_cost_matrix(model):
    """``1 − cos(w_i, w_j)`` between the rows of the model's classifier weight: a (C, C) float32 tensor."""
    with torch.no_grad():
        weight = F.normalize(classifier_weight(model).detach().float(), p=2, dim=-1)
        return 1.0 - weight @ weight.t()


def resolve_cost_path(path):
    """``path`` as given if it exists, else relative to the repository root (where the official layout lives)."""
    if os.path.isabs(path) or os.path.exists(path):
        return path
    candidate = os.path.join(_REPO_ROOT, path)
    return candidate if os.path.exists(candidate) else path


def load_cost_matrix(path):
    """A (C, C) cost matrix saved with ``torch.save`` (possibly from CUDA, with grad, non-contiguous) as a float32 CPU tensor."""
    if not path:
        raise FileNotFoundError("WKD.COST_MATRIX_PATH is empty. " + COST_MATRIX_HINT)
    resolved = resolve_cost_path(path)
    if not os.path.isfile(resolved):
        where = os.path.abspath(path)
        if not os.path.isabs(path):
            where += " (nor {})".format(os.path.join(_REPO_ROOT, path))
        raise FileNotFoundError("WKD cost matrix not found: {}. {}".format(where, COST_MATRIX_HINT))
    matrix = torch.load(resolved, map_location="cpu", weights_only=True)
    if isinstance(matrix, dict):  # tolerate {"cost_matrix": tensor}-style files with one tensor
        tensors = [v for v in matrix.values() if torch.is_tensor(v)]
        if len(tensors) != 1:
            raise ValueError("{} holds a dict without a single tensor; expected a (C, C) tensor".format(resolved))
        matrix = tensors[0]
    if not torch.is_tensor(matrix):
        matrix = torch.as_tensor(matrix)
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError("{} holds a tensor of shape {}, expected a square (C, C) matrix".format(resolved, tuple(matrix.shape)))
    return matrix.detach().float().contiguous().clone()


def prepare_cost_matrix(dist, sharpen):
    """The release's post-processing: ``D ← 1 − exp(−sharpen·D)`` unless sharpen is 0, then ``relu(D) + 1e-8``.

    Keeps a floating dtype (float64 stays float64); other dtypes become float32.
    """
    if not dist.is_floating_point():
        dist = dist.float()
    if sharpen != 0:
        dist = 1.0 - torch.exp(-sharpen * dist)
    return F.relu(dist) + COST_FLOOR


def build_cost_matrix(wkd_cfg, teacher):
    """The final (C, C) ground cost of WKD-L from the ``WKD`` config block and the teacher."""
    if str(wkd_cfg.COST_MATRIX).lower() == "fc":
        raw = fc_cost_matrix(teacher)
    else:
        raw = load_cost_matrix(wkd_cfg.COST_MATRIX_PATH)
    return prepare_cost_matrix(raw, wkd_cfg.COST_MATRIX_SHARPEN)


# ---------------------------------------------------------------------------
# WKD-F
# ---------------------------------------------------------------------------


def _window_index(size, grid, device):
    """Gather indices (grid, k) and validity mask of adaptive-pooling windows along one axis.

    Window i covers [floor(i·size/grid), ceil((i+1)·size/grid)), as in
    ``adaptive_avg_pool2d``; windows shorter than the longest are padded with
    their last index and masked out.
    """
    starts = [(i * size) // grid for i in range(grid)]
    ends = [-((-(i + 1) * size) // grid) for i in range(grid)]
    width = max(e - s for s, e in zip(starts, ends))
    offsets = torch.arange(width, device=device)
    start = torch.tensor(starts, device=device).unsqueeze(1)
    end = torch.tensor(ends, device=device).unsqueeze(1)
    index = torch.minimum(start + offsets, end - 1)
    valid = (start + offsets) < end
    return index, valid


def window_mean_std(x, grid, eps):
    """Per-channel mean and ``sqrt(unbiased var + eps)`` of (B, C, H, W) maps on a grid × grid of windows.

    Returns two (B, C, grid, grid) tensors. The windows are those of
    ``adaptive_avg_pool2d`` (they overlap when grid does not divide H or W);
    grid 1 is the whole map. Vectorised: one gather builds the padded windows,
    the statistics are two-pass (mean, then centred squares) over valid cells.
    """
    batch, channels, height, width = x.shape
    if grid == 1:
        return x.mean(dim=(2, 3), keepdim=True), torch.sqrt(x.var(dim=(2, 3), keepdim=True) + eps)
    if height % grid == 0 and width % grid == 0:
        blocks = x.reshape(batch, channels, grid, height // grid, grid, width // grid)
        mean = blocks.mean(dim=(3, 5))
        var = blocks.var(dim=(3, 5))
        return mean, torch.sqrt(var + eps)
    index_h, valid_h = _window_index(height, grid, x.device)
    index_w, valid_w = _window_index(width, grid, x.device)
    kh, kw = index_h.shape[1], index_w.shape[1]
    windows = x.index_select(2, index_h.reshape(-1)).index_select(3, index_w.reshape(-1))
    windows = windows.reshape(batch, channels, grid, kh, grid, kw)
    valid = (valid_h.view(grid, kh, 1, 1) & valid_w.view(1, 1, grid, kw)).to(x.dtype)
    count = valid.sum(dim=(1, 3))
    mean = (windows * valid).sum(dim=(3, 5)) / count
    centred = (windows - mean.view(batch, channels, grid, 1, grid, 1)) * valid
    var = centred.pow(2).sum(dim=(3, 5)) / (count - 1)
    return mean, torch.sqrt(var + eps)


def _gaussian_w2_parts(mu_s, sigma_s, mu_t, sigma_t):
    """Per-sample ``(‖Δμ‖², ‖Δσ‖²)`` over every channel and window (the diagonal-Gaussian W2² terms)."""
    batch = mu_s.shape[0]
    mean_term = (mu_s - mu_t).pow(2).reshape(batch, -1).sum(1)
    cov_term = (sigma_s - sigma_t).pow(2).reshape(batch, -1).sum(1)
    return mean_term, cov_term


def wkd_feature_parts(f_s, f_t, eps=1e-5, grid=1):
    """``(mean_loss, cov_loss)`` of WKD-F, each summed over channels and windows and divided by grid²·B.

    The loss is ``MEAN_COV_RATIO·mean_loss + cov_loss``, i.e. the squared
    2-Wasserstein distance between diagonal Gaussians
    ``W2² = ‖μ_s − μ_t‖² + ‖σ_s − σ_t‖²`` with the mean term re-weighted.

    Source: Lv et al., NeurIPS 2024, Eq. (7); release ``wkd_feature_loss``.
    """
    mu_s, sigma_s = window_mean_std(f_s, grid, eps)
    mu_t, sigma_t = window_mean_std(f_t, grid, eps)
    mean_term, cov_term = _gaussian_w2_parts(mu_s, sigma_s, mu_t, sigma_t)
    norm = grid * grid * f_s.shape[0]
    return mean_term.sum() / norm, cov_term.sum() / norm


def wkd_feature_loss(f_s, f_t, eps=1e-5, grid=1, mean_cov_ratio=2.0):
    """WKD-F, ``(Σ_b W2²_b) / (grid²·B)`` with the mean term weighted by ``mean_cov_ratio``.

    ``W2²_b = ratio·‖μ_s − μ_t‖² + ‖σ_s − σ_t‖²`` over all channels and windows
    of sample b (``mdistiller.ot.gaussian.gaussian_w2_diag``); equal to
    ``ratio·mean_loss + cov_loss`` of ``wkd_feature_parts``.
    """
    batch = f_s.shape[0]
    mu_s, sigma_s = window_mean_std(f_s, grid, eps)
    mu_t, sigma_t = window_mean_std(f_t, grid, eps)
    per_sample = gaussian_w2_diag(
        mu_s.reshape(batch, -1), sigma_s.reshape(batch, -1), mu_t.reshape(batch, -1), sigma_t.reshape(batch, -1),
        mean_weight=mean_cov_ratio,
    )
    return per_sample.sum() / (grid * grid * batch)


class ConvRegBottleNeck(nn.Module):
    """The release's ``bottleneck`` projector: 1x1 (→ hidden) → 3x3 → 1x1 (→ teacher channels) → BN → ReLU.

    No normalisation between the convolutions, as released. The middle conv
    also resamples: 3x3 stride 1 for equal sizes, 3x3 stride 2 when the student
    map is 2x larger, a 4x4 stride-2 transposed conv when it is 2x smaller (the
    release's own 2x-smaller branch has mismatched channels and cannot run;
    this is the working equivalent on the hidden width).
    """

    def __init__(self, s_shape, t_shape, c_hidden=BOTTLENECK_HIDDEN, use_relu=True, use_bn=True):
        super().__init__()
        s_c, t_c = s_shape[1], t_shape[1]
        self.use_relu = use_relu
        self.use_bn = use_bn
        self.conv1 = nn.Conv2d(s_c, c_hidden, kernel_size=1)

        def same(dh, dw):
            return nn.Conv2d(c_hidden, c_hidden, kernel_size=(3 + dh, 3 + dw), stride=1, padding=1)

        self.conv2 = _resample_conv(s_shape, t_shape, c_hidden, c_hidden, same)
        self.conv3 = nn.Conv2d(c_hidden, t_c, kernel_size=1)
        self.bn = nn.BatchNorm2d(t_c)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.conv3(self.conv2(self.conv1(x)))
        if self.use_relu:
            return self.relu(self.bn(x))
        if self.use_bn:
            return self.bn(x)
        return x


PROJECTORS = {"conv1x1": ConvReg, "bottleneck": ConvRegBottleNeck}


def get_feat_shapes(student, teacher, input_size):
    """Shapes of ``feats`` of both networks from one eval-mode dry forward (no BN statistics change)."""
    return ([f.shape for f in probe_features(student, input_size)["feats"]],
            [f.shape for f in probe_features(teacher, input_size)["feats"]])


# ---------------------------------------------------------------------------
# The distiller
# ---------------------------------------------------------------------------


@register_distiller("WKD")
class WKD(Distiller):
    """Wasserstein Distance Rivals KL Divergence for Knowledge Distillation (Lv et al. NeurIPS 2024).

    Loss dict: ``loss_ce``, ``loss_kd`` (WKD-L, ``L_t + γ_L(e)·W``; a zero tensor
    when WKD-L is off, as the release's ``loss_kd``) and, when WKD-F is on,
    ``loss_feat`` (``γ_F(e)·(ratio·Σ‖Δμ‖² + Σ‖Δσ‖²)/(grid²·B)``).
    """

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher)
        w = cfg.WKD
        self.epochs = cfg.SOLVER.EPOCHS
        self.ce_weight = w.LOSS.CE_WEIGHT
        self.logit_weight = w.LOSS.WKD_LOGIT_WEIGHT
        self.feat_weight = w.LOSS.WKD_FEAT_WEIGHT
        self.decay_epoch = w.LOSS.COSINE_DECAY_EPOCH
        self.enable_wkdl = self.logit_weight > 0
        self.enable_wkdf = self.feat_weight > 0

        if self.enable_wkdl:
            self.temperature = w.TEMPERATURE
            self.sinkhorn_lambda = w.SINKHORN.LAMBDA
            self.sinkhorn_iter = int(w.SINKHORN.ITER)
            cost = build_cost_matrix(w, teacher)
            num_classes = classifier_weight(teacher).shape[0] if _has_linear(teacher) else cost.shape[0]
            if cost.shape[0] != num_classes:
                raise ValueError(
                    "WKD cost matrix is {}x{} but the teacher has {} classes ({}). {}".format(
                        cost.shape[0], cost.shape[1], num_classes, w.COST_MATRIX_PATH or "fc", COST_MATRIX_HINT
                    )
                )
            self.register_buffer("cost_matrix", cost)
            kernel, kernel_cost = sinkhorn_kernel(cost, self.sinkhorn_lambda)
            self.register_buffer("sinkhorn_K", kernel, persistent=False)
            self.register_buffer("sinkhorn_KD", kernel_cost, persistent=False)

        if self.enable_wkdf:
            self.mean_cov_ratio = w.MEAN_COV_RATIO
            self.eps = w.EPS
            self.hint_layer = int(w.HINT_LAYER)
            self.spatial_grid = int(w.SPATIAL_GRID)
            if w.PROJECTOR not in PROJECTORS:
                raise ValueError("Unknown WKD.PROJECTOR {!r}; valid: {}".format(w.PROJECTOR, ", ".join(PROJECTORS)))
            feat_s_shapes, feat_t_shapes = get_feat_shapes(student, teacher, probe_input_size(cfg, cfg.WKD.INPUT_SIZE))
            depth = min(len(feat_s_shapes), len(feat_t_shapes))
            if not -depth <= self.hint_layer < depth:
                raise ValueError(
                    "WKD.HINT_LAYER {} is out of range: the student has {} and the teacher {} `feats` entries".format(
                        self.hint_layer, len(feat_s_shapes), len(feat_t_shapes)
                    )
                )
            s_shape, t_shape = feat_s_shapes[self.hint_layer], feat_t_shapes[self.hint_layer]
            if min(_smallest_window(n, self.spatial_grid) for n in t_shape[-2:]) < 2:
                # Windows of one pixel have no (unbiased) variance: the loss would be NaN.
                raise ValueError(
                    "WKD.SPATIAL_GRID {} is too fine for the {}x{} teacher feature map of HINT_LAYER {}".format(
                        self.spatial_grid, t_shape[-2], t_shape[-1], self.hint_layer
                    )
                )
            if w.PROJECTOR == "bottleneck":
                self.conv_reg = ConvRegBottleNeck(s_shape, t_shape, c_hidden=BOTTLENECK_HIDDEN)
            else:
                self.conv_reg = ConvReg(s_shape, t_shape)

    @classmethod
    def label(cls, cfg):
        """``WKD-L``, ``WKD-F`` or ``WKD-L+F`` (the parts whose weight is > 0)."""
        logit, feat = cfg.WKD.LOSS.WKD_LOGIT_WEIGHT > 0, cfg.WKD.LOSS.WKD_FEAT_WEIGHT > 0
        return {(True, False): "WKD-L", (False, True): "WKD-F", (True, True): "WKD-L+F"}.get((logit, feat), "WKD")

    @classmethod
    def logit_temperature(cls, cfg):
        return float(cfg.WKD.TEMPERATURE), "WKD.TEMPERATURE"

    def ground_cost(self):
        if not self.enable_wkdl:
            return None
        return self.cost_matrix, float(self.sinkhorn_lambda), int(self.sinkhorn_iter)

    def _kernel(self, dtype):
        if dtype == self.sinkhorn_K.dtype:
            return self.sinkhorn_K, self.sinkhorn_KD
        return sinkhorn_kernel(self.cost_matrix.to(dtype), self.sinkhorn_lambda)

    def logit_weight_at(self, epoch):
        return cosine_decay_weight(self.logit_weight, epoch, self.decay_epoch, self.epochs)

    def feat_weight_at(self, epoch):
        return cosine_decay_weight(self.feat_weight, epoch, self.decay_epoch, self.epochs)

    def logit_loss(self, logits_student, logits_teacher, target, epoch):
        """WKD-L, ``L_t + γ(e)·W``, as a function of the logits (also used by the diagnostics)."""
        if not self.enable_wkdl:
            return logits_student.new_zeros(())
        loss_t, w = wkd_logit_parts(
            logits_student,
            logits_teacher,
            target,
            self.cost_matrix,
            self.temperature,
            self.sinkhorn_lambda,
            self.sinkhorn_iter,
            kernel=self._kernel(logits_student.dtype),
        )
        return loss_t + self.logit_weight_at(epoch) * w

    def feature_loss(self, feat_student, feat_teacher, epoch):
        """WKD-F on one pair of feature maps (student before the projector)."""
        f_s = self.conv_reg(feat_student.float())
        loss = wkd_feature_loss(f_s, feat_teacher.float(), eps=self.eps, grid=self.spatial_grid,
                                mean_cov_ratio=self.mean_cov_ratio)
        return self.feat_weight_at(epoch) * loss

    def distill_losses(self, student, teacher, target, epoch, **batch):
        losses = {"loss_kd": self.logit_loss(student.logits, teacher.logits, target, epoch)}
        if self.enable_wkdf:
            losses["loss_feat"] = self.feature_loss(
                student.feats["feats"][self.hint_layer], teacher.feats["feats"][self.hint_layer], epoch
            )
        return losses

def _smallest_window(size, grid):
    """Smallest adaptive-pooling window along a side of ``size`` split into ``grid`` windows."""
    return min(math.ceil((i + 1) * size / grid) - (i * size) // grid for i in range(grid))


def _has_linear(model):
    return any(isinstance(m, nn.Linear) for m in model.modules())
