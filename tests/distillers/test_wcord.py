"""WCoRD (Chen et al. CVPR 2021): global (NCE with a spectrally normalised critic) and local (Sinkhorn) terms.

The NCE reference is written one sample / contrast at a time from CRD's
formulas; the local term is checked against POT's ``ot.sinkhorn2`` with the same
number of iterations and no early stop.
"""
import copy

import numpy as np
import ot
import pytest
import torch
import torch.nn.functional as F

from mdistiller.distillers import WCORD, build_distiller, get_distiller_class
from mdistiller.engine.cfg import CFG, get_cfg
from mdistiller.registry import data_needs
from tests.helpers.distill_inputs import contrastive_batch, zoo_pair
from tests.helpers.loss_reference import nce_reference

NUM_DATA, K, DIM, BATCH, SIZE = 40, 8, 8, 5, 16


def make_cfg(**loss):
    cfg = CFG.clone()
    cfg.DISTILLER.TYPE = "WCORD"
    cfg.WCORD.NCE.K = K
    cfg.WCORD.FEAT.DIM = DIM
    cfg.WCORD.FEAT.STUDENT_DIM = 64  # resnet8
    cfg.WCORD.FEAT.TEACHER_DIM = 128  # wrn_16_2
    cfg.WCORD.SINKHORN.LAMBDA = 0.1
    cfg.WCORD.SINKHORN.ITER = 30
    for key, value in loss.items():
        cfg.WCORD.LOSS[key] = value
    return cfg


def setup(cfg=None, seed=0):
    student, teacher = zoo_pair(seed=seed)
    d = build_distiller(cfg or make_cfg(), student, teacher, num_data=NUM_DATA)
    d.train()
    return d, student, teacher


def make_batch(seed=1):
    return contrastive_batch(BATCH, SIZE, NUM_DATA, K, seed=seed)


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
    image, target, index, contrast = make_batch().values()
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
    _, losses = d(**make_batch(seed=4))
    assert losses["loss_global"].item() == 0.0 and losses["loss_ce"].item() == 0.0
    assert losses["loss_local"].item() > 0
    losses["loss_local"].backward()
    assert student.layer1[0].conv1.weight.grad.abs().sum() > 0


def test_config_errors():
    student, teacher = zoo_pair()
    with pytest.raises(ValueError, match="num_data"):
        build_distiller(make_cfg(), student, teacher)
    d = build_distiller(make_cfg(), student, teacher, num_data=NUM_DATA).train()
    with pytest.raises(ValueError, match="contrastive_index"):
        d(image=torch.zeros(2, 3, SIZE, SIZE), target=torch.zeros(2, dtype=torch.long))


def test_data_needs_from_its_own_block():
    """The train set's sampling comes from WCORD.NCE.K / WCORD.MODE, whatever CRD's block says;
    COMBINE rejects parts that ask for different sampling."""
    cfg = make_cfg()
    cfg.CRD.NCE.K = K + 1
    cfg.CRD.MODE = "relax"
    needs = data_needs(cfg)
    assert (needs.contrastive_k, needs.contrastive_mode, needs.num_data) == (K, "exact", True)
    cfg.WCORD.MODE = "relax"
    assert data_needs(cfg).contrastive_mode == "relax"
    student, teacher = zoo_pair()
    build_distiller(cfg, student, teacher, num_data=NUM_DATA)  # no cross-check against CRD.NCE.K
    cfg.DISTILLER.TYPE = "COMBINE"
    cfg.COMBINE.METHODS = ["CRD", "WCORD"]
    with pytest.raises(ValueError, match="different contrastive sampling"):
        data_needs(cfg)
    cfg.CRD.NCE.K, cfg.CRD.MODE = K, "relax"
    assert data_needs(cfg).contrastive_k == K


def test_sinkhorn_reg_is_an_alias_of_lambda(tmp_path):
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text("DISTILLER:\n  TYPE: WCORD\nWCORD:\n  SINKHORN:\n    REG: 0.125\n    ITER: 7\n")
    new.write_text("DISTILLER:\n  TYPE: WCORD\nWCORD:\n  SINKHORN:\n    LAMBDA: 0.125\n    ITER: 7\n")
    cfg_old, cfg_new = get_cfg(str(old)), get_cfg(str(new))
    assert cfg_old.WCORD.SINKHORN.LAMBDA == cfg_new.WCORD.SINKHORN.LAMBDA == 0.125
    assert "REG" not in cfg_old.WCORD.SINKHORN
    assert cfg_old.WCORD == cfg_new.WCORD
    assert get_cfg(opts=["WCORD.SINKHORN.REG", "0.25"]).WCORD.SINKHORN.LAMBDA == 0.25
    assert CFG.WCORD.SINKHORN.LAMBDA == 0.05  # default
    with pytest.raises(ValueError, match="WCORD.SINKHORN.LAMBDA"):
        get_cfg(opts=["WCORD.SINKHORN.REG", "0.25", "WCORD.SINKHORN.LAMBDA", "0.5"])
    student, teacher = zoo_pair(teacher="resnet8")
    assert build_distiller(cfg_old, student, teacher, num_data=NUM_DATA).sinkhorn_lambda == 0.125
