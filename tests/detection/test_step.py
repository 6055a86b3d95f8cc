"""The detection step (mdistiller's RCNNKD) and every method's detection variant, in float64 on real detectors.

One step of COMBINE over all the detection methods gives each method's term on the same sampled RoIs and FPN maps;
each term is recomputed here from the student's captured RoI output and from the teacher run by hand (its own
normalisation, its box head on the student's proposals), with the class order built by hand (the K classes, then the
background: mdistiller's), against formulas written out per sample (``tests/helpers/loss_reference.py``) and
mdistiller's detection ``hcl``. Spies check that the detection variants call the classification loss functions.
"""
import importlib

import pytest
import torch
import torch.nn.functional as F

from mdistiller.distillers import build_distiller
from mdistiller.engine.build import build_detectors
from mdistiller.engine.cfg import get_cfg
from mdistiller.losses.class_cost import prepare_cost_matrix
from mdistiller.losses.reviewkd import hcl_loss
from mdistiller.losses.wkd import wkd_feature_loss, wkd_target_loss
from tests.detection.conftest import CATEGORY_IDS, TINY, coco_layout
from tests.helpers.loss_reference import dkd_reference, kd_reference, wkd_nontarget_reference

K = len(CATEGORY_IDS)
METHODS = ["KD", "DKD", "FITNET", "REVIEWKD", "WKD"]
TEACHER_MEAN, TEACHER_STD = [0.40, 0.50, 0.60], [0.20, 0.25, 0.30]


def mdistiller_hcl(fstudent, fteacher):
    """mdistiller's detection ``hcl`` (detection/model/reviewkd.py), written out: per level the MSE plus the MSEs of
    the 4x4, 2x2 and 1x1 average pools of levels at least that tall, weights 1, 1/2, 1/4, 1/8, divided by their sum."""
    total = 0.0
    for fs, ft in zip(fstudent, fteacher):
        loss, weight, weights = F.mse_loss(fs, ft), 1.0, 1.0
        for size in (4, 2, 1):
            if size < fs.shape[2]:
                weight /= 2.0
                loss = loss + weight * F.mse_loss(F.adaptive_avg_pool2d(fs, size), F.adaptive_avg_pool2d(ft, size))
                weights += weight
        total = total + loss / weights
    return total


def test_hcl_equals_mdistillers_detection_formula():
    g = torch.Generator().manual_seed(0)
    shapes = [(25, 34), (13, 17), (7, 9), (4, 5), (2, 3)]  # P2-P6 of a 100 x 136 image: not square, some below 4
    fs = [torch.randn(2, 3, h, w, generator=g, dtype=torch.float64) for h, w in shapes]
    ft = [torch.randn(2, 3, h, w, generator=g, dtype=torch.float64) for h, w in shapes]
    assert hcl_loss(fs, ft).item() == pytest.approx(mdistiller_hcl(fs, ft).item(), rel=1e-12)


def preprocess_by_hand(images, mean, std, bgr):
    """The teacher's input: each image normalised with its own mean/std (channels reversed for BGR), zero-padded
    to sides divisible by 32."""
    h = max(i.shape[1] for i in images)
    w = max(i.shape[2] for i in images)
    batch = torch.zeros(len(images), 3, -(-h // 32) * 32, -(-w // 32) * 32, dtype=images[0].dtype)
    mean, std = torch.tensor(mean, dtype=batch.dtype).view(3, 1, 1), torch.tensor(std, dtype=batch.dtype).view(3, 1, 1)
    for slot, image in zip(batch, images):
        image = image.flip(0) if bgr else image
        slot[:, :image.shape[1], :image.shape[2]] = (image - mean) / std
    return batch


@pytest.fixture(scope="module")
def step(shapes_root, teachers, monkeypatch_module):
    """One COMBINE step over every detection method, float64, ResNet18 student and torchvision-layout (91-column)
    ResNet50 teacher with its own normalisation (BGR): the losses, the captured student output, the inputs."""
    opts = TINY + coco_layout(shapes_root) + [
        "DISTILLER.TYPE", "COMBINE", "DISTILLER.STUDENT", "ResNet18", "DISTILLER.TEACHER", "ResNet50",
        "DISTILLER.TEACHER_CKPT", teachers["ResNet50"], "COMBINE.METHODS", str(METHODS),
        "DETECTION.TEACHER_PIXEL_MEAN", str(TEACHER_MEAN), "DETECTION.TEACHER_PIXEL_STD", str(TEACHER_STD),
        "DETECTION.TEACHER_INPUT_FORMAT", "BGR", "KD.TEMPERATURE", "2.0", "KD.LOSS.KD_WEIGHT", "0.7",
        "DKD.ALPHA", "1.0", "DKD.BETA", "0.25", "DKD.T", "1.0", "DKD.WARMUP", "0", "FITNET.LOSS.FEAT_WEIGHT", "0.5",
        "REVIEWKD.REVIEWKD_WEIGHT", "1.2", "REVIEWKD.WARMUP_EPOCHS", "0", "WKD.COST_MATRIX", "fc",
        "WKD.LOSS.WKD_LOGIT_WEIGHT", "3.0", "WKD.LOSS.WKD_FEAT_WEIGHT", "0.02", "WKD.LOSS.COSINE_DECAY_EPOCH", "100",
        "WKD.TEMPERATURE", "2.0",
    ]
    cfg = get_cfg(None, opts)
    torch.manual_seed(0)
    student, teacher = build_detectors(cfg, CATEGORY_IDS)
    distiller = build_distiller(cfg, student, teacher).double().train()
    calls = {}
    for module, name in (("KD", "kd_loss"), ("DKD", "dkd_loss"), ("FITNET", "hint_loss"), ("REVIEWKD", "hcl_loss"),
                         ("WKD", "wkd_nontarget_distance"), ("WKD", "wkd_feature_loss")):
        module = importlib.import_module("mdistiller.distillers." + module)  # the module: the package exports the class
        function = getattr(module, name)

        def spy(*args, _function=function, _name=name, **kwargs):
            calls[_name] = calls.get(_name, 0) + 1
            return _function(*args, **kwargs)

        monkeypatch_module.setattr(module, name, spy)
    captured = {}
    train_forward = student.train_forward

    def capture(images, targets):
        captured["out"] = train_forward(images, targets)
        return captured["out"]

    monkeypatch_module.setattr(student, "train_forward", capture)
    g = torch.Generator().manual_seed(3)
    images = [torch.rand(3, 96, 96, generator=g, dtype=torch.float64), torch.rand(3, 64, 96, generator=g,
                                                                                   dtype=torch.float64)]
    targets = [{"boxes": torch.tensor([[10.0, 12.0, 50.0, 60.0], [60.0, 5.0, 90.0, 30.0]], dtype=torch.float64),
                "labels": torch.tensor([1, 4])},
               {"boxes": torch.tensor([[20.0, 20.0, 70.0, 50.0]], dtype=torch.float64), "labels": torch.tensor([3])}]
    (roi_logits, roi_labels), losses = distiller(image=images, target=targets, epoch=1)
    return dict(distiller=distiller, losses=losses, out=captured["out"], images=images, calls=calls,
                roi=(roi_logits, roi_labels))


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def by_hand(step):
    """Student and teacher RoI logits in mdistiller's class order and the RoI labels, built without the project's
    class mapping; the teacher's FPN maps from its own normalisation."""
    distiller, out = step["distiller"], step["out"]
    teacher = distiller.teacher
    student_order = list(range(1, K + 1)) + [0]  # detector columns 1..K, background 0
    teacher_order = CATEGORY_IDS + [0]  # torchvision's COCO layout: column = category id
    features = teacher.backbone(preprocess_by_hand(step["images"], TEACHER_MEAN, TEACHER_STD, bgr=True))
    with torch.no_grad():
        t_logits = teacher.roi_heads.box_predictor(teacher.roi_heads.box_head(
            teacher.roi_heads.box_roi_pool(features, out.proposals, out.image_sizes)))[0]
    labels = torch.cat(out.labels)
    y = torch.where(labels == 0, torch.full_like(labels, K), labels - 1)
    return out.class_logits[:, student_order], t_logits[:, teacher_order], y, list(features.values())


def test_logit_methods_equal_mdistillers_formulas_in_its_class_order(step):
    zs, zt, y, _ = by_hand(step)
    losses = step["losses"]
    assert zs.dtype == torch.float64 and (y == K).any() and (y < K).any()  # background and object RoIs
    assert losses["DKD.loss_kd"].item() == pytest.approx(dkd_reference(zs, zt, y, 1.0, 0.25, 1.0).item(), rel=1e-10)
    assert losses["KD.loss_kd"].item() == pytest.approx(0.7 * kd_reference(zs, zt, 2.0).item(), rel=1e-10)
    # WKD-L: the target term and 3 x the non-target transport under 1 - cos of the teacher's predictor rows
    rows = step["distiller"].teacher.roi_heads.box_predictor.cls_score.weight[CATEGORY_IDS + [0]]
    cos = F.normalize(rows, dim=1) @ F.normalize(rows, dim=1).t()
    cost = prepare_cost_matrix((1.0 - cos).double(), 1.0)
    expected = wkd_target_loss(zs, zt, y) + 3.0 * wkd_nontarget_reference(zs, zt, y, cost, 2.0, 0.05, 10)
    assert losses["WKD.loss_kd"].item() == pytest.approx(expected.item(), rel=1e-6)  # float32 cost (fc), float64 rest
    logits, labels = step["roi"]
    assert torch.equal(logits, step["out"].class_logits) and torch.equal(labels, torch.cat(step["out"].labels))
    assert set(losses) >= {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}


def test_feature_methods_on_the_fpn_maps_call_the_classification_losses(step):
    distiller, losses = step["distiller"], step["losses"]
    _, _, _, t_fpn = by_hand(step)
    s_fpn = list(step["out"].features.values())
    assert len(s_fpn) == len(t_fpn) == 5 and all(s.shape == t.shape for s, t in zip(s_fpn, t_fpn))
    parts = distiller.parts
    fitnet = 0.5 * sum(F.mse_loss(r(s), t) for r, s, t in zip(parts["FITNET"].regressors, s_fpn, t_fpn))
    assert losses["FITNET.loss_kd"].item() == pytest.approx(fitnet.item(), rel=1e-10)
    review = 1.2 * mdistiller_hcl(parts["REVIEWKD"].fuse(s_fpn), t_fpn)
    assert losses["REVIEWKD.loss_kd"].item() == pytest.approx(review.item(), rel=1e-10)
    wkd_f = 0.02 * sum(wkd_feature_loss(p(s), t, eps=1e-5, grid=1, mean_cov_ratio=2.0)
                       for p, s, t in zip(parts["WKD"].projectors, s_fpn, t_fpn))
    assert losses["WKD.loss_feat"].item() == pytest.approx(wkd_f.item(), rel=1e-10)
    assert step["calls"] == {"kd_loss": 1, "dkd_loss": 1, "hint_loss": 5, "hcl_loss": 1,
                             "wkd_nontarget_distance": 1, "wkd_feature_loss": 5}
