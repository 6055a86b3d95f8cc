"""Modules and helpers shared by several methods: feature probing, stage selection, projectors."""
import torch
import torch.nn as nn


def _as_size(size):
    if isinstance(size, str):
        size = [int(v) for v in size.strip("()[] ").split(",") if v.strip()]
    if isinstance(size, int):
        return (size, size)
    return tuple(int(v) for v in size)


def probe_input_size(cfg, fallback=None):
    """Image size of the dry forward that reads feature shapes.

    32 for CIFAR-like data and digits, 64 for Tiny-ImageNet; otherwise
    ``DATASET.INPUT_SIZE``, then the method's own ``fallback`` (e.g. WKD.INPUT_SIZE), then 224.
    """
    kind = str(cfg.DATASET.TYPE).lower()
    if kind in ("cifar100", "cifar10", "svhn", "digits"):
        return (32, 32)
    if kind == "tiny_imagenet":
        return (64, 64)
    size = cfg.DATASET.get("INPUT_SIZE", None) or fallback or 224
    return _as_size(size)


@torch.no_grad()
def probe_features(model, input_size):
    """The feature dict of one eval-mode forward on zeros; every module's training flag is restored."""
    modes = [(m, m.training) for m in model.modules()]
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    try:
        model.eval()
        _, features = model(torch.zeros((2, 3) + tuple(input_size), device=device))
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
