"""CIFAR model zoo, part A: ResNet (CIFAR), ResNet18/34/50, WRN, VGG-BN.

``fixtures/cifar_a_reference.json`` was produced from mdistiller's own model
code (filled with ``deterministic_fill``, eval mode, ``reference_input()``):
it holds each model's ordered state_dict keys/shapes, logits, pooled-feature
sum and per-stage feature sums. Our models must reproduce all of it except
``preact_feats[0]``, which mdistiller gets wrong (see the model modules).
"""
import functools
import json
import math
import os

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from tests.helpers import FIXTURES
from tests.helpers.model_reference import deterministic_fill, reference_input

with open(os.path.join(FIXTURES, "cifar_a_reference.json")) as fh:
    REFERENCE = json.load(fh)


from mdistiller.models.cifar import resnet, resnetv2, vgg, wrn  # noqa: E402

# cifar_model_dict names (plus ResNet34) -> constructor
MODELS = {
    "resnet8": resnet.resnet8,
    "resnet14": resnet.resnet14,
    "resnet20": resnet.resnet20,
    "resnet32": resnet.resnet32,
    "resnet44": resnet.resnet44,
    "resnet56": resnet.resnet56,
    "resnet110": resnet.resnet110,
    "resnet8x4": resnet.resnet8x4,
    "resnet32x4": resnet.resnet32x4,
    "ResNet18": resnetv2.ResNet18,
    "ResNet34": resnetv2.ResNet34,
    "ResNet50": resnetv2.ResNet50,
    "wrn_16_1": wrn.wrn_16_1,
    "wrn_16_2": wrn.wrn_16_2,
    "wrn_40_1": wrn.wrn_40_1,
    "wrn_40_2": wrn.wrn_40_2,
    "vgg8": vgg.vgg8_bn,
    "vgg11": vgg.vgg11_bn,
    "vgg13": vgg.vgg13_bn,
    "vgg16": vgg.vgg16_bn,
    "vgg19": vgg.vgg19_bn,
}
NAMES = list(MODELS)
# Cheaper subset for the tests that only exercise shared code paths again.
ONE_PER_FAMILY = ["resnet8x4", "ResNet18", "wrn_16_2", "vgg8"]




def build(name, filled=True):
    model = MODELS[name](num_classes=100)
    if filled:
        deterministic_fill(model)
    return model


class Evaluated:
    """A filled model in eval mode and its outputs at 32x32 and 64x64."""

    def __init__(self, name):
        self.name = name
        self.model = build(name).eval()
        with torch.no_grad():
            self.logits, self.feats = self.model(reference_input(size=32))

    @functools.cached_property
    def at64(self):  # lazy, so a 64x64 failure only fails the 64x64 checks
        with torch.no_grad():
            return self.model(reference_input(size=64))


@pytest.fixture(scope="module", params=NAMES)
def ev(request):
    # Module scope: pytest groups the tests by model, so each is built and run once.
    return Evaluated(request.param)


def assert_close_list(actual, expected, rel=1e-4):
    actual = torch.as_tensor(actual, dtype=torch.float64)
    expected = torch.as_tensor(expected, dtype=torch.float64)
    assert actual.shape == expected.shape
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=rel, atol=rel * scale)


def assert_close_sum(actual, expected, numel):
    # Sums of float32 tensors: allow for accumulation-order differences.
    assert math.isclose(actual, expected, rel_tol=1e-4, abs_tol=1e-5 * numel), (actual, expected)


def test_reference_fixture_covers_all_models():
    assert set(NAMES) == set(REFERENCE) - {"_meta"}


def test_cifar_model_dict_uses_these_constructors():
    import mdistiller.models as models

    for name, ctor in MODELS.items():
        if name in models.cifar_model_dict:
            registered = models.cifar_model_dict[name][0]
            assert registered.__name__ == ctor.__name__
            assert registered.__code__.co_filename == ctor.__code__.co_filename
    assert set(MODELS) - {"ResNet34"} <= set(models.cifar_model_dict)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_layout_matches_mdistiller(name):
    with torch.device("meta"):  # shapes only, no allocation or init cost
        model = MODELS[name](num_classes=100)
    layout = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    assert layout == REFERENCE[name]["state_dict"]
    # A checkpoint with mdistiller's layout loads strictly (shapes are checked).
    dtypes = {k: v.dtype for k, v in model.state_dict().items()}
    ckpt = {k: torch.empty(shape, dtype=dtypes[k]) for k, shape in REFERENCE[name]["state_dict"]}
    model.load_state_dict(ckpt, strict=True, assign=True)


@pytest.mark.numerics
def test_outputs_match_mdistiller(ev):
    ref = REFERENCE[ev.name]
    feats = ev.feats
    assert_close_list(ev.logits, ref["logits"])
    pooled = feats["pooled_feat"]
    assert_close_sum(pooled.sum().item(), ref["pooled_feat_sum"], pooled.numel())
    assert [list(f.shape[1:]) for f in feats["feats"]] == ref["feat_shapes"]
    for f, s in zip(feats["feats"], ref["feat_sums"]):
        assert_close_sum(f.sum().item(), s, f.numel())
    # preact_feats[0] is intentionally different (mdistiller returns a post-ReLU/raw tensor).
    assert len(feats["preact_feats"]) == len(ref["preact_sums"])
    for p, s in list(zip(feats["preact_feats"], ref["preact_sums"]))[1:]:
        assert_close_sum(p.sum().item(), s, p.numel())
    if "logits_64" in ref:  # mdistiller's ResNet18/34/50 and VGG handle 64x64 too
        assert_close_list(ev.at64[0], ref["logits_64"])


def test_feature_contract(ev):
    model, feats = ev.model, ev.feats
    channels = model.get_stage_channels()
    assert len(feats["feats"]) == len(feats["preact_feats"]) == len(channels)
    assert [f.shape[1] for f in feats["feats"]] == channels
    assert [p.shape for p in feats["preact_feats"]] == [f.shape for f in feats["feats"]]
    bns = model.get_bn_before_relu()
    assert all(isinstance(bn, nn.BatchNorm2d) for bn in bns)
    assert [bn.num_features for bn in bns] == channels[1:]
    assert feats["pooled_feat"].shape == (2, channels[-1])
    feat_modules = model.get_feat_modules()
    assert isinstance(feat_modules, nn.ModuleList)
    owned = {id(m) for m in model.modules()}
    assert all(id(m) in owned for m in feat_modules)


def test_preact_feats_are_pre_activation(ev):
    model, pre, post = ev.model, ev.feats["preact_feats"], ev.feats["feats"]
    for p in pre:
        assert (p < 0).any(), "preact feature has no negative values: a ReLU was already applied"
    if isinstance(model, wrn.WideResNet):
        # Pre-activation blocks: feats are the residual stream, preact_feats the
        # BN output that enters the next ReLU.
        bns = [model.block1.layer[0].bn1] + model.get_bn_before_relu()
        with torch.no_grad():
            for p, f, bn in zip(pre, post, bns):
                torch.testing.assert_close(p, bn(f))
    else:
        for p, f in zip(pre, post):
            torch.testing.assert_close(F.relu(p), f, rtol=0, atol=0)
    if isinstance(model, resnetv2.ResNet):
        with torch.no_grad():
            torch.testing.assert_close(model.encode(pre[3], -1), pre[4])


def test_runs_at_64x64(ev):
    model, feats32 = ev.model, ev.feats
    logits, feats = ev.at64
    assert logits.shape == (2, 100)
    assert feats["pooled_feat"].shape == feats32["pooled_feat"].shape
    assert [f.shape[1] for f in feats["feats"]] == model.get_stage_channels()
    assert [p.shape for p in feats["preact_feats"]] == [f.shape for f in feats["feats"]]
    pairs = list(zip(feats["feats"], feats32["feats"]))
    if isinstance(model, vgg.VGG):
        # As in mdistiller, VGG pools once more before block4 at 64x64: its last
        # stage stays 4x4.
        assert feats["feats"][4].shape[2:] == feats32["feats"][4].shape[2:] == (4, 4)
        pairs = pairs[:4]
    for f64, f32 in pairs:
        assert f64.shape[2:] == (2 * f32.shape[2], 2 * f32.shape[3])


@pytest.mark.parametrize("name", NAMES)
def test_train_step(name):
    model = build(name).train()
    bn_calls = {}
    for mod_name, mod in model.named_modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.register_forward_hook(lambda m, i, o, n=mod_name: bn_calls.__setitem__(n, bn_calls.get(n, 0) + 1))
    logits, feats = model(reference_input())
    assert logits.shape == (2, 100) and torch.isfinite(logits).all()
    # No BatchNorm runs twice in one forward (mdistiller's WRN did).
    assert bn_calls and max(bn_calls.values()) == 1
    assert all(m.num_batches_tracked.item() == 1 for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    # Backpropagate through the logits and every feature distillers use.
    loss = F.cross_entropy(logits, torch.tensor([3, 7]))
    loss = loss + 1e-3 * sum(f.pow(2).mean() for f in feats["feats"] + feats["preact_feats"])
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_checkpoint_roundtrip(name, tmp_path):
    model = build(name).eval()
    path = tmp_path / "ckpt.pth"
    torch.save({"model": model.state_dict()}, path)
    restored = build(name, filled=False)
    restored.load_state_dict(torch.load(path, weights_only=True)["model"], strict=True)
    restored.eval()
    x = reference_input()
    with torch.no_grad():
        a, fa = model(x)
        b, fb = restored(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    for ta, tb in zip(fa["feats"] + fa["preact_feats"], fb["feats"] + fb["preact_feats"]):
        torch.testing.assert_close(ta, tb, rtol=0, atol=0)
