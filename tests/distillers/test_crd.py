"""CRD (Contrastive Representation Distillation): loss, gradient, memory, state and DDP.

The reference below is written from the paper / mdistiller's formulas, one
sample and one contrast at a time, independently of ``mdistiller.losses.crd`` and ``mdistiller/distillers/CRD.py``.
"""
import inspect
import math
import os
import tempfile

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mdistiller.distillers import CRD, build_distiller, distiller_dict
from mdistiller.engine.cfg import CFG
from mdistiller.models import cifar_model_dict
from tests.helpers.distill_inputs import default_dtype

NUM_DATA = 40
K = 8
EMBED_DIM = 8
BATCH = 4


class TinyNet(nn.Module):
    """Same output contract as the zoo models, no BatchNorm (batch-split invariant)."""

    def __init__(self, feat_dim, num_classes=10):
        super().__init__()
        self.conv = nn.Conv2d(3, feat_dim, 3, padding=1)
        self.fc = nn.Linear(feat_dim, num_classes)

    def forward(self, x):
        f = self.conv(x)
        pooled = F.relu(f).mean((2, 3))
        return self.fc(pooled), {"feats": [f], "preact_feats": [f], "pooled_feat": pooled}


def make_models(zoo=True):
    """(student, teacher, student_dim, teacher_dim)."""
    if zoo:
        student = cifar_model_dict["resnet8"][0](num_classes=10)
        teacher = cifar_model_dict["resnet20"][0](num_classes=10)
        with torch.no_grad():
            _, fs = student(torch.zeros(2, 3, 32, 32))
            _, ft = teacher(torch.zeros(2, 3, 32, 32))
        return student, teacher, fs["pooled_feat"].shape[1], ft["pooled_feat"].shape[1]
    return TinyNet(12), TinyNet(20), 12, 20


def make_cfg(student_dim, teacher_dim, k=K):
    cfg = CFG.clone()
    cfg.DISTILLER.TYPE = "CRD"
    cfg.CRD.FEAT.DIM = EMBED_DIM
    cfg.CRD.FEAT.STUDENT_DIM = student_dim
    cfg.CRD.FEAT.TEACHER_DIM = teacher_dim
    cfg.CRD.NCE.K = k
    return cfg


def make_crd(seed=0, zoo=True):
    torch.manual_seed(seed)
    student, teacher, ds, dt = make_models(zoo)
    crd = CRD(student, teacher, make_cfg(ds, dt), NUM_DATA)
    crd.train()
    return crd


def make_batch(seed, batch=BATCH, k=K, num_data=NUM_DATA):
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, 3, 32, 32, generator=g)
    target = torch.randint(0, 10, (batch,), generator=g)
    index = torch.randperm(num_data, generator=g)[:batch]
    negatives = torch.randint(0, num_data, (batch, k), generator=g)
    contrastive_index = torch.cat([index[:, None], negatives], 1)
    return dict(image=image, target=target, index=index, contrastive_index=contrastive_index)


# ---------------------------------------------------------------------------
# Independent reference
# ---------------------------------------------------------------------------


def ref_embed(x, weight, bias):
    rows = []
    for i in range(x.shape[0]):
        e = weight @ x[i] + bias
        rows.append(e / torch.sqrt((e * e).sum()))
    return torch.stack(rows)


def ref_side_loss(emb, memory, contrast_index, temperature, z, num_data):
    """NCE loss of one side; returns (loss, z) with z estimated here when z < 0."""
    batch, n_contrast = contrast_index.shape
    m = n_contrast - 1
    exp_scores = [
        [torch.exp(torch.dot(memory[int(contrast_index[i, j])], emb[i]) / temperature) for j in range(n_contrast)]
        for i in range(batch)
    ]
    if z < 0:  # first use: Z = N · mean of the exponentiated scores, a constant
        z = float(sum(float(s.detach()) for row in exp_scores for s in row) / (batch * n_contrast)) * num_data
    noise = m / num_data  # m · Pn with Pn = 1/N
    total = 0.0
    for i in range(batch):
        p = [s / z for s in exp_scores[i]]
        total = total + torch.log(p[0] / (p[0] + noise + 1e-7))
        for j in range(1, n_contrast):
            total = total + torch.log(noise / (p[j] + noise + 1e-7))
    return -total / batch, z


def ref_crd_loss(f_s, f_t, ws, bs, wt, bt, mem_v1, mem_v2, contrast_index, temperature, z_v1, z_v2, num_data):
    v1, v2 = ref_embed(f_s, ws, bs), ref_embed(f_t, wt, bt)
    loss_s, z_v1 = ref_side_loss(v1, mem_v2, contrast_index, temperature, z_v1, num_data)
    loss_t, z_v2 = ref_side_loss(v2, mem_v1, contrast_index, temperature, z_v2, num_data)
    return loss_s + loss_t, v1, v2, z_v1, z_v2


def reference_step(crd, batch):
    """The reference loss_kd and d(loss_kd)/d(embed_s.weight), from crd's *current* state."""
    with torch.no_grad():
        f_s = crd.student(batch["image"])[1]["pooled_feat"]
        f_t = crd.teacher(batch["image"])[1]["pooled_feat"]
    ws = crd.embed_s.linear.weight.detach().clone().requires_grad_(True)
    bs = crd.embed_s.linear.bias.detach().clone()
    wt = crd.embed_t.linear.weight.detach().clone()
    bt = crd.embed_t.linear.bias.detach().clone()
    params = crd.contrast.params.tolist()
    loss, v1, v2, z_v1, z_v2 = ref_crd_loss(
        f_s, f_t, ws, bs, wt, bt,
        crd.contrast.memory_v1.clone(), crd.contrast.memory_v2.clone(),
        batch["contrastive_index"], params[1], params[2], params[3], NUM_DATA,
    )
    loss = crd.feat_loss_weight * loss
    (grad,) = torch.autograd.grad(loss, ws)
    return loss.detach(), grad, v1.detach(), v2.detach(), z_v1, z_v2


def run_step(crd, batch):
    crd.zero_grad(set_to_none=True)
    logits, losses = crd(**batch)
    sum(losses.values()).backward()
    return logits, losses


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------


def test_registry_and_construction():
    assert distiller_dict["CRD"] is CRD
    student, teacher, ds, dt = make_models()
    needs = CRD.data_needs(make_cfg(ds, dt))
    assert needs.contrastive_k > 0 and needs.num_data
    crd = build_distiller(make_cfg(ds, dt), student, teacher, num_data=NUM_DATA)
    assert isinstance(crd, CRD)
    extra = {k for k in crd.state_dict() if not k.startswith(("student.", "teacher."))}
    assert extra == {
        "embed_s.linear.weight", "embed_s.linear.bias", "embed_t.linear.weight", "embed_t.linear.bias",
        "contrast.params", "contrast.memory_v1", "contrast.memory_v2",
    }  # mdistiller's layout
    params = crd.contrast.params.tolist()
    assert params[0] == K and params[2] == -1 and params[3] == -1 and params[4] == 0.5
    assert params[1] == pytest.approx(0.07)
    stdv = 1.0 / math.sqrt(EMBED_DIM / 3)
    for mem in (crd.contrast.memory_v1, crd.contrast.memory_v2):
        assert mem.shape == (NUM_DATA, EMBED_DIM)
        assert mem.abs().max() <= stdv and mem.std() > 0.3 * stdv
    learnable = {id(p) for p in crd.get_learnable_parameters()}
    assert all(id(p) in learnable for p in crd.embed_s.parameters())
    assert all(id(p) in learnable for p in crd.embed_t.parameters())
    assert not any(id(p) in learnable for p in crd.teacher.parameters())


@pytest.fixture(params=["auto", "bank_product"])
def scoring(request, monkeypatch):
    """Scores as chosen for these sizes (a gather), or forced through the product with the whole bank."""
    if request.param == "bank_product":
        import mdistiller.losses.crd as crd_losses

        monkeypatch.setattr(crd_losses, "BANK_PRODUCT_MIN_GATHER", 0)
        assert crd_losses.use_bank_product(NUM_DATA, BATCH, K + 1, EMBED_DIM)
    return request.param


@pytest.mark.numerics
def test_loss_and_gradient_match_reference_over_two_steps(scoring):
    # float64 (networks, heads, memory banks, batch): the reference sums in another order; the float32 comparison
    # used up to 0.75 of its tolerances (1e-5 on the loss, 1e-4 on the gradient), depending on the CPU kernels
    with default_dtype(torch.float64):
        crd = make_crd()
        for step, seed in enumerate((1, 2)):
            batch = make_batch(seed)
            ref_loss, ref_grad, _, _, z_v1, z_v2 = reference_step(crd, batch)
            logits, losses = run_step(crd, batch)
            assert set(losses) == {"loss_ce", "loss_kd"}
            assert losses["loss_kd"].dtype == torch.float64
            torch.testing.assert_close(losses["loss_kd"], ref_loss, rtol=1e-10, atol=0, msg=str(step))
            ce = crd.ce_weight * F.cross_entropy(logits.detach(), batch["target"])
            torch.testing.assert_close(losses["loss_ce"].detach(), ce, rtol=1e-12, atol=0)
            grad = crd.embed_s.linear.weight.grad
            torch.testing.assert_close(grad, ref_grad, rtol=0, atol=1e-10 * float(ref_grad.abs().max()), msg=str(step))
            # Z estimated on the first step only, then kept.
            params = crd.contrast.params.tolist()
            assert params[2] == pytest.approx(z_v1, rel=1e-10) and params[3] == pytest.approx(z_v2, rel=1e-10)
            assert crd.embed_t.linear.weight.grad is not None
            assert all(p.grad is None for p in crd.teacher.parameters())


@pytest.mark.numerics
def test_memory_update(scoring):
    with default_dtype(torch.float64):  # as above: the reference's rows agree to ~1e-15
        crd = make_crd()
        run_step(crd, make_batch(1))  # Z set, memory moved once
        batch = make_batch(2)
        before_v1 = crd.contrast.memory_v1.clone()
        before_v2 = crd.contrast.memory_v2.clone()
        _, _, v1, v2, _, _ = reference_step(crd, batch)
        run_step(crd, batch)
    idx = batch["index"]
    momentum = 0.5
    for before, after, v in ((before_v1, crd.contrast.memory_v1, v1), (before_v2, crd.contrast.memory_v2, v2)):
        for row, i in enumerate(idx.tolist()):
            mixed = momentum * before[i] + (1 - momentum) * v[row]
            torch.testing.assert_close(after[i], mixed / mixed.norm(), rtol=0, atol=1e-12)
            assert after[i].norm().item() == pytest.approx(1.0, abs=1e-12)
        untouched = torch.ones(NUM_DATA, dtype=torch.bool)
        untouched[idx] = False
        assert torch.equal(after[untouched], before[untouched])


@pytest.mark.numerics
def test_duplicate_indices_last_occurrence_wins():
    crd = make_crd(zoo=False)
    batch = make_batch(3)
    batch["index"][2] = batch["index"][0]
    batch["contrastive_index"][2, 0] = batch["index"][0]
    before = crd.contrast.memory_v1.clone()
    _, _, v1, _, _, _ = reference_step(crd, batch)
    run_step(crd, batch)
    i = int(batch["index"][0])
    mixed = 0.5 * before[i] + 0.5 * v1[2]
    assert torch.allclose(crd.contrast.memory_v1[i], mixed / mixed.norm(), atol=1e-6)


def test_state_dict_round_trip():
    a = make_crd(seed=0)
    run_step(a, make_batch(1))
    b = make_crd(seed=123)
    assert b.contrast.params[2].item() == -1
    assert not torch.equal(a.contrast.memory_v1, b.contrast.memory_v1)
    b.load_state_dict(a.state_dict())
    assert torch.equal(b.contrast.params, a.contrast.params)
    batch = make_batch(2)
    _, la = run_step(a, batch)
    _, lb = run_step(b, batch)
    assert torch.equal(la["loss_kd"], lb["loss_kd"]) and torch.equal(la["loss_ce"], lb["loss_ce"])
    assert torch.equal(a.embed_s.linear.weight.grad, b.embed_s.linear.weight.grad)
    assert torch.equal(a.contrast.memory_v1, b.contrast.memory_v1)
    assert torch.equal(a.contrast.memory_v2, b.contrast.memory_v2)


def test_fp32_under_autocast_and_bad_shapes():
    crd = make_crd(zoo=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, losses = crd(**make_batch(1))
    assert losses["loss_kd"].dtype == torch.float32
    assert crd.contrast.memory_v1.dtype == torch.float32
    bad = make_batch(2, k=K + 1)
    with pytest.raises(ValueError, match="contrastive_index"):
        crd(**bad)


# ---------------------------------------------------------------------------
# DistributedDataParallel on CPU (gloo): 2 ranks × half batch == 1 process × full batch
# ---------------------------------------------------------------------------


def _ddp_worker(rank, world, init_file, out_dir):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method="file://" + init_file, rank=rank, world_size=world)
    try:
        crd = make_crd(seed=0, zoo=False)
        # No buffer sync: the banks must stay identical by themselves (all-gathered updates).
        if "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters:
            model = DDP(crd, forward_sync_buffers=False)
        else:
            model = DDP(crd, broadcast_buffers=False)
        results = {}
        for step, seed in enumerate((1, 2)):
            full = make_batch(seed, batch=2 * BATCH)
            part = {k: v[rank * BATCH:(rank + 1) * BATCH] for k, v in full.items()}
            model.zero_grad(set_to_none=True)
            _, losses = model(**part)
            sum(losses.values()).backward()
            results[step] = dict(grad=crd.embed_s.linear.weight.grad.clone())
        results["memory_v1"] = crd.contrast.memory_v1.clone()
        results["memory_v2"] = crd.contrast.memory_v2.clone()
        results["params"] = crd.contrast.params.clone()
        torch.save(results, os.path.join(out_dir, "rank{}.pt".format(rank)))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_gloo_matches_single_process():
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available():
        pytest.skip("torch.distributed unavailable")
    with tempfile.TemporaryDirectory() as tmp:
        # fork: the children reuse the imported modules (spawn would re-import torch).
        mp.start_processes(
            _ddp_worker, args=(2, os.path.join(tmp, "init"), tmp), nprocs=2, join=True, start_method="fork"
        )
        ranks = [torch.load(os.path.join(tmp, "rank{}.pt".format(r))) for r in range(2)]

    single = make_crd(seed=0, zoo=False)
    grads = []
    for seed in (1, 2):
        run_step(single, make_batch(seed, batch=2 * BATCH))
        grads.append(single.embed_s.linear.weight.grad.clone())

    for key in ("memory_v1", "memory_v2", "params"):  # every rank holds the same bank
        assert torch.equal(ranks[0][key], ranks[1][key]), key
    assert torch.allclose(ranks[0]["params"], single.contrast.params, rtol=1e-5)
    assert torch.allclose(ranks[0]["memory_v1"], single.contrast.memory_v1, atol=1e-5)
    assert torch.allclose(ranks[0]["memory_v2"], single.contrast.memory_v2, atol=1e-5)
    for step in (0, 1):  # DDP averages the per-rank gradients: equals the full-batch gradient
        assert torch.allclose(ranks[0][step]["grad"], grads[step], rtol=1e-4, atol=1e-6), step
        assert torch.equal(ranks[0][step]["grad"], ranks[1][step]["grad"])
