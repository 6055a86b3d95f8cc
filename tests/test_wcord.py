"""WCoRD (Chen et al. CVPR 2021): global (NCE with a spectrally normalised critic) and local (Sinkhorn) terms.

The NCE reference is written one sample / contrast at a time from CRD's
formulas; the local term is checked against POT's ``ot.sinkhorn2`` with the same
number of iterations and no early stop.
"""
import copy
import math

import numpy as np
import ot
import pytest
import torch
import torch.nn.functional as F

from mdistiller.distillers import WCORD, build_distiller, get_distiller_class
from mdistiller.engine.cfg import CFG
from mdistiller.models import cifar_model_dict




NUM_DATA, K, DIM, BATCH, SIZE = 40, 8, 8, 5, 16


def make_cfg(**loss):
    cfg = CFG.clone()
    cfg.DISTILLER.TYPE = "WCORD"
    cfg.CRD.NCE.K = K
    cfg.WCORD.NCE.K = K
    cfg.WCORD.FEAT.DIM = DIM
    cfg.WCORD.FEAT.STUDENT_DIM = 64  # resnet8
    cfg.WCORD.FEAT.TEACHER_DIM = 128  # wrn_16_2
    cfg.WCORD.SINKHORN.REG = 0.1
    cfg.WCORD.SINKHORN.ITER = 30
    for key, value in loss.items():
        cfg.WCORD.LOSS[key] = value
    return cfg


def setup(cfg=None, seed=0):
    torch.manual_seed(seed)
    student = cifar_model_dict["resnet8"][0](num_classes=10)
    teacher = cifar_model_dict["wrn_16_2"][0](num_classes=10)
    d = build_distiller(cfg or make_cfg(), student, teacher, num_data=NUM_DATA)
    d.train()
    return d, student, teacher


def make_batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(BATCH, 3, SIZE, SIZE, generator=g)
    target = torch.randint(0, 10, (BATCH,), generator=g)
    index = torch.randperm(NUM_DATA, generator=g)[:BATCH]
    contrast = torch.randint(0, NUM_DATA, (BATCH, K + 1), generator=g)
    contrast[:, 0] = index
    return image, target, index, contrast


def nce_reference(pos_neg_scores, num_data):
    """-1/B Σ_i [log(P0/(P0 + K/N)) + Σ_j log((K/N)/(Pj + K/N))], one term at a time (ε = 1e-7)."""
    total = 0.0
    for row in pos_neg_scores.tolist():
        m = len(row) - 1
        mpn = m / num_data
        total += math.log(row[0] / (row[0] + mpn + 1e-7))
        total += sum(math.log(mpn / (p + mpn + 1e-7)) for p in row[1:])
    return -total / len(pos_neg_scores)


def test_registry_flags_and_spectral_norm():
    assert get_distiller_class("WCORD") is WCORD
    needs = WCORD.data_needs(make_cfg())
    assert needs.contrastive_k > 0 and needs.num_data
    d, _, _ = setup()
    for embed in (d.embed_s, d.embed_t):
        assert torch.nn.utils.parametrize.is_parametrized(embed.linear, "weight")
    # power iterations converge: the critic's linear maps have spectral norm 1
    x = torch.randn(BATCH, 64)
    for _ in range(30):
        d.embed_s(x)
    assert abs(torch.linalg.matrix_norm(d.embed_s.linear.weight.detach(), 2).item() - 1.0) < 1e-3
    assert (d.embed_s(x * 100).norm(dim=1) <= 1 + 1e-5).all()  # input-normalised: ||v|| <= 1
    learnable = {id(p) for p in d.get_learnable_parameters()}
    assert {id(p) for p in d.embed_s.parameters()} <= learnable
    assert {id(p) for p in d.embed_t.parameters()} <= learnable


def test_losses_match_reference_and_memory_update():
    d, student, teacher = setup()
    image, target, index, contrast = make_batch()
    # independent recomputation from copies of the pre-step state
    s_copy, t_copy = copy.deepcopy(student).train(), copy.deepcopy(teacher).eval()
    e_s, e_t = copy.deepcopy(d.embed_s).train(), copy.deepcopy(d.embed_t).train()
    mem_v1, mem_v2 = d.contrast.memory_v1.clone(), d.contrast.memory_v2.clone()
    logits, fs = s_copy(image)
    with torch.no_grad():
        _, ft = t_copy(image)
        w_s = e_s.linear.weight  # spectrally normalised weight after this step's power iteration
        w_t = e_t.linear.weight
        v_s = F.normalize(fs["pooled_feat"], dim=1) @ w_s.t()
        v_t = F.normalize(ft["pooled_feat"], dim=1) @ w_t.t()
    T = CFG.WCORD.NCE.TEMPERATURE
    p_s = torch.stack([torch.exp((mem_v2[contrast[i]] @ v_s[i]) / T) for i in range(BATCH)]).double()
    p_t = torch.stack([torch.exp((mem_v1[contrast[i]] @ v_t[i]) / T) for i in range(BATCH)]).double()
    p_s, p_t = p_s / (p_s.mean() * NUM_DATA), p_t / (p_t.mean() * NUM_DATA)  # Z from the first batch
    ref_global = 0.8 * (nce_reference(p_s, NUM_DATA) + nce_reference(p_t, NUM_DATA))
    vs = F.normalize(v_s.double(), dim=1)
    vt = F.normalize(v_t.double(), dim=1)
    cost = (1.0 - vs @ vt.t()).numpy()
    w = np.full(BATCH, 1.0 / BATCH)
    ref_local = 1.0 * ot.sinkhorn2(w, w, cost, 0.1, numItermax=30, stopThr=0)
    ref_ce = F.cross_entropy(logits, target).item()

    _, losses = d(image=image, target=target, index=index, contrastive_index=contrast)
    assert set(losses) == {"loss_ce", "loss_global", "loss_local"}
    assert all(v.dtype == torch.float32 for v in losses.values())
    assert losses["loss_ce"].item() == pytest.approx(ref_ce, rel=1e-5)
    assert losses["loss_global"].item() == pytest.approx(ref_global, rel=1e-4)
    assert losses["loss_local"].item() == pytest.approx(float(ref_local), rel=1e-4, abs=1e-6)
    # memory rows of the batch moved (momentum 0.5, then L2-normalised), others untouched
    expect_v1 = F.normalize(0.5 * mem_v1[index] + 0.5 * v_s, dim=1)
    torch.testing.assert_close(d.contrast.memory_v1[index], expect_v1, rtol=1e-4, atol=1e-5)
    others = torch.ones(NUM_DATA, dtype=torch.bool)
    others[index] = False
    assert torch.equal(d.contrast.memory_v2[others], mem_v2[others])

    sum(losses.values()).backward()
    for module in (d.embed_s, d.embed_t):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    assert student.conv1.weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())


def test_local_term_weights_and_gradient_through_student():
    d, student, _ = setup(make_cfg(GLOBAL_WEIGHT=0.0, CE_WEIGHT=0.0, LOCAL_WEIGHT=2.0))
    image, target, index, contrast = make_batch(seed=4)
    _, losses = d(image=image, target=target, index=index, contrastive_index=contrast)
    assert losses["loss_global"].item() == 0.0 and losses["loss_ce"].item() == 0.0
    assert losses["loss_local"].item() > 0
    losses["loss_local"].backward()
    assert student.layer1[0].conv1.weight.grad.abs().sum() > 0


def test_config_errors():
    cfg = make_cfg()
    cfg.WCORD.NCE.K = K + 1
    torch.manual_seed(0)
    student = cifar_model_dict["resnet8"][0](num_classes=10)
    teacher = cifar_model_dict["wrn_16_2"][0](num_classes=10)
    with pytest.raises(ValueError, match="CRD.NCE.K"):
        build_distiller(cfg, student, teacher, num_data=NUM_DATA)
    with pytest.raises(ValueError, match="num_data"):
        build_distiller(make_cfg(), student, teacher)
    d = build_distiller(make_cfg(), student, teacher, num_data=NUM_DATA).train()
    with pytest.raises(ValueError, match="contrastive_index"):
        d(image=torch.zeros(2, 3, SIZE, SIZE), target=torch.zeros(2, dtype=torch.long))
