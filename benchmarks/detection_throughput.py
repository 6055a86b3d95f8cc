"""Detection training step of every detection method as a ratio to KD's, with the student alone.

For a teacher → student pair of Faster R-CNN + FPN detectors (default ResNet50 → MobileNetV2, mdistiller's
MV2-R50 pair) built with the ``DETECTION.*`` defaults (COCO's: FPN 256, box head 1024, 512 RoIs per image, RPN
2000/1000 proposals), times one training step — the detection distiller's ``forward_train`` (the student's
backbone, RPN, RoI sampling and heads; the teacher's backbone and, for the logit methods, its box head on the
student's RoIs, under no_grad; the distillation terms) + backward + an SGD step — of the student alone and of every
method registered for detection, each built as ``DISTILLER.TYPE <key>`` with the settings of its COCO config
(``configs/coco/<method>/r50_mv2.yaml``; WKD-L's cost matrix from the teacher's classifier, ``COST_MATRIX fc``,
since the CKA file needs a trained teacher). Images are random, ``--size`` × ``--size`` (COCO's training images are
640–800 × up to 1333), with 1–4 random boxes of 80 classes each; the weights are random (speed does not depend
on them). Repetitions interleave the methods with KD as ``benchmarks/throughput.py`` does (its ``time_steps``):
**vs KD** is the median over rounds of a step's time over the mean of the two KD steps around it.

    python benchmarks/detection_throughput.py                           # from the repository root
    python benchmarks/detection_throughput.py --size 800 --batch-size 2 --device cuda
    python benchmarks/detection_throughput.py --teacher ResNet101 --student ResNet18 --repeats 5
    python benchmarks/detection_throughput.py --size 96 WKD.SPATIAL_GRID 1 DETECTION.FPN_CHANNELS 64   # KEY VALUE
"""
import argparse
import os
import platform
import statistics

import torch

from mdistiller.distillers import build_distiller
from mdistiller.engine.build import build_detector_model
from mdistiller.engine.cfg import get_cfg
from mdistiller.engine.device import move_to, place_distiller, reuse_host_memory
from mdistiller.registry import task_distillers

try:  # python benchmarks/detection_throughput.py
    from throughput import sync, time_steps
except ImportError:  # python -m benchmarks.detection_throughput
    from benchmarks.throughput import sync, time_steps

REFERENCE = "KD"
CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "coco")
# (label, config of configs/coco/<method>/, overrides): one row each
ROWS = (
    ("student alone", "vanilla/mv2.yaml", {}),
    ("KD", "kd/r50_mv2.yaml", {}),
    ("DKD", "dkd/r50_mv2.yaml", {}),
    ("FitNet", "fitnet/r50_mv2.yaml", {}),
    ("ReviewKD", "reviewkd/r50_mv2.yaml", {}),
    ("ReviewKD+DKD", "reviewkd_dkd/r50_mv2.yaml", {}),
    ("WKD-L", "wkd_l/r50_mv2.yaml", {"WKD.COST_MATRIX": "fc"}),
    ("WKD-F", "wkd_f/r50_mv2.yaml", {}),
    ("WKD-L+F", "wkd_lf/r50_mv2.yaml", {"WKD.COST_MATRIX": "fc"}),
)
CATEGORY_IDS = list(range(1, 81))


class Method:
    """One row: a detection distiller built from a COCO config, and its optimizer."""

    def __init__(self, label, config, overrides, teacher, args, device):
        self.label, self.key = label, None
        opts = ["DISTILLER.STUDENT", args.student, "DISTILLER.TEACHER", args.teacher, "DISTILLER.STUDENT_PRETRAINED",
                "False", "DISTILLER.TEACHER_CKPT", "", "EXPERIMENT.DEVICE", str(device)]
        for key, value in overrides.items():
            opts += [key, str(value)]
        opts += list(args.opts)
        self.cfg = get_cfg(os.path.join(CONFIG_DIR, config), opts)
        self.key = self.cfg.DISTILLER.TYPE
        torch.manual_seed(0)
        student = build_detector_model(self.cfg, args.student, CATEGORY_IDS)
        self.distiller = place_distiller(build_distiller(self.cfg, student, None if self.key == "NONE" else teacher),
                                         device)
        self.distiller.train()
        self.optimizer = torch.optim.SGD(self.distiller.get_learnable_parameters(), lr=1e-4, momentum=0.9,
                                         weight_decay=1e-4)

    def step(self, batch, epoch):
        self.optimizer.zero_grad(set_to_none=True)
        _, losses = self.distiller.forward_train(image=batch["image"], target=batch["target"], epoch=epoch)
        loss = sum(v.float().mean() for v in losses.values())
        loss.backward()
        self.optimizer.step()
        return loss


def make_batches(args, device, count=3):
    g = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(count):
        images, targets = [], []
        for _ in range(args.batch_size):
            images.append(torch.rand(3, args.size, args.size, generator=g))
            n = int(torch.randint(1, 5, (), generator=g))
            xy = torch.rand(n, 2, generator=g) * args.size * 0.6
            wh = (torch.rand(n, 2, generator=g) * 0.35 + 0.05) * args.size
            targets.append({"boxes": torch.cat([xy, xy + wh], 1), "labels": torch.randint(1, 81, (n,), generator=g)})
        batches.append({"image": move_to(images, device), "target": move_to(targets, device)})
    return batches


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", default="ResNet50")
    parser.add_argument("--student", default="MobileNetV2")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--size", type=int, default=512, help="side of the square random images")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (median)")
    parser.add_argument("--epoch", type=int, default=1, help="epoch passed to forward_train")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("opts", nargs="*", default=[],
                        help="KEY VALUE config overrides applied to every row (e.g. DETECTION.FPN_CHANNELS 64)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    reuse_host_memory()  # as the trainer does
    print("machine: {} CPU cores ({}), torch {} ({} intra-op threads), device {}{}".format(
        os.cpu_count(), platform.processor() or platform.machine(), torch.__version__, torch.get_num_threads(),
        device, ", load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()) if hasattr(os, "getloadavg") else ""))
    base = get_cfg(os.path.join(CONFIG_DIR, ROWS[1][1]), ["DISTILLER.TEACHER", args.teacher] + list(args.opts))
    torch.manual_seed(0)
    teacher = build_detector_model(base, args.teacher, CATEGORY_IDS, teacher=True).to(device).eval()
    methods = [Method(label, config, overrides, teacher, args, device) for label, config, overrides in ROWS]
    missing = sorted(set(task_distillers["detection"]) - {m.key for m in methods})
    batches = make_batches(args, device)
    for m in methods:  # first-call costs
        m.step(batches[0], args.epoch)
        sync(device)
    reference = next(m for m in methods if m.label == REFERENCE)
    times, ratios = time_steps(methods, batches, args, device, reference)
    print("\ndetection training step: {} -> {}, batch {} of {}x{} random images, {} interleaved rounds; "
          "forward_train (teacher included) + backward + SGD step".format(
              args.teacher, args.student, args.batch_size, args.size, args.size, args.repeats))
    header = "{:<14} {:>10} {:>8} {:>10} {:>9}".format("method", "step (ms)", "vs KD", "min (ms)", "min ratio")
    print(header)
    print("-" * len(header))
    ref_min = min(times[id(reference)])
    for m in methods:
        print("{:<14} {:>10.0f} {:>7.2f}x {:>10.0f} {:>8.2f}x".format(
            m.label, 1000 * statistics.median(times[id(m)]), statistics.median(ratios[id(m)]),
            1000 * min(times[id(m)]), min(times[id(m)]) / ref_min))
    if missing:
        print("detection methods without a row: {}".format(", ".join(missing)))
    if hasattr(os, "getloadavg"):
        print("load average after: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
