"""The base's teacher forward: every built-in method takes a channels_last teacher (CUDA's layout) unchanged,
and under autocast the teacher runs in the autocast dtype while the losses see float32."""
import copy

import pytest
import torch

from mdistiller.distillers import build_distiller
from mdistiller.engine.cfg import CFG, get_cfg
from mdistiller.models import cifar_model_dict
from mdistiller.distillers import distiller_dict, get_distiller_class
from tests.helpers.distill_inputs import default_dtype

TEACHER, STUDENT, CLASSES, BATCH, NUM_DATA = "resnet8x4", "resnet8", 10, 4, 64

BUILTIN = sorted(k for k, cls in distiller_dict.items() if cls.__module__.startswith("mdistiller.") and k != "NONE")


def _specs():
    """Every configuration the classes list (``variants``), with the settings of this pair (``pair_settings``)."""
    student = cifar_model_dict[STUDENT][0](num_classes=CLASSES)
    teacher = cifar_model_dict[TEACHER][0](num_classes=CLASSES)
    specs = []
    for key in BUILTIN:
        cls = get_distiller_class(key)
        for overrides, _ in cls.variants():
            cfg = get_cfg(opts=["DISTILLER.TYPE", key, "DISTILLER.STUDENT", STUDENT, "DISTILLER.TEACHER", TEACHER])
            cfg.defrost()
            cfg.merge_from_dict(overrides).merge_from_dict(cls.pair_settings(cfg, student, teacher))
            specs.append((key, overrides, cfg))
    return specs


def _step(cfg, teacher, batch):
    cls = get_distiller_class(cfg.DISTILLER.TYPE)
    torch.manual_seed(0)
    student = cifar_model_dict[STUDENT][0](num_classes=CLASSES)
    distiller = build_distiller(cfg, student, teacher, num_data=NUM_DATA).train()
    extras = {}
    k = cls.data_needs(cfg).contrastive_k
    if k > 0:
        negatives = torch.randint(0, NUM_DATA, (BATCH, k), generator=torch.Generator().manual_seed(2))
        extras = {"index": batch["index"], "contrastive_index": torch.cat([batch["index"].unsqueeze(1), negatives], 1)}
    torch.manual_seed(1)
    _, losses = distiller(image=batch["image"], target=batch["target"], epoch=1, **extras)
    sum(v.mean() for v in losses.values()).backward()
    return {key: (float(v.detach().mean()), v.dtype) for key, v in losses.items()}


# PKT divides by sums of near-uniform kernels: in float32 the teacher's layout moved its loss by up to 9.2e-4
# relative (AVX2 kernels), so it runs in float64 (1e-9); the other methods moved by at most 2e-5 in float32
# (default, AVX2 and AVX-512 kernels), 50 times below 1e-3. Float64 for all would cost 2.5x the time.
FLOAT64 = {"PKT"}


@pytest.mark.numerics
@pytest.mark.parametrize("key,overrides,cfg", _specs(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_method_with_a_channels_last_teacher(key, overrides, cfg):
    dtype = torch.float64 if key in FLOAT64 else torch.float32
    with default_dtype(dtype):
        g = torch.Generator().manual_seed(0)
        batch = {"image": torch.randn(BATCH, 3, 32, 32, generator=g),
                 "target": torch.randint(0, CLASSES, (BATCH,), generator=g),
                 "index": torch.randperm(NUM_DATA, generator=g)[:BATCH]}
        torch.manual_seed(3)
        teacher = cifar_model_dict[TEACHER][0](num_classes=CLASSES)
        teacher_cl = copy.deepcopy(teacher).to(memory_format=torch.channels_last)
        ref = _step(cfg, teacher, batch)
        got = _step(cfg, teacher_cl, batch)
    assert list(got) == list(ref)
    rel = 1e-9 if dtype == torch.float64 else 1e-3
    for name, (value, loss_dtype) in ref.items():
        assert loss_dtype == got[name][1] == dtype, name
        assert got[name][0] == pytest.approx(value, rel=rel, abs=1e-6 * rel), name


def test_teacher_in_the_autocast_dtype_losses_in_float32():
    cfg = CFG.clone()
    cfg.DISTILLER.TYPE = "KD"
    torch.manual_seed(0)
    distiller = build_distiller(cfg, cifar_model_dict[STUDENT][0](num_classes=CLASSES),
                                cifar_model_dict[TEACHER][0](num_classes=CLASSES)).train()
    seen = {}
    teacher_forward, distill_losses = distiller.teacher_forward, distiller.distill_losses

    def spy_teacher(image):
        out = teacher_forward(image)
        seen["teacher"] = (out[0].dtype, out[1]["feats"][-1].dtype)
        return out

    def spy_losses(student, teacher, target, epoch, **batch):
        seen["losses"] = (teacher.logits.dtype, student.logits.dtype, torch.is_autocast_enabled("cpu"))
        return distill_losses(student, teacher, target, epoch, **batch)

    distiller.teacher_forward, distiller.distill_losses = spy_teacher, spy_losses
    image, target = torch.randn(2, 3, 32, 32), torch.tensor([0, 1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, losses = distiller(image=image, target=target, epoch=1)
    assert seen["teacher"] == (torch.bfloat16, torch.bfloat16)
    assert seen["losses"] == (torch.float32, torch.float32, False)
    assert all(v.dtype == torch.float32 for v in losses.values())
