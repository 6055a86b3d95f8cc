"""The detection step shared by every method's detection variant: mdistiller's ``RCNNKD`` (``detection/model/rcnn.py``)
on the Faster R-CNN detectors of :mod:`mdistiller.models.detection`.

One training step: the student's backbone, RPN and RoI sampling give the detector's four losses and the sampled
proposals; the teacher (frozen, eval mode) normalises the same images its own way, runs its backbone and — for
methods on the RoI logits — its box pooler, box head and box predictor on the **student's** sampled proposals; the
method's distillation terms (``distill_losses``, the classification method's own, in fp32) are added to the
detector's losses. What a method sees, in the :data:`~mdistiller.distillers._base.ModelOutput` of each network:

* ``logits``: the RoI class logits (sampled RoIs of all images, concatenated) in mdistiller's class order — the
  dataset's K classes, then the background (``Detector.distill_columns``: a student's K + 1 columns and a
  torchvision COCO teacher's 91 map to the same K + 1);
* ``feats["fpn"]``: the FPN maps P2–P6, shallowest first;
* both at least in fp32 (autocast's fp16/bf16 maps converted; float64 models stay float64);
* ``target``: the sampled RoIs' labels in that order (class k → k − 1, background → K; mdistiller's
  ``gt_classes``).

The step's first output is ``(class_logits, labels)`` of the student's sampled RoIs (the training RoI accuracy).
"""
from collections import OrderedDict, namedtuple

import torch
import torch.nn as nn

from ..models.detection import background_last
from ..registry import register_distiller
from ._base import Distiller, ModelOutput, Vanilla, fp32_losses
from ._common import at_least_fp32

# The student's RoI classification in a training step (detector column order, detector labels 0 = background).
RoIClassification = namedtuple("RoIClassification", ["logits", "labels"])
# Torchvision's names of a Faster R-CNN's losses: the task's objective (DOT's task side).
DETECTOR_LOSSES = ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg")
FPN_LEVELS = 5  # P2-P6


def fpn_projectors(student, teacher):
    """One 1×1 convolution per FPN level from the student's FPN width to the teacher's (this project's adaptation
    layer for feature methods on FPN maps: FPN outputs are signed, so no BatchNorm + ReLU as in ``ConvReg``)."""
    c_s, c_t = student.backbone.out_channels, teacher.backbone.out_channels
    return nn.ModuleList([nn.Conv2d(c_s, c_t, kernel_size=1) for _ in range(FPN_LEVELS)])


class RCNNDistiller(Distiller):
    """The detection variant of a method: mdistiller's ``RCNNKD`` step around the method's ``distill_losses``.

    A variant is ``class DetectionKD(RCNNDistiller, KD)`` registered with ``task="detection"``; it shares the
    method's config block. ``ROI_LOGITS``: the method reads the RoI logits (the teacher's box head runs); feature
    methods set it False.
    """

    ROI_LOGITS = True
    task_loss_keys = DETECTOR_LOSSES

    @classmethod
    def pair_settings(cls, cfg, student, teacher):
        return {}

    def forward_train(self, image, target, epoch=0, **batch):
        student = self.student
        out = student.train_forward(image, target)
        labels = torch.cat(out.labels)
        losses = OrderedDict(out.losses)
        teacher = self.teacher
        if teacher is not None:
            with torch.no_grad():
                t_features = teacher.backbone(teacher.preprocess(image).tensors)
                t_logits = teacher.box_logits(t_features, out.proposals, out.image_sizes) if self.ROI_LOGITS else None
        with fp32_losses(out.class_logits):
            s_logits = at_least_fp32(out.class_logits)[:, student.distill_columns]
            s_out = ModelOutput(s_logits, {"fpn": [at_least_fp32(f) for f in out.features.values()]})
            t_out = None
            if teacher is not None:
                t_logits = None if t_logits is None else at_least_fp32(t_logits)[:, teacher.distill_columns]
                t_out = ModelOutput(t_logits, {"fpn": [at_least_fp32(f) for f in t_features.values()]})
            losses.update(self.distill_losses(s_out, t_out, background_last(labels, student.num_classes), epoch,
                                              **batch))
        return RoIClassification(out.class_logits, labels), losses

    def forward_test(self, image):
        return self.student(image)


@register_distiller("NONE", task="detection")
class DetectionVanilla(RCNNDistiller, Vanilla):
    """The student detector alone, trained with its detection losses."""
