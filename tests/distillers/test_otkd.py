"""OTKD (Lohit & Jones, WACV 2022): loss vs an independent computation, embeddings, gradients.

The reference recomputes the features by running (copies of) the models, the
cosine cost by hand, and the plan either with a hand-written float64 IPOT loop
(Xie et al. 2019, Algorithm 1, multiplicative form) or with POT's exact
``ot.emd2`` (IPOT's small-β limit).
"""
import copy

import numpy as np
import ot
import pytest
import torch
import torch.nn.functional as F

from mdistiller.distillers import OTKD, build_distiller, get_distiller_class
from mdistiller.engine.cfg import CFG
from mdistiller.models import cifar_model_dict
from tests.helpers.loss_reference import hand_cost, ipot_reference

BATCH = 5
SIZE = 16  # CIFAR models pool adaptively: 16x16 inputs keep the tests fast


def make_cfg(**otkd):
    cfg = CFG.clone()
    cfg.DISTILLER.TYPE = "OTKD"
    cfg.DATASET.INPUT_SIZE = SIZE  # shape probe on the tests' input size
    for key, value in otkd.items():
        cfg.OTKD[key] = value
    return cfg


def models(student="resnet8", teacher="resnet20", seed=0):
    torch.manual_seed(seed)
    return cifar_model_dict[student][0](num_classes=10), cifar_model_dict[teacher][0](num_classes=10)


def batch(seed=1, n=BATCH):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, SIZE, SIZE, generator=g), torch.randint(0, 10, (n,), generator=g)


def expected_loss(distiller, student, teacher, image, stage_index, solver, beta=20.0, num_iter=50, plan="ipot"):
    """ALPHA · Σ_stages Σ T ⊙ C from copies of the models / embeddings in train mode, in float64."""
    s_model, t_model = copy.deepcopy(student).train(), copy.deepcopy(teacher).eval()
    embeds = copy.deepcopy(distiller.embeds).train()
    _, fs = s_model(image)
    with torch.no_grad():
        _, ft = t_model(image)
    total = 0.0
    for (k, idx_s, idx_t), embed in zip(stage_index, embeds):
        f_s = fs["pooled_feat"] if idx_s == "pooled" else fs["feats"][idx_s]
        f_t = ft["pooled_feat"] if idx_t == "pooled" else ft["feats"][idx_t]
        with torch.no_grad():
            if f_t.dim() == 4 and f_t.shape[2:] != f_s.shape[2:]:
                f_t = F.adaptive_avg_pool2d(f_t, f_s.shape[2:])
            if embed.proj is not None:
                f_t = embed.proj(f_t)
        cost = hand_cost(f_s.detach(), f_t)
        n = cost.shape[0]
        if solver == "remd":
            value = torch.maximum(cost.min(1).values.mean(), cost.min(0).values.mean())
        elif plan == "emd":
            w = np.full(n, 1.0 / n)
            value = torch.tensor(ot.emd2(w, w, cost.numpy()), dtype=torch.float64)
        else:
            value = (ipot_reference(cost, beta, num_iter) * cost).sum()
        total = total + value
    return distiller.alpha * total


def run(distiller, image, target):
    distiller.train()
    _, losses = distiller(image=image, target=target)
    return losses


@pytest.mark.parametrize("solver", ["ipot", "remd"])
def test_same_width_loss_matches_reference(solver):
    """resnet20 -> resnet8: same shapes, no embedding; 4 feats entries = stages 0..3."""
    student, teacher = models()
    d = build_distiller(make_cfg(SOLVER=solver), student, teacher)
    assert isinstance(d, OTKD) and get_distiller_class("OTKD") is OTKD
    assert all(e.proj is None and not e.pool for e in d.embeds)
    assert d.get_extra_parameters() == 0
    image, target = batch()
    stages = [(k, k, k) for k in range(4)]
    ref = expected_loss(d, student, teacher, image, stages, solver)
    ref_ce = F.cross_entropy(copy.deepcopy(student).train()(image)[0], target)
    losses = run(d, image, target)
    assert set(losses) == {"loss_ce", "loss_kd"}
    assert losses["loss_kd"].dtype == torch.float32
    torch.testing.assert_close(losses["loss_kd"].double(), ref, rtol=2e-5, atol=2e-6)
    torch.testing.assert_close(losses["loss_ce"], ref_ce, rtol=1e-5, atol=1e-6)


def test_embeddings_pooling_five_feat_mapping_and_penultimate():
    """resnet8 teacher (4 feats) -> vgg8 student (5 feats: stem skipped), with pooled_feat (stage 4)."""
    student, teacher = models("vgg8", "resnet8")
    cfg = make_cfg(STAGES=[0, 1, 2, 3, 4])
    d = build_distiller(cfg, student, teacher)
    # teacher channels 16,16,32,64 (+64 pooled) -> student 128,256,512,512 (+512): all embedded
    assert [type(e.proj).__name__ for e in d.embeds] == ["Sequential"] * 4 + ["Linear"]
    assert [e.pool for e in d.embeds] == [True, True, True, True, False]
    extra = {id(p) for p in d.embeds.parameters()}
    learnable = {id(p) for p in d.get_learnable_parameters()}
    assert extra and extra <= learnable
    assert d.get_extra_parameters() == sum(p.numel() for p in d.embeds.parameters())
    image, target = batch()
    stages = [(0, 1, 0), (1, 2, 1), (2, 3, 2), (3, 4, 3), (4, "pooled", "pooled")]
    ref = expected_loss(d, student, teacher, image, stages, "ipot")
    losses = run(d, image, target)
    torch.testing.assert_close(losses["loss_kd"].double(), ref, rtol=2e-5, atol=2e-6)
    sum(losses.values()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in d.embeds.parameters())
    assert all(p.grad is None for p in teacher.parameters())


def test_ipot_small_beta_reaches_exact_emd():
    """IPOT converges to the exact OT cost (POT's network simplex) for small β."""
    student, teacher = models("resnet8", "wrn_16_2")
    d = build_distiller(make_cfg(BETA=0.1, ITER=300, STAGES=[2, 3]), student, teacher)
    image, target = batch(seed=3)
    ref = expected_loss(d, student, teacher, image, [(2, 2, 2), (3, 3, 3)], "ipot", plan="emd")
    losses = run(d, image, target)
    torch.testing.assert_close(losses["loss_kd"].double(), ref, rtol=1e-4, atol=1e-5)


def test_plan_is_detached_gradient():
    """DETACH_PLAN: the gradient is that of Σ T.detach() ⊙ C (T from the float64 reference)."""
    student, teacher = models()
    d = build_distiller(make_cfg(STAGES=[3], ALPHA=1.0, LOSS=CFG.OTKD.LOSS.clone()), student, teacher)
    d.ce_weight = 0.0
    image, target = batch()
    s_copy = copy.deepcopy(student).train()
    _, fs = s_copy(image)
    with torch.no_grad():
        _, ft = copy.deepcopy(teacher).eval()(image)
    cost = 1.0 - F.normalize(fs["feats"][3].flatten(1), dim=1) @ F.normalize(ft["feats"][3].flatten(1), dim=1).t()
    plan = ipot_reference(cost, 20.0, 50).float()
    (plan * cost).sum().backward()
    losses = run(d, image, target)
    losses["loss_kd"].backward()
    for (name, p), q in zip(student.named_parameters(), s_copy.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=1e-6, msg=name)
    # unrolled plan: a different (still finite) gradient
    student2, teacher2 = models()
    d2 = build_distiller(make_cfg(STAGES=[3], ALPHA=1.0, DETACH_PLAN=False), student2, teacher2)
    run(d2, image, target)["loss_kd"].backward()
    w, w2 = student.conv1.weight.grad, student2.conv1.weight.grad
    assert torch.isfinite(w2).all() and not torch.allclose(w, w2)


def test_bad_stage_and_solver():
    student, teacher = models()
    with pytest.raises(ValueError, match="OTKD.STAGES"):
        build_distiller(make_cfg(STAGES=[5]), student, teacher)
    with pytest.raises(ValueError, match="SOLVER"):
        build_distiller(make_cfg(SOLVER="sinkhorn"), student, teacher)


def test_probe_keeps_bn_statistics_and_modes():
    student, teacher = models("resnet8", "wrn_16_2")
    student.train()
    before = copy.deepcopy(student.state_dict())
    build_distiller(make_cfg(), student, teacher)
    assert student.training and all(m.training for m in student.modules())
    for k, v in student.state_dict().items():
        assert torch.equal(v, before[k]), k
