"""ImageNet-architecture models on CIFAR/SVHN (DISTILLER.MODEL_ZOO), ImageNet-initialised students with a fresh head
(DISTILLER.STUDENT_PRETRAINED), and the cosine schedule's floor (SOLVER.LR_MIN). Nothing is downloaded: the
"torchvision" weights are written into torch.hub's cache, where the real download would put them."""
import os

import pytest
import torch

from mdistiller.engine.build import build_model, build_student_and_teacher, load_teacher, zoo_kind
from mdistiller.engine.cfg import get_cfg
from mdistiller.engine.optim import learning_rate
from mdistiller.models import imagenet_model_dict
from mdistiller.models.imagenet import resnet

HUB_FILES = {"ResNet18": "resnet18-f37072fd.pth", "ResNet34": "resnet34-b627a593.pth"}


def _no_network(*args, **kwargs):
    raise AssertionError("pretrained loading tried to download")


@pytest.fixture
def hub_weights(tmp_path, monkeypatch):
    """Deterministic 1000-class ImageNet ResNet-18/34 state dicts under torchvision's official file names."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)
    checkpoints = tmp_path / "torch_home" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    weights = {}
    for seed, (name, filename) in enumerate(sorted(HUB_FILES.items())):
        assert os.path.basename(resnet.model_urls[name.lower()]) == filename
        torch.manual_seed(seed)
        weights[name] = imagenet_model_dict[name]().state_dict()
        torch.save(weights[name], checkpoints / filename)
    return weights


def test_zoo_kind():
    assert zoo_kind("cifar100") == "cifar" and zoo_kind("imagenet") == "imagenet"
    assert zoo_kind("svhn", "imagenet") == "imagenet" and zoo_kind("imagenet", "cifar") == "cifar"
    with pytest.raises(ValueError, match="DISTILLER.MODEL_ZOO"):
        zoo_kind("cifar10", "torchvision")
    assert get_cfg().DISTILLER.MODEL_ZOO == "auto" and get_cfg().DISTILLER.STUDENT_PRETRAINED is False


def test_imagenet_architecture_on_cifar_without_weights():
    model = build_model("ResNet18", "cifar10", 10, zoo="imagenet")
    assert isinstance(model, resnet.ResNet) and model.conv1.kernel_size == (7, 7) and model.fc.out_features == 10
    logits, feats = model(torch.zeros(2, 3, 32, 32))  # the native 32x32 input: layer4 is 1x1
    assert logits.shape == (2, 10) and feats["pooled_feat"].shape == (2, 512) and feats["feats"][-1].shape[-1] == 1
    with pytest.raises(KeyError, match="imagenet zoo"):
        build_model("resnet8", "cifar10", 10, zoo="imagenet")
    with pytest.raises(ValueError, match="MODEL_ZOO imagenet"):
        build_model("ResNet18", "cifar10", 10, pretrained=True)  # the CIFAR ResNet18 has no ImageNet weights


@pytest.mark.parametrize("num_classes", [10, 100, 1000])
def test_pretrained_backbone_with_a_fresh_head(hub_weights, num_classes):
    torch.manual_seed(5)
    model = build_model("ResNet18", "svhn", num_classes, pretrained=True, zoo="imagenet")
    state, weights = model.state_dict(), hub_weights["ResNet18"]
    assert set(state) == set(weights)
    backbone = [k for k in weights if not k.startswith("fc.")]
    assert all(torch.equal(state[k], weights[k]) for k in backbone)
    assert model.fc.in_features == 512 and model.fc.out_features == num_classes
    if num_classes == 1000:
        assert torch.equal(state["fc.weight"], weights["fc.weight"])  # the ImageNet classifier itself
    else:  # a new Linear(512, C) with torch's default init (uniform within 1/sqrt(512)), drawn from the seeded RNG
        bound = 512**-0.5
        assert model.fc.weight.abs().max() <= bound and model.fc.bias.abs().max() <= bound
        assert model.fc.weight.std() > 0.5 * bound / 3**0.5
        torch.manual_seed(5)
        again = build_model("ResNet18", "svhn", num_classes, pretrained=True, zoo="imagenet")
        assert torch.equal(again.fc.weight, model.fc.weight) and torch.equal(again.fc.bias, model.fc.bias)


def test_kd2m_pair_student_from_imagenet_teacher_from_its_fine_tuned_checkpoint(hub_weights, tmp_path):
    torch.manual_seed(1)
    tuned = build_model("ResNet34", "cifar10", 10, zoo="imagenet")
    ckpt = tmp_path / "student_latest"
    torch.save({"model": tuned.state_dict()}, ckpt)
    cfg = get_cfg(None, ["DATASET.TYPE", "cifar10", "DISTILLER.TYPE", "KD2M", "DISTILLER.MODEL_ZOO", "imagenet",
                         "DISTILLER.STUDENT", "ResNet18", "DISTILLER.TEACHER", "ResNet34",
                         "DISTILLER.STUDENT_PRETRAINED", "True", "DISTILLER.TEACHER_CKPT", str(ckpt)])
    student, teacher = build_student_and_teacher(cfg, 10)
    s_state = student.state_dict()
    assert all(torch.equal(s_state[k], v) for k, v in hub_weights["ResNet18"].items() if not k.startswith("fc."))
    assert student.fc.out_features == 10
    t_state = teacher.state_dict()
    assert all(torch.equal(t_state[k], v) for k, v in tuned.state_dict().items()) and not teacher.training
    # without the fine-tuned teacher: a clear error, never the raw ImageNet classifier
    cfg = get_cfg(None, ["DATASET.TYPE", "cifar10", "DISTILLER.MODEL_ZOO", "imagenet", "DISTILLER.TEACHER", "ResNet34"])
    with pytest.raises(FileNotFoundError, match="DISTILLER.TEACHER_CKPT"):
        load_teacher(cfg, 10)


def test_cosine_floor_matches_torch_cosine_annealing_stepped_per_epoch():
    epochs, lr, lr_min = 15, 0.01, 1e-4
    cfg = get_cfg(None, ["SOLVER.LR_SCHEDULER", "cosine", "SOLVER.LR", str(lr), "SOLVER.LR_MIN", str(lr_min),
                         "SOLVER.EPOCHS", str(epochs)])
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=lr_min)
    for epoch in range(1, epochs + 1):  # the released code: one scheduler.step() after each epoch
        assert learning_rate(cfg, epoch) == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-9, abs=1e-15)
        optimizer.step()
        scheduler.step()
    assert learning_rate(cfg, epochs + 1) == pytest.approx(lr_min)
    # the default floor is 0: the previous schedule
    cfg = get_cfg(None, ["SOLVER.LR_SCHEDULER", "cosine", "SOLVER.LR", "0.1", "SOLVER.EPOCHS", "10"])
    assert learning_rate(cfg, 6) == pytest.approx(0.05)
