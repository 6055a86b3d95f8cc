"""Trained embeddings with the networks held fixed: OTKD's (Lohit & Jones, Appendix C), WCoRD's heads; IPOT's plan.

Part 1 (``--steps``): resnet32x4 -> ShuffleV2 at random initialisation (CIFAR-100 heads), one batch of
``--batch`` N(0, 1) images; both networks' features are computed once (student in train mode, as in
``forward_train``; teacher in eval mode) and only the OTKD embeddings are trained, by SGD with the paper's
CIFAR-100 recipe (LR 0.05, momentum 0.9, weight decay 5e-4), on the distiller's loss (IPOT β 20, N 50,
unrolled gradient). For ``OTKD.EMBED_SIDE teacher`` (Appendix C) and ``student`` it prints, at the listed
steps, the four stage terms, the mean |γ| of the stage-3 embedding's BatchNorm, and the IPOT value with what
the teacher contributes to each stage's cost replaced by one constant sample (its batch mean).

Part 2: IPOT's plan at β 20, N 50 on (a) those random-init features and (b) trained features: a resnet20
teacher and a resnet8 student, each trained alone on scikit-learn's digits with ``configs/digits/teacher.yaml``
(8 epochs; trained here once, in ``--digits-dir``), compared on the first 64 test images. Per stage: the plan's
max/min ratio, the IPOT value and the mean of the cost matrix.

Part 3 (``--part wcord``): WCoRD's two heads between the trained digits resnet20 teacher and a random-init
resnet8 student (random-init CIFAR teachers' pooled features all point one way: nothing to collapse), on the
first 64 digits test images, features fixed, heads trained by the same SGD (K 32 negatives drawn from the 64
images, the batch being the data set): with the local term alone (GLOBAL_WEIGHT 0) and with both terms (the
defaults). Printed: the
local term, its value with the teacher embeddings replaced by their batch mean, and the spread
(1 − mean cosine between distinct samples) of the student and teacher embeddings.

    python benchmarks/embedding_collapse.py                      # all parts
    python benchmarks/embedding_collapse.py --part otkd --steps 0 150 600
    python benchmarks/embedding_collapse.py --part wcord --steps 0 100 300
"""
import argparse
import copy
import os
import time

import torch

from mdistiller.distillers import build_distiller
from mdistiller.engine.cfg import get_cfg
from mdistiller.losses.otkd import ot_stage_loss, otkd_loss
from mdistiller.models import cifar_model_dict
from mdistiller.ot import cosine_cost, ipot
from mdistiller.distillers._common import select_stage

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def stage_features(distiller, image):
    """The four stages' (student, teacher) features, computed once with no gradient."""
    student = copy.deepcopy(distiller.student).train()
    with torch.no_grad():
        _, fs = student(image)
        _, ft = distiller.teacher.eval()(image)
    return [(select_stage(fs, a).detach(), select_stage(ft, b).detach())
            for a, b in zip(distiller.select_s, distiller.select_t)]


def embed_bn(embed):
    module = getattr(embed, "map", embed)
    return getattr(module, "bn", None)


def train_embeddings(side, image, steps):
    torch.manual_seed(0)
    student = cifar_model_dict["ShuffleV2"][0](num_classes=100)
    teacher = cifar_model_dict["resnet32x4"][0](num_classes=100)
    cfg = get_cfg(opts=["DISTILLER.TYPE", "OTKD", "OTKD.EMBED_SIDE", side])
    d = build_distiller(cfg, student, teacher)
    feats = stage_features(d, image)
    embeds = d.embeds.train()
    opt = torch.optim.SGD(embeds.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    report = {}
    for step in range(max(steps) + 1):
        pairs = [e(s, t) for e, (s, t) in zip(embeds, feats)]
        if step in steps:
            with torch.no_grad():
                terms = [ot_stage_loss(s, t).item() for s, t in pairs]
                constant = otkd_loss([s for s, _ in pairs], [t.mean(0, keepdim=True).expand_as(t) for _, t in pairs])
                bn = embed_bn(embeds[2])
                gamma = bn.weight.abs().mean().item() if bn is not None else float("nan")
            report[step] = (terms, sum(terms), constant.item(), gamma)
            print("{:8s} step {:4d}: stages {}  IPOT {:.4f}  teacher -> constant {:.4f}  stage-3 BN |γ| {:.3f}".format(
                side, step, " ".join("{:.4f}".format(v) for v in terms), sum(terms), constant.item(), gamma), flush=True)
        if step == max(steps):
            break
        loss = otkd_loss([s for s, _ in pairs], [t for _, t in pairs])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return report


def plan_stats(pairs, label):
    for k, (s, t) in enumerate(pairs, 1):
        cost = cosine_cost(s.reshape(len(s), -1).double(), t.reshape(len(t), -1).double())
        value, plan = ipot(None, None, cost, beta=20.0, num_iter=50, return_plan=True)
        print("{} stage {}: plan max/min {:.4f}  IPOT {:.5f}  mean(C) {:.5f}  C in [{:.3f}, {:.3f}]".format(
            label, k, (plan.max() / plan.min()).item(), value.item(), cost.mean().item(), cost.min().item(),
            cost.max().item()), flush=True)


def spread(x):
    x = torch.nn.functional.normalize(x.detach().reshape(len(x), -1), dim=1)
    n = len(x)
    return float(1 - ((x @ x.t()).sum() - n) / (n * n - n))


def wcord_heads(teacher, image, steps, global_weight):
    from mdistiller.losses.crd import crd_loss
    from mdistiller.losses.wcord import wcord_local_loss

    torch.manual_seed(0)
    student = cifar_model_dict["resnet8"][0](num_classes=10)
    n, k = len(image), 32
    cfg = get_cfg(opts=["DISTILLER.TYPE", "WCORD", "WCORD.NCE.K", str(k), "WCORD.FEAT.STUDENT_DIM", "64",
                        "WCORD.FEAT.TEACHER_DIM", "64", "WCORD.LOSS.GLOBAL_WEIGHT", str(global_weight)])
    d = build_distiller(cfg, student, teacher, num_data=n)
    with torch.no_grad():
        _, fs = copy.deepcopy(student).train()(image)
        _, ft = teacher.eval()(image)
    f_s, f_t = fs["pooled_feat"], ft["pooled_feat"]
    heads = torch.nn.ModuleList([d.embed_s, d.embed_t]).train()
    opt = torch.optim.SGD(heads.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(2)
    index = torch.arange(n)
    label = "local only" if global_weight == 0 else "global+local"
    for step in range(max(steps) + 1):
        v_s, v_t = d.embed_s(f_s), d.embed_t(f_t)
        local = wcord_local_loss(v_s, v_t, d.sinkhorn_lambda, d.sinkhorn_iter)
        if step in steps:
            with torch.no_grad():
                constant = wcord_local_loss(v_s, v_t.mean(0, keepdim=True).expand_as(v_t), d.sinkhorn_lambda,
                                            d.sinkhorn_iter)
            print("WCoRD {:12s} step {:4d}: local {:.4f}  teacher -> constant {:.4f}  spread v_s {:.3f} v_t {:.3f}"
                  .format(label, step, local.item(), constant.item(), spread(v_s), spread(v_t)), flush=True)
        if step == max(steps):
            break
        loss = d.local_weight * local
        if global_weight:
            negatives = torch.stack([torch.randperm(n - 1, generator=g)[:k] for _ in range(n)])
            negatives = negatives + (negatives >= index.unsqueeze(1)).long()  # never the sample itself
            out_s, out_t = d.contrast(v_s, v_t, index, torch.cat([index.unsqueeze(1), negatives], 1))
            loss = loss + d.global_weight * crd_loss(out_s, out_t, n)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def digits_models(root):
    from mdistiller.engine.build import build_model
    from mdistiller.engine.checkpoint import load_checkpoint
    from mdistiller.engine.trainer import train

    models = {}
    for name in ("resnet20", "resnet8"):
        cfg = get_cfg(os.path.join(REPO, "configs", "digits", "teacher.yaml"),
                      ["DISTILLER.TEACHER", name, "DISTILLER.STUDENT", name, "LOG.PREFIX", root,
                       "EXPERIMENT.NAME", name])
        path = os.path.join(root, cfg.EXPERIMENT.PROJECT, name, "student_best")
        if not os.path.isfile(path):
            summary = train(cfg, os.path.dirname(path))
            print("trained {} on digits: best top-1 {:.2f}".format(name, summary["best_acc"]), flush=True)
        model = build_model(name, "digits", 10)
        model.load_state_dict(load_checkpoint(path)["model"])
        models[name] = model.eval()
    return cfg, models


def digits_batch(cfg, n=64):
    from mdistiller.dataset import build_datasets

    _, val_set, _ = build_datasets(cfg)
    return torch.stack([val_set[i][0] for i in range(n)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("all", "otkd", "ipot", "wcord"), default="all")
    parser.add_argument("--steps", type=int, nargs="+", default=[0, 150, 600])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--skip-digits", action="store_true")
    parser.add_argument("--digits-dir", default=os.path.join("output", "otkd_collapse_digits"))
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    image = torch.randn(args.batch, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    steps = sorted(set(args.steps))
    if args.part in ("all", "wcord"):
        cfg, models = digits_models(args.digits_dir)
        for global_weight in (0.0, 0.8):
            wcord_heads(models["resnet20"], digits_batch(cfg), steps, global_weight)
        if args.part == "wcord":
            return
    if args.part in ("all", "otkd"):
        started = time.time()
        for side in ("teacher", "student"):
            train_embeddings(side, image, steps)
        print("part 1: {:.0f} s".format(time.time() - started), flush=True)
        if args.part == "otkd":
            return

    torch.manual_seed(0)
    d = build_distiller(get_cfg(opts=["DISTILLER.TYPE", "OTKD"]), cifar_model_dict["ShuffleV2"][0](num_classes=100),
                        cifar_model_dict["resnet32x4"][0](num_classes=100))
    plan_stats([e(s, t) for e, (s, t) in zip(d.embeds, stage_features(d, image))], "random init resnet32x4->ShuffleV2")
    if args.skip_digits:
        return
    cfg, models = digits_models(args.digits_dir)
    image = digits_batch(cfg)
    d = build_distiller(get_cfg(opts=["DISTILLER.TYPE", "OTKD", "DATASET.TYPE", "digits"]), models["resnet8"],
                        models["resnet20"])
    plan_stats([e(s, t) for e, (s, t) in zip(d.embeds, stage_features(d, image))],
               "trained digits resnet20->resnet8")


if __name__ == "__main__":
    main()
