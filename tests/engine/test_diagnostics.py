"""Alignment diagnostics: every key against an independent hand-written computation, no side effects."""
import math

import pytest
import torch
import torch.nn as nn

from mdistiller.distillers import Distiller, build_distiller
from mdistiller.engine.cfg import get_cfg
from mdistiller.engine.diagnostics import AlignmentDiagnostics, diagnostics_temperature
from tests.helpers.distill_inputs import zoo_pair

# float32 diagnostics against float64 references: every test depends on the CPU kernels' rounding
pytestmark = pytest.mark.numerics

EPOCHS = 240
B = 12
C = 100


def make_models(seed=0):
    return zoo_pair("resnet8", "resnet14", num_classes=C, seed=seed)


def probe(seed=7):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, 3, 32, 32, generator=g), torch.randint(0, C, (B,), generator=g)


# ---------------------------------------------------------------------------
# Independent per-sample references (float64, plain loops)
# ---------------------------------------------------------------------------


def ref_kl(s, t, T):
    """Per-sample T²·Σ_c p_t log(p_t / p_s)."""
    out = []
    for i in range(s.shape[0]):
        ps = torch.exp(s[i] / T) / torch.exp(s[i] / T).sum()
        pt = torch.exp(t[i] / T) / torch.exp(t[i] / T).sum()
        out.append(T**2 * (pt * torch.log(pt / ps)).sum())
    return torch.stack(out)


def ref_dkd(s, t, y, T):
    """Per-sample (TCKD, NCKD), each ×T²."""
    tc, nc = [], []
    for i in range(s.shape[0]):
        ps = torch.exp(s[i] / T) / torch.exp(s[i] / T).sum()
        pt = torch.exp(t[i] / T) / torch.exp(t[i] / T).sum()
        a, b = pt[y[i]], ps[y[i]]
        tc.append(T**2 * (a * torch.log(a / b) + (1 - a) * torch.log((1 - a) / (1 - b))))
        keep = torch.arange(s.shape[1]) != y[i]
        qs, qt = ps[keep] / ps[keep].sum(), pt[keep] / pt[keep].sum()
        nc.append(T**2 * (qt * torch.log(qt / qs)).sum())
    return torch.stack(tc), torch.stack(nc)


def ref_cost_fc(teacher, sharpen=1.0):
    """1 − cos of the teacher's classifier rows, sharpened and clipped as WKD does."""
    w = teacher.fc.weight.detach().double()
    w = w / w.norm(dim=1, keepdim=True)
    d = 1 - w @ w.t()
    if sharpen != 0:
        d = 1 - torch.exp(-sharpen * d)
    return torch.clamp(d, min=0) + 1e-8


def ref_w(s, t, y, cost, T, reg=0.05, iters=10):
    """Per-sample non-target Sinkhorn cost: the release's loop on the (C−1, C−1) sub-problem."""
    out = []
    for i in range(s.shape[0]):
        keep = torch.arange(s.shape[1]) != y[i]
        p = torch.softmax(s[i][keep] / T, 0)
        q = torch.softmax(t[i][keep] / T, 0)
        M = cost[keep][:, keep]
        K = torch.exp(-M / reg)
        u = torch.full_like(p, 1.0 / p.numel())
        for _ in range(iters):
            v = q / (K.t() @ u + 1e-8)
            u = p / (K @ v + 1e-8)
        out.append((u[:, None] * K * v[None, :] * M).sum())
    return torch.stack(out)


def ref_lt(s, t, y):
    """Per-sample −p_t[y]·log p_s[y] at T = 1, the teacher's factor constant."""
    return torch.stack(
        [-torch.softmax(t[i], 0)[y[i]].detach() * torch.log_softmax(s[i], 0)[y[i]] for i in range(s.shape[0])]
    )


def ref_grads(per_sample_loss, s, t, y):
    """Mean over the batch of ∂ℓ_i/∂z_s[i] at the teacher's 6 most probable classes (ℓ_i per sample)."""
    z = s.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(per_sample_loss(z, t, y).sum(), z)
    order = torch.argsort(torch.softmax(t, 1), dim=1, descending=True)[:, :6]
    return {"grad_top{}".format(k + 1): g.gather(1, order[:, k : k + 1]).mean().item() for k in range(6)}


def ref_grads_fd(per_sample_loss, s, t, y, h=1e-6):
    """Same by central finite differences (float64) of each ℓ_i, for the top-1 and top-2 classes."""
    order = torch.argsort(torch.softmax(t, 1), dim=1, descending=True)[:, :2]
    out = {}
    for k in range(2):
        total = 0.0
        for i in range(s.shape[0]):
            e = torch.zeros_like(s[i : i + 1])
            e[0, order[i, k]] = h
            row = (s[i : i + 1], t[i : i + 1], y[i : i + 1])
            plus = per_sample_loss(row[0] + e, row[1], row[2])
            minus = per_sample_loss(row[0] - e, row[1], row[2])
            total += ((plus - minus).sum() / (2 * h)).item()
        out["grad_top{}".format(k + 1)] = total / s.shape[0]
    return out


def cosine_decay(weight, epoch, start, total):
    if epoch <= start:
        return weight
    return 0.5 * weight * (1 + math.cos(math.pi * (epoch - start) / (total - start)))


# ---------------------------------------------------------------------------
# The four methods
# ---------------------------------------------------------------------------

WKD_OPTS = [
    "WKD.COST_MATRIX", "fc", "WKD.COST_MATRIX_SHARPEN", "2.0", "WKD.TEMPERATURE", "2.0",
    "WKD.LOSS.WKD_LOGIT_WEIGHT", "30.0", "WKD.LOSS.WKD_FEAT_WEIGHT", "0.0", "WKD.LOSS.COSINE_DECAY_EPOCH", "100",
    "WKD.SINKHORN.ITER", "7", "WKD.LOSS.KL_WEIGHT", "0.5",
]

CASES = {
    # name: (opts, epoch, T)
    "KD": (["DISTILLER.TYPE", "KD", "KD.TEMPERATURE", "3", "KD.LOSS.KD_WEIGHT", "0.9"], 5, 3.0),
    "DKD": (["DISTILLER.TYPE", "DKD", "DKD.T", "5.0", "DKD.ALPHA", "1.0", "DKD.BETA", "8.0", "DKD.WARMUP", "20"], 5, 5.0),
    "WKD": (["DISTILLER.TYPE", "WKD"] + WKD_OPTS, 170, 2.0),
    "WKL": (["DISTILLER.TYPE", "WKL"] + WKD_OPTS, 120, 2.0),
}


def expected_loss(name, cfg, epoch, teacher):
    """The method's logit loss per sample ``f(z_s, z_t, y)``, written from the papers' formulas."""
    if name == "KD":
        T = cfg.KD.TEMPERATURE
        return lambda z, t, y: cfg.KD.LOSS.KD_WEIGHT * ref_kl(z, t, T)
    if name == "DKD":
        warm = min(epoch / cfg.DKD.WARMUP, 1.0)

        def dkd(z, t, y):
            tc, nc = ref_dkd(z, t, y, cfg.DKD.T)
            return warm * (cfg.DKD.ALPHA * tc + cfg.DKD.BETA * nc)

        return dkd
    cost = ref_cost_fc(teacher, cfg.WKD.COST_MATRIX_SHARPEN)
    T = cfg.WKD.TEMPERATURE
    gamma = cosine_decay(cfg.WKD.LOSS.WKD_LOGIT_WEIGHT, epoch, cfg.WKD.LOSS.COSINE_DECAY_EPOCH, EPOCHS)

    def wkd(z, t, y):
        return ref_lt(z, t, y) + gamma * ref_w(z, t, y, cost, T, cfg.WKD.SINKHORN.LAMBDA, cfg.WKD.SINKHORN.ITER)

    if name == "WKD":
        return wkd
    ramp = 1 - 0.5 * (1 + math.cos(math.pi * epoch / EPOCHS))

    def wkl(z, t, y):
        tc, nc = ref_dkd(z, t, y, T)
        return wkd(z, t, y) + ramp * cfg.WKL.KL_WEIGHT * (tc + 2.0 * nc)

    return wkl


@pytest.mark.parametrize("name", sorted(CASES))
def test_diagnostics_match_formulas(name):
    opts, epoch, T = CASES[name]
    cfg = get_cfg(opts=["SOLVER.EPOCHS", str(EPOCHS)] + opts)
    student, teacher = make_models()
    distiller = build_distiller(cfg, student, teacher)
    images, targets = probe()
    diag = AlignmentDiagnostics(cfg, images, targets)
    assert diag.temperature == T

    # a state to restore: training, with one submodule in eval; a parameter grad to preserve
    distiller.train()
    distiller.student.layer1.eval()
    modes = {n: m.training for n, m in distiller.named_modules()}
    marker = torch.randn_like(distiller.student.fc.weight)
    distiller.student.fc.weight.grad = marker.clone()
    state = {k: v.clone() for k, v in distiller.state_dict().items()}

    out = diag.compute(distiller, epoch)

    assert {n: m.training for n, m in distiller.named_modules()} == modes
    assert torch.equal(distiller.student.fc.weight.grad, marker)
    assert all(p.grad is None for n, p in distiller.named_parameters() if n != "student.fc.weight")
    for k, v in distiller.state_dict().items():
        assert torch.equal(v, state[k]), k  # BN running statistics untouched
    assert set(out) == {"kl", "tc", "nc", "w"} | {"grad_top{}".format(k) for k in range(1, 7)}
    assert all(isinstance(v, float) for v in out.values())

    with torch.no_grad():
        student.eval()
        s = student(images)[0].double()
        t = teacher(images)[0].double()
    y = targets
    assert out["kl"] == pytest.approx(ref_kl(s, t, T).mean().item(), rel=1e-4, abs=1e-6)
    tc, nc = ref_dkd(s, t, y, T)
    # TCKD is the KL between two nearly equal Bernoulli distributions: its two float32 terms cancel to second
    # order, so the rounding of float32 exp/log (vectorised or not) moved it by up to 4.5e-4 relative
    assert out["tc"] == pytest.approx(tc.mean().item(), rel=2e-3, abs=1e-6)
    assert out["nc"] == pytest.approx(nc.mean().item(), rel=1e-4, abs=1e-6)
    if name in ("WKD", "WKL"):  # the run's own cost, λ and iterations
        cost, reg, iters = ref_cost_fc(teacher, 2.0), 0.05, 7
    else:  # 1 − cos(teacher classifier), WKD defaults
        cost, reg, iters = ref_cost_fc(teacher, 1.0), 0.05, 10
    assert out["w"] == pytest.approx(ref_w(s, t, y, cost, T, reg, iters).mean().item(), rel=1e-4, abs=1e-6)

    loss = expected_loss(name, cfg, epoch, teacher)
    grads = ref_grads(loss, s, t, y)
    for key, value in grads.items():
        assert out[key] == pytest.approx(value, rel=2e-3, abs=1e-5), key
    if name in ("KD", "WKL"):
        for key, value in ref_grads_fd(loss, s, t, y).items():
            assert out[key] == pytest.approx(value, rel=2e-3, abs=1e-5), key


def test_grad_keys_absent_without_logit_loss_and_fc_cost():
    class NoLogitLoss(Distiller):
        def forward_train(self, image, target, **kwargs):
            raise NotImplementedError

    cfg = get_cfg(opts=["DISTILLER.TYPE", "CRD"])
    student, teacher = make_models(1)
    distiller = NoLogitLoss(student, teacher)
    images, targets = probe(3)
    diag = AlignmentDiagnostics(cfg, images, targets)
    assert diag.temperature == 4.0
    out = diag.compute(distiller, 1)
    assert set(out) == {"kl", "tc", "nc", "w"}
    with torch.no_grad():
        s = student.eval()(images)[0].double()
        t = teacher.eval()(images)[0].double()
    cost = ref_cost_fc(teacher, 1.0)
    assert out["w"] == pytest.approx(ref_w(s, t, targets, cost, 4.0).mean().item(), rel=1e-4, abs=1e-6)
    assert out["kl"] == pytest.approx(ref_kl(s, t, 4.0).mean().item(), rel=1e-4, abs=1e-6)
    # a second call measures the same thing (fixed probe, eval mode)
    assert diag.compute(distiller, 2) == pytest.approx(out)


def test_no_teacher_gives_empty():
    cfg = get_cfg()
    distiller = build_distiller(cfg, make_models()[0], None)
    assert AlignmentDiagnostics(cfg, *probe()).compute(distiller, 1) == {}


def test_temperature_choice_and_sample_cap():
    assert diagnostics_temperature(get_cfg(opts=["DISTILLER.TYPE", "KD", "KD.TEMPERATURE", "2"]))[0] == 2.0
    assert diagnostics_temperature(get_cfg(opts=["DISTILLER.TYPE", "DKD", "DKD.T", "6.0"]))[0] == 6.0
    assert diagnostics_temperature(get_cfg(opts=["DISTILLER.TYPE", "WKL", "WKD.TEMPERATURE", "8.0"]))[0] == 8.0
    assert diagnostics_temperature(get_cfg(opts=["DISTILLER.TYPE", "NONE"])) == (4.0, "default")
    combine = get_cfg(opts=["DISTILLER.TYPE", "COMBINE", "COMBINE.METHODS", "['OTKD', 'KD']", "KD.TEMPERATURE", "3"])
    assert diagnostics_temperature(combine)[0] == 3.0
    cfg = get_cfg(opts=["LOG.DIAGNOSTICS_SAMPLES", "5"])
    assert cfg.LOG.DIAGNOSTICS_SAMPLES == 5
    images, targets = probe()
    assert AlignmentDiagnostics(cfg, images, targets).images.shape[0] == 5


def test_any_module_state_and_custom_model():
    """Tiny non-zoo modules with dropout: eval during the probe (deterministic), state restored after."""

    class Tiny(nn.Module):
        def __init__(self, width):
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, width), nn.ReLU(), nn.Dropout(0.5))
            self.fc = nn.Linear(width, 10)

        def forward(self, x):
            h = self.body(x)
            return self.fc(h), {"feats": [h], "pooled_feat": h}

    torch.manual_seed(0)
    cfg = get_cfg(opts=["DISTILLER.TYPE", "KD"])
    distiller = build_distiller(cfg, Tiny(16), Tiny(32))
    distiller.train()
    g = torch.Generator().manual_seed(0)
    images, targets = torch.randn(9, 3, 8, 8, generator=g), torch.randint(0, 10, (9,), generator=g)
    diag = AlignmentDiagnostics(cfg, images, targets)
    a = diag.compute(distiller, 1)
    b = diag.compute(distiller, 1)
    assert a == b  # dropout off during the probe
    assert distiller.student.training and distiller.student.body[3].training and not distiller.teacher.training
    s = distiller.student.eval()(images)[0].double()
    t = distiller.teacher(images)[0].double()
    assert a["kl"] == pytest.approx(ref_kl(s, t, 4.0).mean().item(), rel=1e-4, abs=1e-6)
    # the probe forward in chunks of DATASET.TEST.BATCH_SIZE gives the same numbers
    chunked = AlignmentDiagnostics(get_cfg(opts=["DISTILLER.TYPE", "KD", "DATASET.TEST.BATCH_SIZE", "4"]), images, targets)
    assert chunked.chunk == 4
    assert chunked.compute(distiller.train(), 1) == pytest.approx(a, rel=1e-4, abs=1e-6)


def test_frozen_teacher_runs_once_and_a_training_teacher_every_epoch():
    cfg = get_cfg(opts=["DISTILLER.TYPE", "KD"])
    student, teacher = make_models()
    distiller = build_distiller(cfg, student, teacher)
    distiller.train()  # the teacher stays in eval mode
    images, targets = probe()
    calls = []
    teacher.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape[0]))
    diag = AlignmentDiagnostics(cfg, images, targets)
    first = diag.compute(distiller, 1)
    with torch.no_grad():
        student.fc.weight.mul_(0.5)  # the student moves, the teacher does not
    second = diag.compute(distiller, 2)
    assert sum(calls) == B and first["kl"] != second["kl"]
    with torch.no_grad():
        student.eval()
        s, t = student(images)[0].double(), teacher(images)[0].double()
    assert second["kl"] == pytest.approx(ref_kl(s, t, 4.0).mean().item(), rel=1e-4, abs=1e-6)

    calls.clear()
    teacher.fc.weight.requires_grad_(True)  # e.g. a method that fine-tunes the teacher's head
    with torch.no_grad():
        teacher.fc.weight.mul_(2.0)
    third = diag.compute(distiller, 3)
    assert sum(calls) == B
    with torch.no_grad():
        t = teacher(images)[0].double()
    assert third["kl"] == pytest.approx(ref_kl(s, t, 4.0).mean().item(), rel=1e-4, abs=1e-6)
