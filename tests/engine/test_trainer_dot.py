"""SOLVER.TRAINER dot in the trainer: the step is DOT's two-backward update, AMP skips a step with an
inf/NaN in either gradient set, the checkpoint carries both momentum buffers."""
import copy

import pytest
import torch

from mdistiller.engine.device import move_to
from mdistiller.engine.dot import DistillationOrientedSGD
from mdistiller.engine.meters import DeviceMeters
from mdistiller.engine.trainer import Trainer
from tests.helpers.runutil import random_teacher_ckpt, tiny_cfg


def _trainer(tmp_path, method="KD", **extra):
    teacher = random_teacher_ckpt(tmp_path / "t.pth")
    cfg = tiny_cfg(tmp_path, DISTILLER__TYPE=method, DISTILLER__STUDENT="resnet8", DISTILLER__TEACHER="resnet8",
                   DISTILLER__TEACHER_CKPT=teacher, SOLVER__TRAINER="dot", SOLVER__WEIGHT_DECAY=5e-4, **extra)
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
