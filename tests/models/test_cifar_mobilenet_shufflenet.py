"""CIFAR MobileNetV2 (mobile_half) / ShuffleV1 / ShuffleV2 against mdistiller's reference.

``fixtures/cifar_b_reference.json`` was generated from mdistiller's own model
files (see its ``_meta``) filled with ``deterministic_fill``.
"""
import io
import json
import os

import pytest
import torch
import torch.nn as nn

from tests.helpers import FIXTURES
from tests.helpers.model_reference import deterministic_fill, reference_input

with open(os.path.join(FIXTURES, "cifar_b_reference.json")) as f:
    REF = json.load(f)


from mdistiller.models.cifar import mobilenetv2
from mdistiller.models.cifar import ShuffleNetv1 as shufflenetv1
from mdistiller.models.cifar import ShuffleNetv2 as shufflenetv2

BUILDERS = {
    "MobileNetV2": lambda: mobilenetv2.mobile_half(num_classes=100),
    "ShuffleV1": lambda: shufflenetv1.ShuffleV1(num_classes=100),
    "ShuffleV2": lambda: shufflenetv2.ShuffleV2(num_classes=100),
}
NAMES = list(BUILDERS)
# For these models every returned feature is ReLU(its pre-activation).
RELU_INDICES = {"MobileNetV2": [0], "ShuffleV1": [0, 1, 2, 3], "ShuffleV2": [0, 1, 2, 3]}


def _filled(name):
    torch.manual_seed(0)
    return deterministic_fill(BUILDERS[name]()).eval()


def _close(value, ref, rel=1e-4):
    return abs(value - ref) <= rel * max(1.0, abs(ref))


@pytest.fixture(scope="module")
def ref_outputs():
    out = {}
    with torch.no_grad():
        for name in NAMES:
            model = _filled(name)
            out[name] = (model,) + model(reference_input())
    return out


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_keys_and_shapes_match_mdistiller(name):
    got = [[k, list(v.shape)] for k, v in BUILDERS[name]().state_dict().items()]
    assert got == REF[name]["state_dict"]


@pytest.mark.parametrize("name", NAMES)
def test_logits_and_features_match_reference(name, ref_outputs):
    _, logits, feats = ref_outputs[name]
    ref = REF[name]
    ref_logits = torch.tensor(ref["logits"])
    scale = max(1.0, ref_logits.abs().max().item())
    assert logits.shape == ref_logits.shape
    assert (logits - ref_logits).abs().max().item() <= 1e-4 * scale
    assert _close(feats["pooled_feat"].double().sum().item(), ref["pooled_feat_sum"])
    assert [list(t.shape[1:]) for t in feats["feats"]] == ref["feat_shapes"]
    for t, s in zip(feats["feats"], ref["feat_sums"]):
        assert _close(t.double().sum().item(), s)
    if ref["preact_sums"] is not None:
        # index 0 is fixed on purpose (mdistiller returned the post-ReLU stem);
        # the sum is invariant to ShuffleV2's channel-order fix.
        for t, s in list(zip(feats["preact_feats"], ref["preact_sums"]))[1:]:
            assert _close(t.double().sum().item(), s)


@pytest.mark.parametrize("name", NAMES)
def test_preact_feats_are_pre_activation(name, ref_outputs):
    _, _, feats = ref_outputs[name]
    pre, post = feats["preact_feats"], feats["feats"]
    assert len(pre) == len(post)
    for p, q in zip(pre, post):
        assert p.shape == q.shape
    for i in RELU_INDICES[name]:
        assert (pre[i] < 0).any(), "preact_feats[%d] has no negative values" % i
        assert torch.equal(torch.relu(pre[i]), post[i])
    if name == "MobileNetV2":
        # linear-bottleneck stage outputs are never activated
        for i in range(1, len(post)):
            assert torch.equal(pre[i], post[i]) and (post[i] < 0).any()


@pytest.mark.parametrize("name", NAMES)
def test_stage_channels_match_features(name, ref_outputs):
    model, _, feats = ref_outputs[name]
    channels = [t.shape[1] for t in feats["feats"]]
    assert model.get_stage_channels() == channels
    if REF[name]["ref_stage_channels"] is not None:
        assert model.get_stage_channels() == REF[name]["ref_stage_channels"]


def test_mobilenetv2_width_variants_stage_channels():
    model = mobilenetv2.mobilenetv2_T_w(6, 1.0, feature_dim=10).eval()
    with torch.no_grad():
        logits, feats = model(torch.randn(1, 3, 32, 32))
    assert logits.shape == (1, 10)
    assert model.get_stage_channels() == [t.shape[1] for t in feats["feats"]] == [32, 24, 32, 96, 320]


@pytest.mark.parametrize("name", NAMES)
def test_each_batchnorm_runs_once_per_forward(name):
    model = BUILDERS[name]().eval()
    calls = {}
    bns = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    handles = [m.register_forward_hook(lambda mod, i, o, n=n: calls.__setitem__(n, calls.get(n, 0) + 1)) for n, m in bns]
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    for h in handles:
        h.remove()
    assert calls == {n: 1 for n, _ in bns}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [32, 64])
def test_train_forward_backward_any_size(name, size):
    torch.manual_seed(0)
    model = BUILDERS[name]().train()
    logits, feats = model(torch.randn(2, 3, size, size))
    assert logits.shape == (2, 100)
    assert feats["pooled_feat"].dim() == 2 and feats["pooled_feat"].shape[0] == 2
    assert model.get_stage_channels() == [t.shape[1] for t in feats["feats"]]
    loss = logits.logsumexp(1).mean() + sum(t.mean() for t in feats["preact_feats"])
    loss.backward()
    for n, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_round_trip_strict(name, ref_outputs):
    model, logits, _ = ref_outputs[name]
    buf = io.BytesIO()
    torch.save({"model": model.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    fresh = BUILDERS[name]()
    fresh.load_state_dict(ckpt["model"], strict=True)
    fresh.eval()
    with torch.no_grad():
        again, _ = fresh(reference_input())
    assert torch.equal(again, logits)


def test_get_bn_before_relu_and_feat_modules(ref_outputs):
    mv2 = ref_outputs["MobileNetV2"][0]
    bns = mv2.get_bn_before_relu()
    assert all(isinstance(b, nn.BatchNorm2d) for b in bns)
    assert [b.num_features for b in bns] == mv2.get_stage_channels()[1:]
    assert len(mv2.get_feat_modules()) == 2
    for name in ("ShuffleV1", "ShuffleV2"):
        model = ref_outputs[name][0]
        with pytest.raises(NotImplementedError):
            model.get_bn_before_relu()
        assert len(model.get_feat_modules()) == 5


def test_default_num_classes_match_mdistiller():
    assert shufflenetv1.ShuffleV1().linear.out_features == 10
    assert shufflenetv2.ShuffleV2().linear.out_features == 10
    assert mobilenetv2.mobile_half(100).classifier[0].out_features == 100
