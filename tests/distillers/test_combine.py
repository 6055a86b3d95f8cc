"""COMBINE: sums the parts' losses exactly, with one student/teacher forward per step.

Each part is compared with the same distiller built alone (``DISTILLER.TYPE =
<key>``) from the same initial state and run on the same batch.
"""
import copy
import glob
import os

import pytest
import torch

from mdistiller.distillers import Combine, build_distiller, distiller_dict, get_distiller_class
from mdistiller.engine.cfg import CFG, get_cfg
from mdistiller.registry import data_needs
from tests.helpers.distill_inputs import contrastive_batch, default_dtype, zoo_pair
from tests.helpers.runutil import REPO

NUM_DATA, K, BATCH, SIZE = 40, 8, 5, 16


def base_cfg(methods, weights=()):
    cfg = CFG.clone()
    cfg.DISTILLER.TYPE = "COMBINE"
    cfg.DATASET.INPUT_SIZE = SIZE  # OTKD's shape probe
    cfg.COMBINE.METHODS = list(methods)
    cfg.COMBINE.WEIGHTS = list(weights)
    cfg.OTKD.STAGES = [1, 2, 3]
    cfg.CRD.NCE.K = K
    cfg.WCORD.NCE.K = K
    for block in (cfg.CRD.FEAT, cfg.WCORD.FEAT):
        block.DIM, block.STUDENT_DIM, block.TEACHER_DIM = 8, 64, 128
    cfg.WCORD.SINKHORN.ITER = 20
    return cfg


def make_batch(seed=1):
    return contrastive_batch(BATCH, SIZE, NUM_DATA, K, seed=seed)


def single(cfg, key, student, teacher, part_state):
    """The part ``key`` built alone on copies of the models, with the combined part's extra state."""
    cfg = cfg.clone()
    cfg.DISTILLER.TYPE = key
    d = build_distiller(cfg, copy.deepcopy(student), copy.deepcopy(teacher), num_data=NUM_DATA)
    missing, unexpected = d.load_state_dict(part_state, strict=False)
    assert not unexpected and all(k.startswith(("student.", "teacher.")) for k in missing)
    return d.train()


def check_against_parts(methods, weights, batch_seed=1):
    """COMBINE of ``methods`` against each part built alone, in float64: the combined step sums the parts' losses
    and gradients in another order, which in float32 used up to half of a 1e-5 / 1e-4 tolerance, depending on
    the CPU kernels; in float64 they agree to ~1e-15."""
    with default_dtype(torch.float64):
        cfg = base_cfg(methods, weights)
        batch = make_batch(batch_seed)
        student, teacher = zoo_pair()
        init_s, init_t = copy.deepcopy(student), copy.deepcopy(teacher)
        comb = build_distiller(cfg, student, teacher, num_data=NUM_DATA)
        assert isinstance(comb, Combine)
        singles = {k: single(cfg, k, init_s, init_t, copy.deepcopy(comb.parts[k].state_dict())) for k in methods}
        comb.train()
        logits, losses = comb(epoch=1, **batch)
        total = sum(losses.values())
        total.backward()

        expected, ce_taken = {}, False
        for key, w in zip(methods, weights or [1.0] * len(methods)):
            part_logits, part_losses = singles[key](epoch=1, **batch)
            torch.testing.assert_close(part_logits, logits, rtol=0, atol=0)
            kept = 0.0
            for name, value in part_losses.items():
                if name in ("loss_ce", "ce"):
                    if ce_taken:
                        continue
                    ce_taken = True
                expected["{}.{}".format(key, name)] = w * value
                kept = kept + w * value
            kept.backward()
    assert set(losses) == set(expected)
    for name in expected:
        assert losses[name].dtype == torch.float64, name
        torch.testing.assert_close(losses[name], expected[name], rtol=1e-10, atol=1e-14, msg=name)
    # gradients: combined = sum over the parts' (separate) student copies
    for name, p in student.named_parameters():
        parts = [dict(singles[k].student.named_parameters())[name].grad for k in methods]
        summed = sum(g for g in parts if g is not None)
        torch.testing.assert_close(p.grad, summed, rtol=1e-9, atol=1e-14, msg=name)
    return comb, singles, init_s


def count_forwards(model):
    """A list that grows by one entry per forward of ``model``."""
    calls = []
    model.register_forward_hook(lambda module, args, output: calls.append(1))
    return calls


@pytest.mark.numerics
def test_otkd_kd_sum_weights_and_ce_once():
    comb, _, _ = check_against_parts(["OTKD", "KD"], [0.5, 2.0])
    student_calls, teacher_calls = count_forwards(comb.student), count_forwards(comb.teacher)
    with default_dtype(torch.float64):  # the models of check_against_parts
        assert "KD.loss_ce" not in comb.forward_train(**make_batch(2))[1]
    assert len(student_calls) == 1 and len(teacher_calls) == 1


@pytest.mark.numerics
def test_ce_from_first_part_in_order():
    comb, _, _ = check_against_parts(["KD", "OTKD"], [])
    with default_dtype(torch.float64):
        _, losses = comb(**make_batch(3))
    assert "KD.loss_ce" in losses and "OTKD.loss_ce" not in losses


@pytest.mark.numerics
def test_contrastive_parts_ipot_crd_kd_and_wcord():
    comb, singles, _ = check_against_parts(["OTKD", "CRD", "KD"], [1.0, 1.0, 1.0])
    # memory banks of the part moved exactly like the single CRD's
    torch.testing.assert_close(comb.parts["CRD"].contrast.memory_v1, singles["CRD"].contrast.memory_v1)
    check_against_parts(["WCORD", "KD"], [1.0, 1.0])


def test_one_forward_bn_statistics():
    cfg = base_cfg(["OTKD", "KD", "DKD"])
    student, teacher = zoo_pair()
    reference = copy.deepcopy(student).train()
    comb = build_distiller(cfg, student, teacher, num_data=NUM_DATA).train()
    student_calls = count_forwards(student)
    batch = make_batch()
    comb(epoch=1, **batch)
    reference(batch["image"])
    for (name, a), b in zip(student.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), name  # running_mean / running_var / num_batches_tracked
    assert len(student_calls) == 1
    comb.eval()
    assert comb(image=batch["image"]).shape == (BATCH, 10)


def test_flags_modules_and_state_dict():
    assert get_distiller_class("COMBINE") is Combine
    assert Combine.data_needs(base_cfg(["OTKD", "KD"])).contrastive_k == 0
    assert Combine.data_needs(base_cfg(["OTKD", "CRD", "KD"])).contrastive_k > 0
    assert Combine.data_needs(base_cfg(["OTKD", "CRD", "KD"])).num_data
    assert Combine.data_needs(base_cfg(["WCORD", "KD"])).contrastive_k > 0
    student, teacher = zoo_pair()
    comb = build_distiller(base_cfg(["OTKD", "CRD", "KD"]), student, teacher, num_data=NUM_DATA)
    keys = list(comb.state_dict())
    assert sum(k.startswith("student.") for k in keys) == len(student.state_dict())
    assert any(k.startswith("parts.CRD.contrast.memory_v1") for k in keys)
    assert any(k.startswith("parts.OTKD.embeds.") for k in keys)
    assert not any(".student." in k or ".teacher." in k for k in keys)
    learnable = {id(p) for p in comb.get_learnable_parameters()}
    for part in ("OTKD", "CRD"):
        assert {id(p) for p in comb.parts[part].parameters()} <= learnable
    assert not learnable & {id(p) for p in teacher.parameters()}
    comb.train()
    assert not teacher.training and student.training and comb.parts["OTKD"].embeds.training


def test_errors():
    student, teacher = zoo_pair()
    with pytest.raises(KeyError) as err:
        build_distiller(base_cfg(["OTKD", "NOPE"]), student, teacher, num_data=NUM_DATA)
    assert "NOPE" in str(err.value) and all(k in str(err.value) for k in ("KD", "OTKD", "WCORD"))
    with pytest.raises(ValueError, match="WEIGHTS"):
        build_distiller(base_cfg(["OTKD", "KD"], [1.0]), student, teacher, num_data=NUM_DATA)
    with pytest.raises(ValueError, match="twice"):
        build_distiller(base_cfg(["KD", "KD"]), student, teacher, num_data=NUM_DATA)
    assert set(["KD", "DKD", "CRD", "OTKD", "WCORD", "COMBINE"]) <= set(distiller_dict)


OUR_CONFIGS = [
    p
    for d in ("remd", "ipot", "remd_kd", "ipot_kd", "ipot_crd", "ipot_crd_kd", "ipot_stages", "ipot_kd_stages",
              "wcord", "wcord_kd")
    for p in sorted(glob.glob(os.path.join(REPO, "configs", "cifar100", d, "*.yaml")))
] + [
    p
    for d in ("kd", "ipot", "ipot_kd", "remd", "remd_kd")
    for p in sorted(glob.glob(os.path.join(REPO, "configs", "svhn", d, "*.yaml")))
] + [
    os.path.join(REPO, "configs", p)
    for p in (
        "imagenet/r34_r18/ipot.yaml",
        "imagenet/r34_r18/ipot_kd.yaml",
    )
]


def test_configs_merge_and_build():
    """Every config merges; the CIFAR ones whose dims matter (CRD / WCoRD heads, OTKD embeddings
    ShuffleV2 <- resnet32x4) build and run one step."""
    assert len(OUR_CONFIGS) == 46 + 6 + 10 + 2  # CIFAR-100 OT, WCoRD (3 pairs, alone and +KD), SVHN (Table 5), ImageNet
    for path in OUR_CONFIGS:
        cfg = get_cfg(path)
        with open(path) as f:
            assert "top-1" in f.read(), path
        kind = cfg.DISTILLER.TYPE
        methods = list(cfg.COMBINE.METHODS) if kind == "COMBINE" else [kind]
        assert all(get_distiller_class(m) for m in methods), path
        assert len(cfg.COMBINE.WEIGHTS) in (0, len(cfg.COMBINE.METHODS))
        if "WCORD" in methods:  # the train set samples WCORD's own NCE.K negatives
            assert data_needs(cfg).contrastive_k == cfg.WCORD.NCE.K, path
        if "/cifar100/" not in path or not ("CRD" in methods or "WCORD" in methods or "shuv2" in path):
            continue
        if "shuv2" in path and "CRD" not in methods and "/ipot/" not in path:
            continue
        cfg.defrost()
        cfg.CRD.NCE.K = cfg.WCORD.NCE.K = 4
        cfg.DATASET.INPUT_SIZE = SIZE
        student, teacher = zoo_pair(cfg.DISTILLER.STUDENT, cfg.DISTILLER.TEACHER, num_classes=100)
        d = build_distiller(cfg, student, teacher, num_data=20).train()
        image = torch.randn(2, 3, SIZE, SIZE)
        index = torch.tensor([0, 1])
        _, losses = d(image=image, target=torch.tensor([0, 1]), epoch=1, index=index,
                      contrastive_index=torch.tensor([[0, 2, 3, 4, 5], [1, 6, 7, 8, 9]]))
        assert all(torch.isfinite(v) for v in losses.values()), path
