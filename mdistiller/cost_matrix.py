"""Class-to-class cost matrix of WKD-L from a teacher: ``1 − linear CKA`` between class features, or ``1 − cos`` of its classifier.

    mdistiller-cost-matrix --teacher resnet32x4 --dataset cifar100
    mdistiller-cost-matrix --teacher ResNet34 --dataset imagenet          # logits, as released
    mdistiller-cost-matrix --teacher wrn_40_2 --dataset cifar100 --method fc
    mdistiller-cost-matrix --teacher resnet8 --ckpt run/student_best --dataset digits --opts DATASET.ROOT data
    mdistiller-cost-matrix --cfg configs/coco/vanilla/r101.yaml --teacher ResNet101 \
        --ckpt output/coco_baselines/teacher,r101/student_best --max-per-class 500   # detection (see below)
    python -m mdistiller.cost_matrix ... | python tools/generate_cost_matrix.py ...   # the same

Method ``cka`` (the release's ``tools/generate_class_proto.py`` +
``tools/generate_cost_matrix.py``):

* class features: the teacher runs on the *training* images with the test-time
  transform. CIFAR-like datasets (``--feature auto`` → ``feature``): the
  last-stage feature maps ``feats[-1]`` (B, c, h, w), each image flattened into
  its h·w spatial rows of c channels, stacked per class into X_k of shape
  (m·h·w, c). ImageNet (``auto`` → ``logit``): the logits, X_k of shape (m, C).
  Every class keeps its first m images in dataset order, m the smallest class
  count (the release keeps all 500 of CIFAR-100, and a seed-0 shuffled prefix
  on ImageNet); ``--max-per-class`` lowers m.
* ``D_ij = 1 − CKA(X_i, X_j)``, linear CKA with column-centred X
  (Kornblith et al. ICML 2019): ``CKA = ‖X_jᵀX_i‖²_F / (‖X_iᵀX_i‖_F ‖X_jᵀX_j‖_F)``.
  The rows of X_i and X_j are paired by position, as in the release.

Detection datasets (``coco``, ``shapes``: WKD-L on the RoI logits of K classes + background): the classes are
the dataset's K classes and the background (last, mdistiller's order), the class features the teacher
detector's box-head features (``--feature auto`` → ``feature``; ``logit``: its RoI class logits) on RoIs of
the training images sampled as in training — its RPN's proposals and the ground-truth boxes, IoU ≥ 0.5 with a
box → that box's class, below → background (:func:`~mdistiller.losses.class_cost.collect_roi_features`); then
the same CKA. This is this project's reading (WKD released no detection code); names ``box_linear_cka`` /
``box_logit_linear_cka``. ``--cfg`` reads a run's config (its ``DETECTION`` settings build the same detector).

Method ``fc``: ``D_ij = 1 − cos(w_i, w_j)`` of the teacher's classifier rows (a detector's: its box predictor's
class rows, background last) — what ``WKD.COST_MATRIX fc`` computes at run time.

The result is symmetrised, its diagonal set to 0, and saved (float32, CPU) with
``torch.save`` where ``WKD.COST_MATRIX_PATH`` expects it; the default path
follows the release's layout ``wkd_cost_matrix/<dataset>/<teacher>/<name>.pth``
with name ``linear_cka`` (features), ``logit_linear_cka`` (logits) or ``fc``.
"""
import argparse
import os

from ._cli import ArgumentParser, UsageError, add_debug_flag, check_writable, console_entry, run_main

PROG = "mdistiller-cost-matrix"


def default_output(dataset, teacher, method, feature, detection=False):
    if method == "fc":
        name = "fc"
    else:
        name = ("box_" if detection else "") + ("logit_linear_cka" if feature == "logit" else "linear_cka")
    return os.path.join("wkd_cost_matrix", dataset, teacher, name + ".pth")


def parse_args(argv=None):
    parser = ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", default="", help="a run's config (yaml) whose DATASET / DETECTION keys apply")
    parser.add_argument("--teacher", required=True, help="zoo name of the teacher (DISTILLER.TEACHER)")
    parser.add_argument("--ckpt", default="", help="teacher checkpoint ({'model': state_dict}); default: the zoo's")
    parser.add_argument("--dataset", default="",
                        help="cifar100 | imagenet | coco | shapes | any DATASET.TYPE (default: the --cfg's)")
    parser.add_argument("--method", default="cka", choices=("cka", "fc"))
    parser.add_argument("--feature", default="auto", choices=("auto", "feature", "logit"),
                        help="class features for cka: last-stage maps (CIFAR-like), box-head features (detection) "
                             "or logits (ImageNet)")
    parser.add_argument("--out", default="", help="output .pth (default: wkd_cost_matrix/<dataset>/<teacher>/<name>.pth)")
    parser.add_argument("--num-classes", type=int, default=0, help="skip building the dataset for --method fc")
    parser.add_argument("--max-per-class", type=int, default=0,
                        help="images (detection: RoIs) per class for cka (0: all, up to the smallest class)")
    parser.add_argument("--batch-size", type=int, default=0, help="images per batch (default 256; detection 8)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="config overrides KEY VALUE ... (DATASET.ROOT ...)")
    add_debug_flag(parser)
    return parser.parse_args(argv)


def main(argv=None):
    return run_main(_main, parse_args(argv), PROG)


def _main(args):
    from .dataset import build_datasets, dataset_spec
    from .dataset.common import TensorImageDataset
    from .engine.build import build_model, load_teacher, model_zoo
    from .engine.cfg import CFG
    from .engine.device import resolve_device
    from .losses.class_cost import collect_class_features, fc_cost_matrix, linear_cka_matrix

    cfg = CFG.clone()
    if args.cfg:
        cfg.merge_from_file(args.cfg)
    if not (args.dataset or args.cfg):
        raise UsageError("give the dataset: --dataset NAME (or a run's config with --cfg)")
    args.dataset = args.dataset or cfg.DATASET.TYPE
    cfg.DATASET.TYPE = args.dataset
    cfg.DISTILLER.TEACHER = args.teacher
    cfg.DISTILLER.TEACHER_CKPT = args.ckpt
    if args.opts:
        cfg.merge_from_list(list(args.opts))
    cfg.freeze()
    if args.teacher not in model_zoo(args.dataset, cfg.DISTILLER.MODEL_ZOO):  # before any data is read
        build_model(args.teacher, args.dataset, 1, zoo=cfg.DISTILLER.MODEL_ZOO)  # raises the unknown-name error
    feature = args.feature
    if feature == "auto":
        # the release's class features: logits for ImageNet (the datasets of the ImageNet zoo), maps otherwise
        feature = "logit" if dataset_spec(args.dataset).zoo == "imagenet" else "feature"
    detection = dataset_spec(args.dataset).task == "detection"
    out = args.out or default_output(args.dataset, args.teacher, args.method, feature, detection)
    check_writable(os.path.dirname(os.path.abspath(out)), "the output file {} (--out)".format(out))
    device = resolve_device(args.device)
    if detection:
        return save(detection_cost(args, cfg, feature, device), out)

    train_set = None
    if args.method == "fc" and args.num_classes > 0:
        num_classes = args.num_classes
    else:
        train_set, val_set, num_classes = build_datasets(cfg)
        # Class features of the training images with the test-time transform (no augmentation).
        if hasattr(train_set, "transform") and hasattr(val_set, "transform"):
            train_set.transform = val_set.transform

    teacher = load_teacher(cfg, num_classes).to(device).eval()
    if args.method == "fc":
        dist = fc_cost_matrix(teacher)
        print("fc cost matrix of {}: 1 - cos of the classifier rows".format(args.teacher))
    else:
        in_memory = isinstance(train_set, TensorImageDataset)  # workers would only cost time
        feats, m = collect_class_features(
            teacher, train_set, num_classes, feature, device, batch_size=args.batch_size or 256,
            workers=0 if in_memory else cfg.DATASET.NUM_WORKERS, max_per_class=args.max_per_class,
        )
        print("class features ({}): {} classes x {} rows x {} dims ({} images per class)".format(
            feature, *feats.shape, m))
        dist = 1.0 - linear_cka_matrix(feats.to(device)).cpu()
    return save(dist, out)


def detection_cost(args, cfg, feature, device):
    """The (K + 1) × (K + 1) cost of a detection teacher, background last (see the module docstring)."""
    from .dataset import build_datasets
    from .engine.build import load_detection_teacher
    from .losses.class_cost import collect_roi_features, cosine_cost, linear_cka_matrix

    train_set, val_set, _ = build_datasets(cfg)
    train_set.transform = val_set.transform  # test-time sizes, no flips
    teacher = load_detection_teacher(cfg, train_set.category_ids).to(device).eval()
    if args.method == "fc":
        print("fc cost matrix of {}: 1 - cos of the box predictor's class rows (background last)".format(args.teacher))
        return cosine_cost(teacher.roi_heads.box_predictor.cls_score.weight[teacher.distill_columns])
    feats, m = collect_roi_features(teacher, train_set, device, feature, batch_size=args.batch_size or 8,
                                    workers=cfg.DATASET.NUM_WORKERS, max_per_class=args.max_per_class)
    print("RoI features ({}): {} classes (background last) x {} RoIs x {} dims".format(feature, *feats.shape))
    return 1.0 - linear_cka_matrix(feats.to(device)).cpu()


def save(dist, out):
    """Symmetrise, zero the diagonal (:func:`~mdistiller.losses.class_cost.finalize`), ``torch.save`` to ``out``
    (atomically: :func:`~mdistiller.engine.checkpoint.save_checkpoint`); returns ``out``."""
    import torch

    from .engine.checkpoint import save_checkpoint
    from .losses.class_cost import finalize

    dist = finalize(dist)
    save_checkpoint(dist, out, what="the cost matrix")
    off = dist[~torch.eye(dist.shape[0], dtype=torch.bool)]
    print("saved {} ({}x{}, off-diagonal min {:.4f} mean {:.4f} max {:.4f})".format(
        out, dist.shape[0], dist.shape[1], off.min().item(), off.mean().item(), off.max().item()))
    return out


# `mdistiller-cost-matrix` (pyproject.toml): exits 0 on success.
cli = console_entry(main)


if __name__ == "__main__":
    main()
