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
    Submodule names ``conv``, ``bn`` are mdistiller's, so its checkpoints load.
    """

    def __init__(self, s_shape, t_shape, use_relu=True, use_bn=True):
        super().__init__()
        s_c, t_c = s_shape[1], t_shape[1]
        self.use_relu = use_relu
        self.use_bn = use_bn
        self.conv = resample_conv(
            s_shape, t_shape, s_c, t_c, lambda dh, dw: nn.Conv2d(s_c, t_c, kernel_size=(1 + dh, 1 + dw))
        )
        self.bn = nn.BatchNorm2d(t_c)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.conv(x)
        if self.use_relu:
            return self.relu(self.bn(x))
        if self.use_bn:
            return self.bn(x)
        return x



def at_least_fp32(tensor):
    """``tensor`` in float32 when it has a lower precision (autocast features); float32/float64 pass unchanged."""
    if tensor.is_floating_point() and torch.finfo(tensor.dtype).bits < 32:
        return tensor.float()
    return tensor
