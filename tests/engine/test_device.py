"""Where the models live: the teacher in channels_last where it pays, converted once, with unchanged outputs."""
import copy

import pytest
import torch

from mdistiller.distillers import build_distiller
from mdistiller.engine.cfg import CFG
from mdistiller.engine.device import place_distiller, teacher_channels_last
from mdistiller.models import cifar_model_dict


def test_teacher_channels_last_on_cuda_and_on_request():
    assert teacher_channels_last(torch.device("cuda"))
    assert teacher_channels_last(torch.device("cpu"), channels_last=True)
    assert not teacher_channels_last(torch.device("cpu"))


def _kd(teacher="resnet32x4", student="resnet8x4"):
    cfg = CFG.clone()
    cfg.DISTILLER.TYPE = "KD"
    torch.manual_seed(0)
    t = cifar_model_dict[teacher][0](num_classes=100)
    s = cifar_model_dict[student][0](num_classes=100)
    return build_distiller(cfg, s, t).train()


@pytest.mark.numerics
def test_channels_last_teacher_gives_the_plain_eval_forward():
    # float64: the two layouts sum in different orders (4e-15 relative here; float32 moved by 2e-6, and by more
    # than 1e-5 on a CPU without AVX-512), so 1e-12 checks the placement, not the kernels
    distiller = _kd().double()
    plain = copy.deepcopy(distiller.teacher).eval()
    place_distiller(distiller, torch.device("cpu"), channels_last=True)
    conv = distiller.teacher.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    image = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    logits, feats = distiller.teacher_forward(image)
    with torch.no_grad():
        ref_logits, ref_feats = plain(image)
    assert feats["feats"][-1].is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-12, atol=1e-12 * float(ref_logits.abs().max()))
    for got, ref in zip(feats["feats"], ref_feats["feats"]):  # deep feature maps: the norm of the difference
        assert float((got - ref).norm() / ref.norm()) < 1e-12
    assert not distiller.teacher.training and not logits.requires_grad


def test_contiguous_placement_leaves_the_teacher_as_built():
    distiller = _kd("resnet8x4", "resnet8")
    before = {k: v.clone() for k, v in distiller.teacher.state_dict().items()}
    place_distiller(distiller, torch.device("cpu"))
    assert distiller.teacher.conv1.weight.is_contiguous()
    for k, v in distiller.teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
