"""WKD: Wasserstein-distance knowledge distillation (Lv, Yang & Li, NeurIPS 2024); math in :mod:`mdistiller.losses.wkd`."""
import torch.nn as nn

from ..losses.class_cost import COST_MATRIX_HINT, classifier_weight, cosine_cost, load_cost_matrix, prepare_cost_matrix
from ..losses.schedules import cosine_decay_weight
from ..losses.wkd import (
    smallest_window,
    wkd_feature_loss,
    wkd_nontarget_distance,
    wkd_target_loss,
)
from ..ot import sinkhorn_kernel
from ..registry import register_distiller
from ._base import Distiller
from ._detection import RCNNDistiller, fpn_projectors
from ._common import ConvReg, ConvRegBottleNeck, at_least_fp32, probe_features, probe_input_size

PROJECTORS = {"conv1x1": ConvReg, "bottleneck": ConvRegBottleNeck}


@register_distiller("WKD")
class WKD(Distiller):
    """Wasserstein Distance Rivals Kullback-Leibler Divergence for Knowledge Distillation (Lv et al. NeurIPS 2024).

    A part is on when its weight is > 0. Loss dict: ``loss_ce``;
    ``loss_kd`` = WKD-L, ``L_t + γ_L(e)·W`` (:func:`~mdistiller.losses.wkd.wkd_target_loss`,
    :func:`~mdistiller.losses.wkd.wkd_nontarget_distance`; a zero tensor when
    WKD-L is off); ``loss_feat`` (only with WKD-F on) = ``γ_F(e)·WKD-F`` of the
    stage-``HINT_LAYER`` maps, the student's through the projector
    (:func:`~mdistiller.losses.wkd.wkd_feature_loss`). ``γ(e)``:
    :func:`~mdistiller.losses.schedules.cosine_decay_weight`. With
    ``EXPERIMENT.LOGIT_STAND`` the non-target distributions of ``W`` are
    computed from z-scored logits; ``L_t`` stays on the raw logits.
    """

    # Keys and defaults of the official release (github.com/JiamingLv/WKD, mdistiller/engine/cfg.py).
    DEFAULTS = {
        "TEMPERATURE": 4.0,
        "LOSS": {
            "CE_WEIGHT": 1.0,
            "WKD_LOGIT_WEIGHT": 1.0,  # WKD-L
            "WKD_FEAT_WEIGHT": 1.0,  # WKD-F
            "COSINE_DECAY_EPOCH": 0,  # weights decay to 0 (cosine) after this epoch
        },
        "COST_MATRIX": "",  # "fc": 1 - cos of the teacher's classifier rows; else read COST_MATRIX_PATH ("cka")
        "COST_MATRIX_PATH": "",  # (C, C) tensor saved by torch.save, relative to the current directory
        "COST_MATRIX_SHARPEN": 1.0,  # D <- 1 - exp(-SHARPEN * D) unless 0
        "SINKHORN": {"LAMBDA": 0.05, "ITER": 10},
        "EPS": 1e-5,
        "HINT_LAYER": 4,  # index into the models' feats list
        "MEAN_COV_RATIO": 2.0,
        "PROJECTOR": "bottleneck",  # "conv1x1" | "bottleneck"
        "SPATIAL_GRID": 4,
        "INPUT_SIZE": (224, 224),  # dry-forward size for ImageNet; 32 / 64 for the small datasets
    }
    # The knobs of each part (a part is on when its weight is > 0; search_space keeps the parts that are on).
    # Temperatures 1-10 include the release's CIFAR-100 8; Sinkhorn's λ within 5x of the release's 0.05 and 5-30
    # iterations around its 10; the feature part's mean/covariance ratio between 0.5 and 8 (ImageNet 2, CIFAR 4).
    LOGIT_SPACE = {"WKD.TEMPERATURE": {"low": 1.0, "high": 10.0}, "WKD.LOSS.WKD_LOGIT_WEIGHT": {"factor": 10.0},
                   "WKD.SINKHORN.LAMBDA": {"low": 0.01, "high": 0.25, "log": True},
                   "WKD.SINKHORN.ITER": {"low": 5, "high": 30}}
    FEATURE_SPACE = {"WKD.LOSS.WKD_FEAT_WEIGHT": {"factor": 10.0}, "WKD.MEAN_COV_RATIO": {"low": 0.5, "high": 8.0, "log": True}}

    LOGIT_STANDARDIZATION = True

    @classmethod
    def label(cls, cfg):
        """``WKD-L``, ``WKD-F`` or ``WKD-L+F`` (the parts whose weight is > 0)."""
        logit, feat = cfg.WKD.LOSS.WKD_LOGIT_WEIGHT > 0, cfg.WKD.LOSS.WKD_FEAT_WEIGHT > 0
        return {(True, False): "WKD-L", (False, True): "WKD-F", (True, True): "WKD-L+F"}.get((logit, feat), "WKD")

    @classmethod
    def logit_temperature(cls, cfg):
        return float(cfg.WKD.TEMPERATURE), "WKD.TEMPERATURE"

    @classmethod
    def search_space(cls, cfg):
        """``LOGIT_SPACE`` when WKD-L is on, ``FEATURE_SPACE`` when WKD-F is on (sampled weights stay > 0, so a study
        never switches a part)."""
        space = {}
        if cfg.WKD.LOSS.WKD_LOGIT_WEIGHT > 0:
            space.update(cls.LOGIT_SPACE)
        if cfg.WKD.LOSS.WKD_FEAT_WEIGHT > 0:
            space.update(cls.FEATURE_SPACE)
        return space

    @classmethod
    def variants(cls):
        """WKD-L with the fc cost (no file needed), and WKD-F as the release's CIFAR-100 config
        (configs/cifar100/wkd_f/res32x4_res8x4.yaml; the defaults' HINT_LAYER 4 / bottleneck / grid 4 are
        its ImageNet setting)."""
        return [
            ({"WKD.LOSS.WKD_FEAT_WEIGHT": 0.0, "WKD.COST_MATRIX": "fc"}, "fc cost"),
            ({"WKD.LOSS.WKD_LOGIT_WEIGHT": 0.0, "WKD.HINT_LAYER": -1, "WKD.PROJECTOR": "conv1x1",
              "WKD.SPATIAL_GRID": 1, "WKD.MEAN_COV_RATIO": 4.0}, "release CIFAR config"),
        ]

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher, cfg)
        w = cfg.WKD
        self.epochs = cfg.SOLVER.EPOCHS
        self.ce_weight = w.LOSS.CE_WEIGHT
        self.logit_weight = w.LOSS.WKD_LOGIT_WEIGHT
        self.feat_weight = w.LOSS.WKD_FEAT_WEIGHT
        self.decay_epoch = w.LOSS.COSINE_DECAY_EPOCH
        self.enable_wkdl = self.logit_weight > 0
        self.enable_wkdf = self.feat_weight > 0
        if self.enable_wkdl:
            self._init_logit_part(w, teacher)
        if self.enable_wkdf:
            self._init_feature_part(w, cfg, student, teacher)

    @staticmethod
    def teacher_classifier(teacher):
        """The (C, d) weight of the teacher's classifier, one row per distilled class in the logits' order (None
        when the teacher has no ``nn.Linear``): the rows of ``COST_MATRIX fc`` and the class count a cost file
        must have."""
        return classifier_weight(teacher) if any(isinstance(m, nn.Linear) for m in teacher.modules()) else None

    def _init_logit_part(self, w, teacher):
        self.temperature = w.TEMPERATURE
        self.sinkhorn_lambda = w.SINKHORN.LAMBDA
        self.sinkhorn_iter = int(w.SINKHORN.ITER)
        classifier = self.teacher_classifier(teacher)
        if str(w.COST_MATRIX).lower() == "fc":
            raw = cosine_cost(classifier if classifier is not None else classifier_weight(teacher))
        else:
            raw = load_cost_matrix(w.COST_MATRIX_PATH)
        cost = prepare_cost_matrix(raw, w.COST_MATRIX_SHARPEN)
        if classifier is not None and cost.shape[0] != classifier.shape[0]:
            raise ValueError(
                "WKD cost matrix is {}x{} but the teacher has {} classes ({}). {}".format(
                    cost.shape[0], cost.shape[1], classifier.shape[0], w.COST_MATRIX_PATH or "fc", COST_MATRIX_HINT,
                )
            )
        # Derived from the config and the teacher: buffers (they follow .to()), not part of the state_dict.
        self.register_buffer("cost_matrix", cost, persistent=False)
        kernel, kernel_cost = sinkhorn_kernel(cost, self.sinkhorn_lambda)
        self.register_buffer("sinkhorn_K", kernel, persistent=False)
        self.register_buffer("kernel_cost", kernel_cost, persistent=False)

    def _init_feature_part(self, w, cfg, student, teacher):
        self.mean_cov_ratio = w.MEAN_COV_RATIO
        self.eps = w.EPS
        self.hint_layer = int(w.HINT_LAYER)
        self.spatial_grid = int(w.SPATIAL_GRID)
        if w.PROJECTOR not in PROJECTORS:
            raise ValueError("Unknown WKD.PROJECTOR {!r}; valid: {}".format(w.PROJECTOR, ", ".join(PROJECTORS)))
        size = probe_input_size(cfg, w.INPUT_SIZE)
        s_shapes = [f.shape for f in probe_features(student, size)["feats"]]
        t_shapes = [f.shape for f in probe_features(teacher, size)["feats"]]
        depth = min(len(s_shapes), len(t_shapes))
        if not -depth <= self.hint_layer < depth:
            raise ValueError(
                "WKD.HINT_LAYER {} is out of range: the student has {} and the teacher {} `feats` entries".format(
                    self.hint_layer, len(s_shapes), len(t_shapes)
                )
            )
        s_shape, t_shape = s_shapes[self.hint_layer], t_shapes[self.hint_layer]
        if min(smallest_window(n, self.spatial_grid) for n in t_shape[-2:]) < 2:
            # Windows of one pixel have no (unbiased) variance: the loss would be NaN.
            raise ValueError(
                "WKD.SPATIAL_GRID {} is too fine for the {}x{} teacher feature map of HINT_LAYER {}".format(
                    self.spatial_grid, t_shape[-2], t_shape[-1], self.hint_layer
                )
            )
        self.conv_reg = PROJECTORS[w.PROJECTOR](s_shape, t_shape)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints of this project written while the cost matrix was a persistent buffer carry it; it is
        # rebuilt from the config, so the stored copy is ignored.
        state_dict.pop(prefix + "cost_matrix", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def ground_cost(self):
        if not self.enable_wkdl:
            return None
        return self.cost_matrix, float(self.sinkhorn_lambda), int(self.sinkhorn_iter)

    def _kernel(self, dtype):
        if dtype == self.sinkhorn_K.dtype:
            return self.sinkhorn_K, self.kernel_cost
        return sinkhorn_kernel(self.cost_matrix.to(dtype), self.sinkhorn_lambda)

    def logit_weight_at(self, epoch):
        return cosine_decay_weight(self.logit_weight, epoch, self.decay_epoch, self.epochs)

    def feat_weight_at(self, epoch):
        return cosine_decay_weight(self.feat_weight, epoch, self.decay_epoch, self.epochs)

    def logit_loss(self, logits_student, logits_teacher, target, epoch):
        """WKD-L, ``L_t + γ(e)·W`` (a zero tensor when WKD-L is off)."""
        if not self.enable_wkdl:
            return logits_student.new_zeros(())
        loss_t = wkd_target_loss(logits_student, logits_teacher, target)
        z_s, z_t = self.distillation_logits(logits_student, logits_teacher)
        w = wkd_nontarget_distance(
            z_s, z_t, target, self.cost_matrix, self.temperature, self.sinkhorn_lambda, self.sinkhorn_iter,
            kernel=self._kernel(z_s.dtype),
        )
        return loss_t + self.logit_weight_at(epoch) * w

    def feature_loss(self, feat_student, feat_teacher, epoch):
        """``γ_F(e)·WKD-F`` on one pair of feature maps (the student's before the projector)."""
        f_s = self.conv_reg(at_least_fp32(feat_student))
        loss = wkd_feature_loss(f_s, at_least_fp32(feat_teacher), eps=self.eps, grid=self.spatial_grid,
                                mean_cov_ratio=self.mean_cov_ratio)
        return self.feat_weight_at(epoch) * loss

    def distill_losses(self, student, teacher, target, epoch, **batch):
        losses = {"loss_kd": self.logit_loss(student.logits, teacher.logits, target, epoch)}
        if self.enable_wkdf:
            losses["loss_feat"] = self.feature_loss(
                student.feats["feats"][self.hint_layer], teacher.feats["feats"][self.hint_layer], epoch
            )
        return losses


@register_distiller("WKD", task="detection")
class DetectionWKD(RCNNDistiller, WKD):
    """WKD-L on the RoI logits (K + 1 classes, background last; the cost matrix is (K + 1) × (K + 1)) and WKD-F on
    the FPN maps P2–P6 (each level's student map through its own 1×1 projector), ``WKD.*`` keys; this project's
    reconstruction (the release has no detection code)."""

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher, cfg)
        self.ROI_LOGITS = self.enable_wkdl

    def _init_feature_part(self, w, cfg, student, teacher):
        self.mean_cov_ratio = w.MEAN_COV_RATIO
        self.eps = w.EPS
        self.spatial_grid = int(w.SPATIAL_GRID)
        self.projectors = fpn_projectors(student, teacher)

    @staticmethod
    def teacher_classifier(teacher):
        """The rows of the teacher's RoI class predictor in the distilled order (K classes, background last)."""
        return teacher.roi_heads.box_predictor.cls_score.weight[teacher.distill_columns]

    def distill_losses(self, student, teacher, target, epoch, **batch):
        losses = {"loss_kd": self.logit_loss(student.logits, teacher.logits, target, epoch)}
        if self.enable_wkdf:
            coarsest = teacher.feats["fpn"][-1].shape[-2:]
            if min(smallest_window(n, self.spatial_grid) for n in coarsest) < 2:
                # Windows of one pixel have no (unbiased) variance: the loss would be NaN.
                raise ValueError("WKD.SPATIAL_GRID {} is too fine for this batch's {}x{} P6 maps: lower it, or train "
                                 "on larger images".format(self.spatial_grid, coarsest[0], coarsest[1]))
            loss = sum(wkd_feature_loss(projector(f_s), f_t, eps=self.eps, grid=self.spatial_grid,
                                        mean_cov_ratio=self.mean_cov_ratio)
                       for projector, f_s, f_t in zip(self.projectors, student.feats["fpn"], teacher.feats["fpn"]))
            losses["loss_feat"] = self.feat_weight_at(epoch) * loss
        return losses
