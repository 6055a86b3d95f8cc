"""Modules and helpers shared by several methods: feature probing, stage selection, projectors, embeddings."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm

from ..losses.crd import l2_normalize
from ..registry import DataNeeds


def _as_size(size):
    if isinstance(size, str):
        size = [int(v) for v in size.strip("()[] ").split(",") if v.strip()]
    if isinstance(size, int):
        return (size, size)
    return tuple(int(v) for v in size)


def probe_input_size(cfg, fallback=None):
    """Image size of the dry forward that reads feature shapes.

    The dataset's own image size where it has one (the dataset table's, :func:`mdistiller.dataset.image_size`:
    32 for CIFAR-like data, digits at its ``DATASET.INPUT_SIZE``, 64 for Tiny-ImageNet); otherwise
    ``DATASET.INPUT_SIZE``, then the method's own ``fallback`` (e.g. WKD.INPUT_SIZE), then 224.
    """
    # Imported here: importing the distillers needs no dataset code (nor the torchvision it imports).
    from ..dataset.table import image_size

    size = image_size(cfg)
    if size is not None:
        return size
    size = cfg.DATASET.INPUT_SIZE or fallback or 224
    return _as_size(size)


@torch.no_grad()
def probe_features(model, input_size):
    """The feature dict of one eval-mode forward on zeros (the model's device and dtype); every module's
    training flag is restored."""
    modes = [(m, m.training) for m in model.modules()]
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else None
    try:
        model.eval()
        _, features = model(torch.zeros((2, 3) + tuple(input_size), device=device, dtype=dtype))
    finally:
        for module, mode in modes:
            module.training = mode
    return features


# ---------------------------------------------------------------------------
# Projectors: a student feature map to the teacher's shape
# ---------------------------------------------------------------------------

# Hidden width of the WKD release's bottleneck projector.
BOTTLENECK_HIDDEN = 256


def resample_conv(s_shape, t_shape, in_channels, out_channels, same_kernel):
    """The convolution that maps the student's spatial size to the teacher's (mdistiller's ConvReg cases).

    Student 2x larger: 3x3 stride-2 conv; 2x smaller: 4x4 stride-2 transposed
    conv; otherwise, when the student is at least as large, ``same_kernel(ΔH, ΔW)``.
    """
    s_h, s_w = s_shape[2], s_shape[3]
    t_h, t_w = t_shape[2], t_shape[3]
    if s_h == 2 * t_h and s_w == 2 * t_w:
        return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1)
    if 2 * s_h == t_h and 2 * s_w == t_w:
        return nn.ConvTranspose2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1)
    if s_h >= t_h and s_w >= t_w:
        return same_kernel(s_h - t_h, s_w - t_w)
    raise ValueError(
        "projector: student feature size {}x{} cannot be mapped to the teacher's {}x{} "
        "(supported: equal, student 2x larger, student 2x smaller, student larger by a valid-conv margin)".format(
            s_h, s_w, t_h, t_w
        )
    )


class ConvReg(nn.Module):
    """mdistiller's convolutional regressor (FitNet's hint regressor, WKD's ``conv1x1`` projector): conv → BN → ReLU.

    Same spatial size: 1x1 conv (a (1+ΔH)x(1+ΔW) valid conv when the student is
    larger by ΔH, ΔW); student 2x larger: 3x3 stride-2 conv; student 2x smaller:
    4x4 stride-2 transposed conv (ShuffleV1 student, WRN-40-2 teacher).
    Submodules ``conv``, ``bn``, ``relu`` as in mdistiller and the WKD release,
    so their checkpoints load.

    Args:
        s_shape, t_shape: (N, C, H, W) shapes of the student's and the teacher's feature maps.
    """

    def __init__(self, s_shape, t_shape):
        super().__init__()
        s_c, t_c = s_shape[1], t_shape[1]
        self.conv = resample_conv(
            s_shape, t_shape, s_c, t_c, lambda dh, dw: nn.Conv2d(s_c, t_c, kernel_size=(1 + dh, 1 + dw))
        )
        self.bn = nn.BatchNorm2d(t_c)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class ConvRegBottleNeck(nn.Module):
    """The WKD release's ``bottleneck`` projector: 1x1 (→ hidden) → 3x3 → 1x1 (→ teacher channels) → BN → ReLU.

    No normalisation between the convolutions, as released. The middle conv
    also resamples: 3x3 stride 1 for equal sizes, 3x3 stride 2 when the student
    map is 2x larger, a 4x4 stride-2 transposed conv on the hidden width when it
    is 2x smaller (the release's own 2x-smaller branch has mismatched channels
    and cannot run). Submodules ``conv1``, ``conv2``, ``conv3``, ``bn``, ``relu``
    as released.

    Args:
        s_shape, t_shape: (N, C, H, W) shapes of the student's and the teacher's feature maps.
        c_hidden: width of the bottleneck.
    """

    def __init__(self, s_shape, t_shape, c_hidden=BOTTLENECK_HIDDEN):
        super().__init__()
        s_c, t_c = s_shape[1], t_shape[1]
        self.conv1 = nn.Conv2d(s_c, c_hidden, kernel_size=1)

        def same(dh, dw):
            return nn.Conv2d(c_hidden, c_hidden, kernel_size=(3 + dh, 3 + dw), stride=1, padding=1)

        self.conv2 = resample_conv(s_shape, t_shape, c_hidden, c_hidden, same)
        self.conv3 = nn.Conv2d(c_hidden, t_c, kernel_size=1)
        self.bn = nn.BatchNorm2d(t_c)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.bn(self.conv3(self.conv2(self.conv1(x)))))


# ---------------------------------------------------------------------------
# Stage selection and embeddings (CRD, WCORD, OTKD, KD2M)
# ---------------------------------------------------------------------------

PENULTIMATE = "pooled"  # the stage name of the penultimate feature (``pooled_feat``)


def parse_stage(value, key):
    """A stage from a config value: ``"pooled"`` -> ``"pooled"``; ``"feats<i>"`` (or an int ``i``) -> ``i``.

    ``key`` names the config entry in the error message (e.g. ``"KD2M.FEATURE"``).
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text == PENULTIMATE:
        return PENULTIMATE
    if text.startswith("feats"):
        try:
            return int(text[len("feats"):])
        except ValueError:
            pass
    raise ValueError("{} must be 'pooled' or 'feats<i>' (e.g. 'feats2', 'feats-1'), got {!r}".format(key, value))


def select_stage(features, stage, key="stage"):
    """A model's stage feature: ``features["pooled_feat"]`` for ``"pooled"``, else ``features["feats"][stage]``.

    Negative indices count from the last ``feats`` entry; ``key`` names the
    config entry in the error message.
    """
    if stage == PENULTIMATE:
        return features["pooled_feat"]
    feats = features["feats"]
    if not -len(feats) <= stage < len(feats):
        raise ValueError("{} {} is out of range for a model with {} feats".format(key, stage, len(feats)))
    return feats[stage]


def stage_vectors(features, stage, key="stage"):
    """The batch's feature vectors (B, d) at ``stage``: :func:`select_stage`, global-average-pooled if a map."""
    feat = select_stage(features, stage, key)
    if feat.dim() == 4:
        feat = torch.nn.functional.adaptive_avg_pool2d(feat, 1)
    return feat.reshape(feat.shape[0], -1)


class MemoryBankMethod:
    """Class-level facts of the methods with CRD's memory bank (CRD, WCoRD), whose config block has ``MODE``,
    ``NCE.K`` and ``FEAT.{STUDENT_DIM,TEACHER_DIM}``: the train set samples ``NCE.K`` negatives, the constructor
    takes the training-set size (one bank row per sample), and a pair sets the heads' input widths."""

    @classmethod
    def data_needs(cls, cfg):
        block = cfg[cls.registry_name]
        return DataNeeds(contrastive_k=int(block.NCE.K), contrastive_mode=str(block.MODE), num_data=True)

    @classmethod
    def variants(cls):
        return [({}, "K = {}".format(cls.DEFAULTS["NCE"]["K"]))]

    @classmethod
    def pair_settings(cls, cfg, student, teacher):
        """``FEAT.STUDENT_DIM`` / ``TEACHER_DIM``: the widths of the models' ``pooled_feat`` at the dataset's input size."""
        size = probe_input_size(cfg)
        f_s, f_t = probe_features(student, size), probe_features(teacher, size)
        key = cls.registry_name + ".FEAT."
        return {key + "STUDENT_DIM": f_s["pooled_feat"].shape[1], key + "TEACHER_DIM": f_t["pooled_feat"].shape[1]}


class Embed(nn.Module):
    """CRD's embedding head: ``v = normalize(W f + b)`` on the flattened feature (state: ``linear.*``)."""

    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)

    def forward(self, x):
        return l2_normalize(self.linear(x.reshape(x.shape[0], -1)))


class LipschitzEmbed(nn.Module):
    """WCoRD's critic head: ``v = W_sn · f / ‖f‖`` (input L2 normalisation, spectrally normalised bias-free
    linear map, so ``‖v‖ ≤ 1``; Miyato et al. 2018). State: ``linear.parametrizations.weight.*``."""

    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.linear = spectral_norm(nn.Linear(dim_in, dim_out, bias=False))

    def forward(self, x):
        return self.linear(F.normalize(x.reshape(x.shape[0], -1), dim=1))


class TeacherConvEmbed(nn.Module):
    """A convolution (+ BatchNorm) mapping a teacher feature map to the student map's shape; identity when equal.

    Lohit & Jones, "Model Compression Using Optimal Transport" (WACV 2022),
    Appendix C: features "derived from intermediate convolutional layers" of
    different shapes are compared after "additional convolutional layers [map]
    the teacher features to the same dimensionality and shape as the student
    features", following FitNets and CRD. With ``(C_t, H_t, W_t) → (C_s, H_s, W_s)``:

    * same spatial size: 1×1 convolution;
    * teacher ``r``× larger (integer ``r`` ≥ 2): 3×3 convolution, stride ``r``, padding 1
      (for ``r = 2`` the convolution of CRD's / FitNets' ``ConvReg``);
    * teacher 2× smaller: 4×4 transposed convolution, stride 2, padding 1 (``ConvReg``'s);
      ``r``× smaller (``r`` ≥ 3): ``r``×``r`` transposed convolution, stride ``r``;
    * any other ratio: ``adaptive_avg_pool2d`` to the student's size, then a 1×1 convolution;

    each followed by ``BatchNorm2d(C_s)`` (no ReLU: student stage outputs such as
    MobileNetV2's linear bottlenecks take negative values). The student feature
    passes unchanged. ``forward(s, t)`` returns ``(s, e(t))``; state ``conv.*``, ``bn.*``
    (none when the shapes agree).

    Args:
        teacher_shape, student_shape: per-sample shapes (C, H, W).
    """

    def __init__(self, teacher_shape, student_shape):
        super().__init__()
        teacher_shape, student_shape = tuple(teacher_shape), tuple(student_shape)
        if len(teacher_shape) != 3 or len(student_shape) != 3:
            raise ValueError(
                "TeacherConvEmbed maps (C, H, W) feature maps, got teacher {} and student {}".format(
                    teacher_shape, student_shape
                )
            )
        self.out_size = student_shape[1:]
        self.pool = False
        if teacher_shape == student_shape:
            self.conv = self.bn = None
            return
        (c_t, h_t, w_t), (c_s, h_s, w_s) = teacher_shape, student_shape
        if (h_t, w_t) == (h_s, w_s):
            self.conv = nn.Conv2d(c_t, c_s, kernel_size=1)
        elif h_t % h_s == 0 and w_t % w_s == 0 and h_t // h_s == w_t // w_s:
            self.conv = nn.Conv2d(c_t, c_s, kernel_size=3, stride=h_t // h_s, padding=1)
        elif h_s % h_t == 0 and w_s % w_t == 0 and h_s // h_t == w_s // w_t:
            r = h_s // h_t
            if r == 2:
                self.conv = nn.ConvTranspose2d(c_t, c_s, kernel_size=4, stride=2, padding=1)
            else:
                self.conv = nn.ConvTranspose2d(c_t, c_s, kernel_size=r, stride=r)
        else:
            self.pool = True
            self.conv = nn.Conv2d(c_t, c_s, kernel_size=1)
        self.bn = nn.BatchNorm2d(c_s)

    @property
    def is_identity(self):
        return self.conv is None

    def forward(self, s, t):
        if self.conv is None:
            return s, t
        if self.pool:
            t = F.adaptive_avg_pool2d(t, self.out_size)
        return s, self.bn(self.conv(t))


class CommonSpaceEmbed(nn.Module):
    """Separate linear layers map student and teacher vectors to a common ``dim``-d space; identity when
    their widths agree.

    Lohit & Jones (WACV 2022), Appendix C: "if the features being compared are
    from the penultimate layer, we use separate linear layers to map both the
    teacher and student features to a common dimensional space" (128-d for
    resnet32x4 → ShuffleNetV2). ``forward(s, t)`` returns ``(W_s s + b_s, W_t t + b_t)``;
    state ``linear_s.*``, ``linear_t.*`` (none when the widths agree).

    Args:
        student_dim, teacher_dim: widths of the flattened student and teacher features.
        dim: the common dimension.
    """

    def __init__(self, student_dim, teacher_dim, dim):
        super().__init__()
        if student_dim == teacher_dim:
            self.linear_s = self.linear_t = None
        else:
            self.linear_s = nn.Linear(student_dim, dim)
            self.linear_t = nn.Linear(teacher_dim, dim)

    @property
    def is_identity(self):
        return self.linear_s is None

    def forward(self, s, t):
        if self.linear_s is None:
            return s, t
        return self.linear_s(s.reshape(s.shape[0], -1)), self.linear_t(t.reshape(t.shape[0], -1))


def linear_projector(dim_in, dim_out):
    """``nn.Linear(dim_in, dim_out)`` (with bias), or ``nn.Identity()`` when the dimensions agree."""
    return nn.Linear(dim_in, dim_out) if dim_in != dim_out else nn.Identity()


def at_least_fp32(tensor):
    """``tensor`` in float32 when it has a lower precision (autocast features); float32/float64 pass unchanged."""
    if tensor.is_floating_point() and torch.finfo(tensor.dtype).bits < 32:
        return tensor.float()
    return tensor
