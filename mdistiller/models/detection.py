"""Faster R-CNN + FPN detectors (torchvision) around ResNet-18/34/50/101 and MobileNetV2, in mdistiller's settings.

mdistiller's ``detection/`` code is Detectron2's Faster R-CNN with an FPN (``configs/Base-Distillation.yaml``);
these detectors are torchvision's :class:`~torchvision.models.detection.FasterRCNN` set up the same way where
torchvision allows (``DETECTION.*`` keys, :func:`detector_settings`): FPN levels P2–P5 from the four stages plus P6
by max-pooling P5, anchors 32–512 (one size per level) × ratios {0.5, 1, 2}, RPN 2000 pre-NMS proposals per level
and 1000 post-NMS per image in training (1000/1000 at test), RoIAlign 7×7, a 2-FC box head of 1024, 512 RoIs per
image at 25 % foreground, test score threshold 0.05, NMS 0.5, 100 detections. Where they differ, kept as
torchvision has it (``docs/methods.md``, detection): torchvision's RoIAlign is not Detectron2's ``ROIAlignV2``
(``aligned=False``, sampling ratio 2), its box and RPN regression losses are smooth-L1 with β = 1/9 (Detectron2:
L1), its RPN keeps the top proposals per image after one NMS over all levels.

A :class:`Detector` normalises and pads its own inputs (no resizing: the data pipeline resizes, so a teacher and a
student see the same pixels, each with its own ``pixel_mean``/``pixel_std`` and channel order, as mdistiller's
``RCNNKD.teacher_preprocess_image``), and knows which dataset category each of its output columns predicts
(``categories``): contiguous classes ``1..K`` with background 0 (the detectors built here), or the 91 COCO
category ids of torchvision's COCO weights. State-dict keys are torchvision's (``backbone.body.*``,
``backbone.fpn.*``, ``rpn.*``, ``roi_heads.*``), so torchvision's COCO R50-FPN weights load strictly.
"""
from collections import OrderedDict, namedtuple

import torch
import torch.nn as nn
import torchvision
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import fastrcnn_loss
from torchvision.ops import FrozenBatchNorm2d, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

# The stages of a backbone (module names; the first is the stem), frozen from the first by FREEZE_AT.
RESNET_STAGES = (("conv1", "bn1"), ("layer1",), ("layer2",), ("layer3",), ("layer4",))
MOBILENETV2_STAGES = tuple(tuple(str(i) for i in r) for r in (range(0, 1), range(1, 4), range(4, 7), range(7, 14),
                                                              range(14, 18)))
# zoo name -> (torchvision constructor, its ImageNet weights enum)
DETECTION_BACKBONES = {
    "ResNet18": ("resnet18", "ResNet18_Weights"),
    "ResNet34": ("resnet34", "ResNet34_Weights"),
    "ResNet50": ("resnet50", "ResNet50_Weights"),
    "ResNet101": ("resnet101", "ResNet101_Weights"),
    "MobileNetV2": ("mobilenet_v2", "MobileNet_V2_Weights"),
}
# MobileNetV2 levels as mdistiller's detection backbone (m2..m5): the last block of the 24-, 32-, 96- and
# 320-channel stages (strides 4, 8, 16, 32); torchvision's final 1x1 conv to 1280 is not used.
MOBILENETV2_LEVELS = {"3": "0", "6": "1", "13": "2", "17": "3"}
RESNET_LEVELS = {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"}
SIZE_DIVISIBILITY = 32  # padded batch sides are multiples of the coarsest FPN stride (P5)
BACKGROUND = 0  # ``categories`` value of the background column
NO_CATEGORY = -1  # ``categories`` value of a column no dataset category maps to (COCO's unused ids)

# What one training forward of a detector leaves for distillation (see Detector.train_forward).
RCNNTrainOutput = namedtuple("RCNNTrainOutput",
                             ["losses", "image_sizes", "features", "proposals", "labels", "class_logits"])


def background_last(labels, num_classes):
    """Detector labels (0 background, 1..K) in mdistiller's class order: class k → k − 1, background → K."""
    return torch.where(labels > 0, labels - 1, torch.full_like(labels, num_classes))


def detector_settings(cfg):
    """The detector's construction settings from ``DETECTION.*`` (a plain dict, see :func:`build_detector`)."""
    d = cfg.DETECTION
    return dict(
        fpn_channels=int(d.FPN_CHANNELS), norm=str(d.BACKBONE.NORM), freeze_at=int(d.BACKBONE.FREEZE_AT),
        anchor_sizes=[int(s) for s in d.ANCHOR_SIZES], aspect_ratios=[float(r) for r in d.ASPECT_RATIOS],
        rpn_pre_nms_top_n_train=int(d.RPN.PRE_NMS_TOPK_TRAIN), rpn_pre_nms_top_n_test=int(d.RPN.PRE_NMS_TOPK_TEST),
        rpn_post_nms_top_n_train=int(d.RPN.POST_NMS_TOPK_TRAIN), rpn_post_nms_top_n_test=int(d.RPN.POST_NMS_TOPK_TEST),
        rpn_nms_thresh=float(d.RPN.NMS_THRESH), rpn_batch_size_per_image=int(d.RPN.BATCH_SIZE_PER_IMAGE),
        rpn_positive_fraction=float(d.RPN.POSITIVE_FRACTION),
        box_batch_size_per_image=int(d.ROI_HEADS.BATCH_SIZE_PER_IMAGE),
        box_positive_fraction=float(d.ROI_HEADS.POSITIVE_FRACTION),
        box_score_thresh=float(d.ROI_HEADS.SCORE_THRESH_TEST), box_nms_thresh=float(d.ROI_HEADS.NMS_THRESH_TEST),
        box_detections_per_img=int(d.ROI_HEADS.DETECTIONS_PER_IMAGE), fc_dim=int(d.ROI_BOX_HEAD.FC_DIM),
        pooler_resolution=int(d.ROI_BOX_HEAD.POOLER_RESOLUTION),
        pooler_sampling_ratio=int(d.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO),
    )


def _freeze(module, stages, freeze_at):
    """Freeze the parameters of the first ``freeze_at`` stages (Detectron2's ``FREEZE_AT``: 1 the stem,
    2 the stem and the first stage of blocks, ...)."""
    for stage in stages[:freeze_at]:
        for name in stage:
            for p in getattr(module, name).parameters():
                p.requires_grad_(False)


def build_backbone(name, pretrained=False, fpn_channels=256, norm="FrozenBN", freeze_at=2):
    """A ``BackboneWithFPN`` around zoo backbone ``name``: P2–P5 (``"0"``–``"3"``) + P6 (``"pool"``).

    ``pretrained``: torchvision's ImageNet weights (through torch.hub's hash-checked download); the first
    ``freeze_at`` stages are then frozen. From scratch every stage trains (as torchvision does). ``norm``:
    ``"FrozenBN"`` (Detectron2's default with pretrained backbones) or ``"BN"`` (BatchNorm, for training from
    scratch).
    """
    if name not in DETECTION_BACKBONES:
        raise KeyError("Unknown detection backbone {!r} (DISTILLER.STUDENT / TEACHER of a detection dataset). "
                       "Valid names: {}".format(name, ", ".join(DETECTION_BACKBONES)))
    norms = {"FrozenBN": FrozenBatchNorm2d, "BN": nn.BatchNorm2d}
    if norm not in norms:
        raise ValueError("DETECTION.BACKBONE.NORM must be one of {}, got {!r}".format(", ".join(norms), norm))
    constructor, weights_enum = DETECTION_BACKBONES[name]
    weights = getattr(torchvision.models, weights_enum).IMAGENET1K_V1 if pretrained else None
    net = getattr(torchvision.models, constructor)(weights=weights, norm_layer=norms[norm])
    if constructor.startswith("resnet"):
        body, levels, stages = net, RESNET_LEVELS, RESNET_STAGES
        widths = [64 * 2 ** i * type(net.layer1[0]).expansion for i in range(4)]
    else:
        body, levels, stages = net.features, MOBILENETV2_LEVELS, MOBILENETV2_STAGES
        widths = [net.features[int(index)].out_channels for index in levels]
    if pretrained:
        _freeze(body, stages, freeze_at)
    return BackboneWithFPN(body, levels, widths, fpn_channels, extra_blocks=LastLevelMaxPool())


class Detector(FasterRCNN):
    """Faster R-CNN + FPN with its own input normalisation and its output columns' categories.

    ``forward(images, targets=None)`` as torchvision's detectors: a list of (3, H, W) images in [0, 1]
    (RGB) and, in training, their targets (``boxes`` xyxy, ``labels`` = output columns); returns the losses in
    training, detections (:meth:`detect`: ``labels`` are category ids) in eval mode. Buffers (not in the state
    dict): ``pixel_mean``/``pixel_std`` (3, 1, 1), ``categories``
    (the dataset category id of each output column, 0 background, -1 none) and ``distill_columns`` (the
    columns of the dataset's K classes in order, then the background's: the class order of distillation,
    mdistiller's background-last one).
    """

    def __init__(self, backbone, num_outputs, categories, pixel_mean, pixel_std, input_format, settings):
        s = dict(settings)
        resolution, fc_dim = s.pop("pooler_resolution"), s.pop("fc_dim")
        sampling, sizes, ratios = s.pop("pooler_sampling_ratio"), s.pop("anchor_sizes"), s.pop("aspect_ratios")
        for key in ("fpn_channels", "norm", "freeze_at"):
            s.pop(key)
        channels = backbone.out_channels
        super().__init__(
            backbone, num_classes=None,
            rpn_anchor_generator=AnchorGenerator(tuple((size,) for size in sizes), (tuple(ratios),) * len(sizes)),
            box_roi_pool=MultiScaleRoIAlign(["0", "1", "2", "3"], resolution, sampling),
            box_head=TwoMLPHead(channels * resolution ** 2, fc_dim),
            box_predictor=FastRCNNPredictor(fc_dim, num_outputs), **s)
        # float64 (cast to the images' dtype when used), so a float64 detector normalises with the exact values
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float64).view(3, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float64).view(3, 1, 1), False)
        if input_format not in ("RGB", "BGR"):
            raise ValueError("a detector's input format is RGB or BGR, got {!r}".format(input_format))
        self.input_format = input_format
        categories = torch.as_tensor(categories, dtype=torch.int64)
        if categories.numel() != num_outputs:
            raise ValueError("{} output columns but {} categories".format(num_outputs, categories.numel()))
        self.register_buffer("categories", categories, False)
        dataset_ids = sorted(int(c) for c in categories.tolist() if c > BACKGROUND)
        columns = [int((categories == c).nonzero()[0]) for c in dataset_ids]
        columns.append(int((categories == BACKGROUND).nonzero()[0]))
        self.register_buffer("distill_columns", torch.tensor(columns, dtype=torch.int64), False)

    @property
    def num_classes(self):
        """K, the dataset classes the detector predicts (background not counted)."""
        return self.distill_columns.numel() - 1

    def preprocess(self, images):
        """An ``ImageList`` of the images normalised with this detector's mean/std (channels reversed for a
        BGR detector), zero-padded at the bottom and right to one size, divisible by 32."""
        sizes = [tuple(image.shape[-2:]) for image in images]
        height = -(-max(h for h, _ in sizes) // SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY
        width = -(-max(w for _, w in sizes) // SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY
        batch = images[0].new_zeros((len(images), 3, height, width))
        mean, std = self.pixel_mean.to(batch.dtype), self.pixel_std.to(batch.dtype)
        for slot, image, (h, w) in zip(batch, images, sizes):
            if self.input_format == "BGR":
                image = image.flip(0)
            slot[:, :h, :w].copy_((image - mean) / std)
        return ImageList(batch, sizes)

    def train_forward(self, images, targets):
        """One training forward: :data:`RCNNTrainOutput` of the RPN and RoI-head losses
        (``loss_objectness``, ``loss_rpn_box_reg``, ``loss_classifier``, ``loss_box_reg``: torchvision's), the
        image sizes, the FPN features, the sampled proposals (one (n_i, 4) tensor per image), their labels
        (0 background, 1..K) and the class logits of the sampled RoIs (all images, concatenated)."""
        image_list = self.preprocess(images)
        features = self.backbone(image_list.tensors)
        proposals, rpn_losses = self.rpn(image_list, features, targets)
        heads = self.roi_heads
        proposals, _, labels, regression_targets = heads.select_training_samples(proposals, targets)
        box_features = heads.box_head(heads.box_roi_pool(features, proposals, image_list.image_sizes))
        class_logits, box_regression = heads.box_predictor(box_features)
        loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
        losses = OrderedDict(rpn_losses, loss_classifier=loss_classifier, loss_box_reg=loss_box_reg)
        return RCNNTrainOutput(losses, image_list.image_sizes, features, proposals, labels, class_logits)

    def box_logits(self, features, proposals, image_sizes):
        """The class logits of the box pooler → box head → box predictor on given proposals (mdistiller's
        ``forward_pure_roi_head``)."""
        heads = self.roi_heads
        return heads.box_predictor(heads.box_head(heads.box_roi_pool(features, proposals, image_sizes)))[0]

    def detect(self, images):
        """Detections, one dict per image: ``boxes`` (xyxy, in the input image), ``labels`` (the dataset's category
        ids, through ``categories``: for torchvision's 91-column COCO detector the same as its own labels) and
        ``scores``."""
        image_list = self.preprocess(images)
        features = self.backbone(image_list.tensors)
        proposals, _ = self.rpn(image_list, features)
        detections, _ = self.roi_heads(features, proposals, image_list.image_sizes)
        for found in detections:
            found["labels"] = self.categories[found["labels"]]
        return detections

    def forward(self, images, targets=None):
        if self.training:
            return self.train_forward(images, targets).losses
        return self.detect(images)


def contiguous_categories(category_ids):
    """``categories`` of a detector with background 0 and the dataset classes as columns 1..K."""
    return [BACKGROUND] + [int(c) for c in category_ids]


def category_id_columns(num_outputs, category_ids):
    """``categories`` of a detector whose column j predicts category id j (torchvision's 91-column COCO layout);
    ids the dataset does not have get -1."""
    known = set(int(c) for c in category_ids)
    return [BACKGROUND] + [j if j in known else NO_CATEGORY for j in range(1, num_outputs)]


def build_detector(name, category_ids, settings, pretrained=False, num_outputs=None, pixel_mean=(0.485, 0.456, 0.406),
                   pixel_std=(0.229, 0.224, 0.225), input_format="RGB"):
    """A :class:`Detector` around backbone ``name`` for a dataset with classes ``category_ids``.

    ``num_outputs`` None or K + 1: background and the K classes as columns (:func:`contiguous_categories`);
    any larger count: column j is category id j (torchvision's COCO layout, 91; :func:`category_id_columns`).
    ``settings``: :func:`detector_settings`. ``pretrained``: the backbone from torchvision's ImageNet weights.
    """
    k = len(category_ids)
    num_outputs = k + 1 if num_outputs is None else int(num_outputs)
    if num_outputs == k + 1:
        categories = contiguous_categories(category_ids)
    elif num_outputs > max(category_ids):
        categories = category_id_columns(num_outputs, category_ids)
    else:
        raise ValueError("a detector with {} output columns fits neither the dataset's {} classes (+ background) nor "
                         "its category ids (up to {})".format(num_outputs, k, max(category_ids)))
    backbone = build_backbone(name, pretrained, settings["fpn_channels"], settings["norm"], settings["freeze_at"])
    return Detector(backbone, num_outputs, categories, pixel_mean, pixel_std, input_format, settings)
