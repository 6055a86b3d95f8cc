"""Base classes shared by every distiller."""

import torch
import torch.nn as nn
import torch.nn.functional as F


def fp32_losses(tensor):
    """Context in which loss arithmetic runs in float32 even inside an autocast region."""
    return torch.autocast(device_type=tensor.device.type, enabled=False)


class Distiller(nn.Module):
    """A student trained against a frozen teacher.

    Subclasses implement ``forward_train(image=, target=, epoch=, **batch)`` and
    return ``(student_logits, losses_dict)``; the training objective is the sum of
    the dict's values. The teacher always stays in eval mode and receives no
    gradient.
    """

    # True when the method needs the dataset's contrastive sampling (CRD's
    # positive/negative indices in the batch); decides the train-set variant.
    requires_contrastive_data = False
    # True when the constructor takes the training-set size as fourth argument.
    requires_num_data = False

    def __init__(self, student, teacher):
        super().__init__()
        self.student = student
        self.teacher = teacher
        if teacher is not None:
            for p in teacher.parameters():
                p.requires_grad_(False)

    @classmethod
    def uses_contrastive_data(cls, cfg):
        return cls.requires_contrastive_data

    def train(self, mode=True):
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        self.training = mode
        for name, module in self.named_children():
            module.train(False if name == "teacher" else mode)
        return self

    def get_learnable_parameters(self):
        """Everything the optimizer updates: the student plus any extra modules."""
        return [p for name, p in self.named_parameters() if not name.startswith("teacher.") and p.requires_grad]

    def get_extra_parameters(self):
        """Number of trainable parameters beyond the student's (projectors, embeddings, ...)."""
        student = {id(p) for p in self.student.parameters()}
        return sum(p.numel() for p in self.get_learnable_parameters() if id(p) not in student)

    def teacher_forward(self, image):
        with torch.no_grad():
            return self.teacher(image)

    def forward_train(self, **kwargs):
        raise NotImplementedError()

    def forward_test(self, image):
        return self.student(image)[0]

    def forward(self, **kwargs):
        if self.training:
            return self.forward_train(**kwargs)
        return self.forward_test(kwargs["image"])


class Vanilla(Distiller):
    """The student alone, trained with cross-entropy (registry key ``NONE``)."""

    def __init__(self, student, teacher=None, cfg=None):
        super().__init__(student, None)

    def forward_train(self, image, target, **kwargs):
        logits_student, _ = self.student(image)
        with fp32_losses(logits_student):
            loss = F.cross_entropy(logits_student.float(), target)
        return logits_student, {"ce": loss}


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
