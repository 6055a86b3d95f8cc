"""SOLVER.TRAINER dot in the trainer: the step is DOT's two-backward update, AMP skips a step with an
inf/NaN in either gradient set, the checkpoint carries both momentum buffers, mdistiller's DOT ``latest``
(its optimizer state layout) resumes, and mdistiller's ``crd_dot`` name runs it."""
import copy

import pytest
import torch

from mdistiller.engine.device import move_to
from mdistiller.engine.dot import DistillationOrientedSGD, DotStep
from mdistiller.engine.meters import DeviceMeters
from mdistiller.engine.trainer import Trainer
from tests.helpers.runutil import random_teacher_ckpt, tiny_cfg


def _trainer(tmp_path, method="KD", **extra):
    teacher = random_teacher_ckpt(tmp_path / "t.pth")
    extra.setdefault("SOLVER__TRAINER", "dot")
    cfg = tiny_cfg(tmp_path, DISTILLER__TYPE=method, DISTILLER__STUDENT="resnet8", DISTILLER__TEACHER="resnet8",
                   DISTILLER__TEACHER_CKPT=teacher, SOLVER__WEIGHT_DECAY=5e-4, **extra)
    return Trainer(cfg, str(tmp_path / "run"))


def _batch(trainer):
    trainer.train_loader.set_epoch(1)
    return next(iter(trainer.train_loader))


@pytest.mark.parametrize("method", ["KD", "DKD", "NONE"])
def test_dot_step_is_two_backward_passes_over_one_forward(tmp_path, method):
    trainer = _trainer(tmp_path, method)
    assert isinstance(trainer.step.optimizer, DistillationOrientedSGD)
    reference = copy.deepcopy(trainer.distiller)
    opt = DistillationOrientedSGD(reference.get_learnable_parameters(), lr=0.05, momentum=0.9, delta=0.075,
                                  weight_decay=5e-4)
    batch = _batch(trainer)
    for step in range(2):
        trainer.distiller.train()
        trainer.train_step(batch, 1, step, DeviceMeters(trainer.device))
        reference.train()
        image, target = (move_to(t, trainer.device) for t in batch[:2])
        _, losses = reference(image=image, target=target, epoch=1)
        kd = [v.mean() for k, v in losses.items() if k != reference.ce_key]
        opt.zero_grad(set_to_none=True)
        if kd:
            sum(kd).backward(retain_graph=True)
        opt.step_kd()
        opt.zero_grad(set_to_none=True)
        losses[reference.ce_key].mean().backward()
        opt.step()
    for (name, a), b in zip(trainer.distiller.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), name
    state = trainer.step.optimizer.state_dict()["state"]
    assert any("momentum_buffer" in s for s in state.values())
    if method != "NONE":
        assert any("momentum_kd_buffer" in s for s in state.values())


def test_dot_amp_skips_a_step_with_non_finite_distillation_gradients(tmp_path):
    trainer = _trainer(tmp_path, "KD")
    trainer.step.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=1)
    batch = _batch(trainer)
    before = {k: v.clone() for k, v in trainer.distiller.state_dict().items() if "weight" in k}
    distiller = trainer.distiller
    forward = distiller.forward_train

    def poisoned(*args, **kwargs):
        logits, losses = forward(*args, **kwargs)
        losses["loss_kd"] = losses["loss_kd"] * float("inf")
        return logits, losses

    distiller.forward_train = poisoned
    trainer.step.optimizer.zero_grad(set_to_none=True)
    trainer.step({"image": batch[0], "target": batch[1]}, 1)
    assert trainer.step.scaler.get_scale() == 512.0  # backed off
    after = trainer.distiller.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # step skipped

    distiller.forward_train = forward
    trainer.step.optimizer.zero_grad(set_to_none=True)
    trainer.step({"image": batch[0], "target": batch[1]}, 1)
    assert trainer.step.scaler.get_scale() == 1024.0  # a good step grows it again (growth_interval 1)
    assert any(not torch.equal(before[k], trainer.distiller.state_dict()[k]) for k in before)


def _mdistiller_latest(trainer, epoch):
    """``latest`` as mdistiller's DOT trainer writes it: the DataParallel-wrapped distiller's state dict and
    its ``DistillationOrientedTrainer``'s optimizer state (group keys lr, momentum = μ − Δ, momentum_kd = μ + Δ,
    dampening, weight_decay; per-parameter momentum_buffer / momentum_kd_buffer), no RNG or scaler state."""
    ours = trainer.step.optimizer.state_dict()
    groups = []
    for group in ours["param_groups"]:
        mu, delta = group["momentum"], group["delta"]
        groups.append({"lr": group["lr"], "momentum": mu - delta, "momentum_kd": mu + delta, "dampening": 0,
                       "weight_decay": group["weight_decay"], "params": list(group["params"])})
    state = {i: {name: buf.clone() for name, buf in s.items()} for i, s in ours["state"].items()}
    model = {"module." + k: v.clone() for k, v in trainer.distiller.state_dict().items()}
    return {"epoch": epoch, "model": model, "optimizer": {"state": state, "param_groups": groups},
            "best_acc": torch.tensor(12.5)}


def test_resume_from_an_mdistiller_dot_latest_continues_like_the_run_that_wrote_it(tmp_path):
    from mdistiller.engine.checkpoint import save_checkpoint

    first = _trainer(tmp_path)
    batch = _batch(first)
    for step in range(2):
        first.train_step(batch, 1, step, DeviceMeters(first.device))
    save_checkpoint(_mdistiller_latest(first, epoch=1), str(tmp_path / "run" / "latest"))
    resumed = Trainer(first.cfg, str(tmp_path / "run"), resume=True)
    assert resumed.start_epoch == 2 and resumed.best_acc == 12.5
    group = resumed.step.optimizer.param_groups[0]
    assert (group["momentum"], group["delta"]) == pytest.approx((0.9, 0.075))  # back from μ ∓ Δ
    for a, b in zip(resumed.step.optimizer.state_dict()["state"].values(), first.step.optimizer.state_dict()["state"].values()):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for trainer in (first, resumed):
        trainer.train_step(batch, 2, 0, DeviceMeters(trainer.device))
    for (name, a), b in zip(resumed.distiller.state_dict().items(), first.distiller.state_dict().values()):
        assert torch.equal(a, b), name


def test_crd_dot_is_mdistillers_name_for_the_dot_trainer(tmp_path):
    from mdistiller.engine.trainer import trainer_dict

    trainer = _trainer(tmp_path, SOLVER__TRAINER="crd_dot")
    assert isinstance(trainer.step, DotStep) and isinstance(trainer.step.optimizer, DistillationOrientedSGD)
    assert set(trainer_dict) == {"base", "crd", "dot", "crd_dot"}


def test_an_mdistiller_dot_state_with_dampening_is_refused():
    p = torch.nn.Parameter(torch.zeros(2))
    opt = DistillationOrientedSGD([p], lr=0.1, momentum=0.9, delta=0.075)
    state = {"state": {}, "param_groups": [{"lr": 0.1, "momentum": 0.825, "momentum_kd": 0.975, "dampening": 0.1,
                                            "weight_decay": 0.0, "params": [0]}]}
    with pytest.raises(ValueError, match="dampening"):
        opt.load_state_dict(state)


def test_imagenet_r50_mv1_dot_config_is_mdistillers():
    import os

    from mdistiller.benchmark import method_label, published_top1
    from mdistiller.engine.cfg import get_cfg
    from mdistiller.engine.trainer import STEPS
    from tests.helpers.runutil import REPO

    r50 = get_cfg(os.path.join(REPO, "configs", "imagenet", "r50_mv1", "dot.yaml"))
    r34 = get_cfg(os.path.join(REPO, "configs", "imagenet", "r34_r18", "dot.yaml"))
    # mdistiller's two ImageNet DOT files differ only in the pair (and the tag naming it)
    assert (r50.DISTILLER.TEACHER, r50.DISTILLER.STUDENT) == ("ResNet50", "MobileNetV1")
    for section in ("SOLVER", "KD", "DATASET"):
        assert r50[section] == r34[section], section
    assert (r50.SOLVER.TRAINER, r50.SOLVER.DOT.DELTA, r50.SOLVER.LR, r50.SOLVER.BATCH_SIZE) == ("dot", 0.09, 0.2, 512)
    step = STEPS[r50.SOLVER.TRAINER]  # the config's step builds its optimizer
    assert isinstance(step.build_optimizer(r50, [torch.nn.Parameter(torch.zeros(1))]), DistillationOrientedSGD)
    assert method_label(r50) == "KD+DOT"
    crd = r50.clone()
    crd.defrost()
    crd.DISTILLER.TYPE, crd.SOLVER.TRAINER = "CRD", "crd_dot"  # mdistiller's CRD+DOT trainer name
    assert method_label(crd) == "CRD+DOT"
    assert published_top1("imagenet", "ResNet50", "MobileNetV1", "KD+DOT")[0] == 73.09
