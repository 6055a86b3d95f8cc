"""Adding a method is one module with a registered class: everything else picks it up.

The toy method below is written to a file and imported, exactly as a user's own
method module would be; no other file of the package is edited.
"""
import importlib.util
import textwrap

import pytest
import torch

from mdistiller.distillers import build_distiller, distiller_dict
from mdistiller.engine import cfg as cfg_module
from mdistiller.engine.cfg import get_cfg
from mdistiller.engine.diagnostics import AlignmentDiagnostics
from mdistiller.registry import data_needs
from tests.helpers.distill_inputs import zoo_pair

TOY_MODULE = textwrap.dedent(
    '''
    import torch.nn.functional as F

    from mdistiller.distillers._base import Distiller
    from mdistiller.registry import DataNeeds, register_distiller


    @register_distiller("TOYKD")
    class ToyKD(Distiller):
        """Toy: squared error between softened probabilities."""

        DEFAULTS = {"T": 3.0, "WEIGHT": 2.0, "CE_WEIGHT": 0.5, "NEGATIVES": 5}

        @classmethod
        def label(cls, cfg):
            return "Toy-T{:g}".format(cfg.TOYKD.T)

        @classmethod
        def logit_temperature(cls, cfg):
            return float(cfg.TOYKD.T), "TOYKD.T"

        @classmethod
        def data_needs(cls, cfg):
            return DataNeeds(contrastive_k=int(cfg.TOYKD.NEGATIVES), contrastive_mode="exact")

        def __init__(self, student, teacher, cfg):
            super().__init__(student, teacher)
            self.ce_weight = cfg.TOYKD.CE_WEIGHT
            self.t, self.weight = cfg.TOYKD.T, cfg.TOYKD.WEIGHT

        def logit_loss(self, logits_student, logits_teacher, target, epoch):
            p_s = F.softmax(logits_student / self.t, dim=1)
            p_t = F.softmax(logits_teacher / self.t, dim=1)
            return self.weight * (p_s - p_t).pow(2).sum(1).mean()

        def distill_losses(self, student, teacher, target, epoch, **batch):
            return {"loss_toy": self.logit_loss(student.logits, teacher.logits, target, epoch)}
    '''
)


@pytest.fixture
def toy_method(tmp_path):
    path = tmp_path / "toy_method.py"
    path.write_text(TOY_MODULE)
    spec = importlib.util.spec_from_file_location("toy_method", str(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module.ToyKD
    distiller_dict.pop("TOYKD", None)
    cfg_module.CFG.pop("TOYKD", None)


def test_registry_config_and_training_step(toy_method, tmp_path):
    assert distiller_dict["TOYKD"] is toy_method
    yaml_file = tmp_path / "toy.yaml"
    yaml_file.write_text("DISTILLER:\n  TYPE: TOYKD\nTOYKD:\n  T: 2\n  WEIGHT: 4.0\n")
    cfg = get_cfg(str(yaml_file), ["TOYKD.CE_WEIGHT", "0.25"])
    assert (cfg.TOYKD.T, cfg.TOYKD.WEIGHT, cfg.TOYKD.CE_WEIGHT, cfg.TOYKD.NEGATIVES) == (2.0, 4.0, 0.25, 5)
    with pytest.raises(KeyError):
        get_cfg(opts=["TOYKD.UNKNOWN", "1"])

    student, teacher = zoo_pair("resnet8", "resnet14")
    distiller = build_distiller(cfg, student, teacher).train()
    image, target = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    logits, losses = distiller(image=image, target=target, epoch=1)
    assert list(losses) == ["loss_ce", "loss_toy"]
    with torch.no_grad():
        z_s, z_t = student(image)[0], teacher(image)[0]
    p_s, p_t = torch.softmax(z_s / 2, 1), torch.softmax(z_t / 2, 1)
    torch.testing.assert_close(losses["loss_toy"], 4.0 * (p_s - p_t).pow(2).sum(1).mean())
    torch.testing.assert_close(losses["loss_ce"], 0.25 * torch.nn.functional.cross_entropy(z_s, target))


def test_benchmark_label_dataset_needs_and_diagnostics(toy_method):
    from mdistiller.benchmark import method_label

    cfg = get_cfg(opts=["DISTILLER.TYPE", "TOYKD", "TOYKD.T", "2.5"])
    assert method_label(cfg) == "Toy-T2.5"
    assert data_needs(cfg).contrastive_k == 5 and data_needs(cfg).teacher

    student, teacher = zoo_pair("resnet8", "resnet14")
    distiller = build_distiller(cfg, student, teacher)
    diagnostics = AlignmentDiagnostics(cfg, torch.randn(6, 3, 32, 32), torch.arange(6) % 10)
    assert diagnostics.temperature == 2.5 and diagnostics.temperature_source == "TOYKD.T"
    out = diagnostics.compute(distiller, 1)
    assert {"kl", "tc", "nc", "w", "grad_top1", "grad_top6"} <= set(out)
    # the gradient of the method's own logit loss at the teacher's top class, per sample, batch mean
    with torch.no_grad():
        z_s, z_t = student.eval()(diagnostics.images)[0], teacher.eval()(diagnostics.images)[0]
    z = z_s.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(distiller.logit_loss(z, z_t, None, 1), z)
    top = z_t.argmax(1, keepdim=True)
    assert out["grad_top1"] == pytest.approx((grad * 6).gather(1, top).mean().item(), rel=1e-5, abs=1e-8)
