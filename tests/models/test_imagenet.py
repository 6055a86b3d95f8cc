"""ImageNet ResNets (oracle: torchvision) and MobileNetV1 (oracle: mdistiller fixture)."""
import io
import json
import os

import pytest
import torch
import torch.nn as nn
import torchvision

from tests.helpers import FIXTURES
from tests.helpers.model_reference import deterministic_fill, reference_input

with open(os.path.join(FIXTURES, "imagenet_reference.json")) as f:
    REF = json.load(f)


from mdistiller.models.imagenet import resnet
from mdistiller.models.imagenet import mobilenetv1

DEPTHS = [18, 34, 50, 101]
# input size for the torchvision comparison (224 is the standard size; the
# deeper nets use smaller inputs to keep CPU time down)
TV_SIZE = {18: 224, 34: 64, 50: 64, 101: 64}
BUILDERS = {
    "resnet18": lambda: resnet.resnet18(),
    "resnet34": lambda: resnet.resnet34(),
    "resnet50": lambda: resnet.resnet50(),
    "resnet101": lambda: resnet.resnet101(),
    "MobileNetV1": lambda: mobilenetv1.MobileNetV1(),
}


def _ours(depth):
    return getattr(resnet, "resnet%d" % depth)()


def _tv(depth):
    return getattr(torchvision.models, "resnet%d" % depth)(weights=None)


@pytest.mark.parametrize("depth", DEPTHS)
def test_resnet_state_dict_logits_and_features_equal_torchvision(depth):
    ours, tv = _ours(depth), _tv(depth)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [(k, v.shape) for k, v in tv.state_dict().items()]
    deterministic_fill(ours).eval()
    deterministic_fill(tv).eval()
    stages = ("relu", "layer1", "layer2", "layer3", "layer4")
    captured = {}
    for name in stages:
        getattr(tv, name).register_forward_hook(lambda m, i, o, name=name: captured.setdefault(name, o.clone()))
    x = reference_input(size=TV_SIZE[depth])
    with torch.no_grad():
        logits, feats = ours(x)
        expected = tv(x)
    scale = max(1.0, expected.abs().max().item())
    assert (logits - expected).abs().max().item() <= 1e-5 * scale
    assert feats["pooled_feat"].shape == (2, 512 * (4 if depth >= 50 else 1))
    # feats are torchvision's stem / layer outputs; preact_feats the same before ReLU
    assert len(feats["feats"]) == len(feats["preact_feats"]) == 5
    for got, name, pre in zip(feats["feats"], stages, feats["preact_feats"]):
        want = captured[name]
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-5 * max(1.0, want.abs().max().item()))
        assert (pre < 0).any()
        assert torch.equal(torch.relu(pre), got)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_train_forward_backward(name):
    torch.manual_seed(0)
    model = BUILDERS[name]().train()
    logits, feats = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 1000)
    assert model.get_stage_channels() == [t.shape[1] for t in feats["feats"]]
    loss = logits.logsumexp(1).mean() + sum(t.mean() for t in feats["preact_feats"])
    loss.backward()
    for n, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n


@pytest.mark.parametrize("name", list(BUILDERS))
def test_any_input_size_and_stage_channels(name):
    # shape-only check on the meta device (no compute)
    with torch.device("meta"):
        model = BUILDERS[name]()
        for size in (224, 160, 112, 96, 64):
            logits, feats = model(torch.empty(2, 3, size, size))
            assert logits.shape == (2, 1000)
            assert model.get_stage_channels() == [t.shape[1] for t in feats["feats"]]
            assert [t.shape for t in feats["preact_feats"]] == [t.shape for t in feats["feats"]]
            assert feats["pooled_feat"].shape == (2, model.fc.in_features)


def test_resnet_stage_channels_and_bn_before_relu():
    expected = {18: [64, 64, 128, 256, 512], 34: [64, 64, 128, 256, 512], 50: [64, 256, 512, 1024, 2048], 101: [64, 256, 512, 1024, 2048]}
    for depth, channels in expected.items():
        with torch.device("meta"):
            model = _ours(depth)
        assert model.get_stage_channels() == channels
        bns = model.get_bn_before_relu()
        assert all(isinstance(b, nn.BatchNorm2d) for b in bns)
        # mdistiller's three BNs: the last BN of layer2..layer4
        assert [b.num_features for b in bns] == channels[-3:]
        assert bns[-1] is (model.layer4[-1].bn3 if depth >= 50 else model.layer4[-1].bn2)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_each_batchnorm_runs_once_per_forward(name):
    with torch.device("meta"):
        model = BUILDERS[name]().eval()
    calls = {}
    bns = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    for n, m in bns:
        m.register_forward_hook(lambda mod, i, o, n=n: calls.__setitem__(n, calls.get(n, 0) + 1))
    with torch.no_grad():
        model(torch.empty(1, 3, 64, 64, device="meta"))
    assert calls == {n: 1 for n, _ in bns}


def _no_network(*args, **kwargs):
    raise AssertionError("pretrained loading tried to download")


@pytest.mark.parametrize("legacy", [False, True])
def test_resnet_pretrained_loads_official_file_offline(tmp_path, monkeypatch, legacy):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)
    assert os.path.realpath(torch.hub.get_dir()) == os.path.realpath(str(tmp_path / "hub"))
    urls = resnet.legacy_model_urls if legacy else resnet.model_urls
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    weights = deterministic_fill(_tv(18)).state_dict()
    # the mdistiller-era files use the pre-zipfile serialization format
    torch.save(weights, str(checkpoints / os.path.basename(urls["resnet18"])), _use_new_zipfile_serialization=not legacy)
    model = resnet.resnet18(pretrained=True)
    loaded = model.state_dict()
    assert list(loaded) == list(weights)
    assert all(torch.equal(loaded[k], weights[k]) for k in weights)


def test_resnet_urls_are_torchvision_official():
    weights = {
        "resnet18": torchvision.models.ResNet18_Weights,
        "resnet34": torchvision.models.ResNet34_Weights,
        "resnet50": torchvision.models.ResNet50_Weights,
        "resnet101": torchvision.models.ResNet101_Weights,
        "resnet152": torchvision.models.ResNet152_Weights,
    }
    for arch, enum in weights.items():
        assert resnet.model_urls[arch] == enum.IMAGENET1K_V1.url
        assert resnet.legacy_model_urls[arch].startswith("https://download.pytorch.org/models/%s-" % arch)


def test_mobilenetv1_matches_mdistiller_reference():
    model = mobilenetv1.MobileNetV1()
    ref = REF["MobileNetV1"]
    assert [[k, list(v.shape)] for k, v in model.state_dict().items()] == ref["state_dict"]
    deterministic_fill(model).eval()
    with torch.no_grad():
        logits, feats = model(reference_input(size=224))
    ref_logits = torch.tensor(ref["logits"])
    assert (logits - ref_logits).abs().max().item() <= 1e-4 * max(1.0, ref_logits.abs().max().item())

    def close(v, r):
        return abs(v - r) <= 1e-4 * max(1.0, abs(r))

    assert close(feats["pooled_feat"].double().sum().item(), ref["pooled_feat_sum"])
    assert [list(t.shape[1:]) for t in feats["feats"]] == ref["feat_shapes"]
    assert all(close(t.double().sum().item(), s) for t, s in zip(feats["feats"], ref["feat_sums"]))
    assert all(close(t.double().sum().item(), s) for t, s in zip(feats["preact_feats"], ref["preact_sums"]))
    assert model.get_stage_channels() == ref["ref_stage_channels"] == [t.shape[1] for t in feats["feats"]]
    for pre, post in zip(feats["preact_feats"], feats["feats"]):
        assert (pre < 0).any() and torch.equal(torch.relu(pre), post)
    assert [b.num_features for b in model.get_bn_before_relu()] == model.get_stage_channels()


def test_mobilenetv1_rejects_pretrained():
    with pytest.raises(NotImplementedError):
        mobilenetv1.MobileNetV1(pretrained=True)
    assert mobilenetv1.MobileNetV1(pretrained=False, num_classes=10).fc.out_features == 10


@pytest.mark.parametrize("name", ["resnet18", "MobileNetV1"])
def test_checkpoint_round_trip_strict(name):
    torch.manual_seed(0)
    model = BUILDERS[name]().eval()
    x = reference_input(size=64)
    with torch.no_grad():
        before, _ = model(x)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict()}, buf)
    buf.seek(0)
    fresh = BUILDERS[name]()
    fresh.load_state_dict(torch.load(buf, weights_only=True)["model"], strict=True)
    fresh.eval()
    with torch.no_grad():
        after, _ = fresh(x)
    assert torch.equal(before, after)


def test_imagenet_package_exports():
    import mdistiller.models
    import mdistiller.models.imagenet as pkg

    assert mdistiller.models.imagenet_model_dict is pkg.imagenet_model_dict
    assert set(pkg.imagenet_model_dict) == {"ResNet18", "ResNet34", "ResNet50", "ResNet101", "MobileNetV1"}
    for ctor in (pkg.resnet18, pkg.resnet34, pkg.resnet50, pkg.resnet101, pkg.MobileNetV1):
        assert callable(ctor)
