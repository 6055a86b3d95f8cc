"""Evaluate a model: top-1, top-5 and cross-entropy on a dataset's validation split (a detector: COCO box mAP).

    mdistiller-eval -m resnet32x4                                 # mdistiller's released teacher
    mdistiller-eval -c output/distill/kd,res32x4,res8x4           # a run folder (mdistiller-train prints it)
    mdistiller-eval -m resnet8x4 -c output/.../student_best       # a checkpoint file
    mdistiller-eval -m ResNet34 -d imagenet                       # torchvision weights
    mdistiller-eval -c output/shapes_detection/kd,r50,mv2         # a detection run: AP, AP50, AP75, APs/m/l
    mdistiller-eval -m ResNet50 -d coco                           # torchvision's COCO R50-FPN detector
    python -m mdistiller.eval ... | python tools/eval.py ...      # the same, mdistiller's command

``-c`` takes a checkpoint file or a run folder written by ``mdistiller-train`` (its ``student_best``,
else ``student_latest``, else the student of ``latest``). When the run folder (the checkpoint's
folder) holds the run's ``config.yaml``, the model, dataset, data root and model zoo default to the
run's; ``-m``/``-d``/``--root`` override them. A detection run's ``DETECTION`` settings come from its config too.
"""
import os

from ._cli import ArgumentParser, UsageError, add_debug_flag, console_entry, load_yaml_mapping, run_main

PROG = "mdistiller-eval"
RUN_CHECKPOINTS = ("student_best", "student_latest", "latest")


def build_parser():
    parser = ArgumentParser(prog=PROG, description="Evaluate a model checkpoint or a training run folder.")
    parser.add_argument("-m", "--model", default=None,
                        help="model name (cifar_model_dict / imagenet_model_dict); default: the run's DISTILLER.STUDENT")
    parser.add_argument("-c", "--ckpt", default="pretrain",
                        help="checkpoint file, run folder of mdistiller-train, or 'pretrain' for the released one")
    parser.add_argument("-d", "--dataset", default=None,
                        help="cifar100 | cifar10 | svhn | digits | tiny_imagenet | imagenet "
                             "(default: the run's DATASET.TYPE, else cifar100)")
    parser.add_argument("-bs", "--batch-size", type=int, default=64)
    parser.add_argument("--root", default=None, help="DATASET.ROOT (default: the run's, else data)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=2,
                        help="DataLoader workers for datasets read from files (in-memory ones need none)")
    add_debug_flag(parser)
    return parser


def resolve_checkpoint(path):
    """``(checkpoint file, run folder or None)`` of ``-c``: a run folder gives its best student checkpoint."""
    if os.path.isdir(path):
        for name in RUN_CHECKPOINTS:
            candidate = os.path.join(path, name)
            if os.path.isfile(candidate):
                return candidate, path
        raise UsageError("No checkpoint in {} (expected one of {}): give a run folder of mdistiller-train that "
                         "finished at least one epoch, or a checkpoint file".format(path, ", ".join(RUN_CHECKPOINTS)))
    if not os.path.isfile(path):
        raise FileNotFoundError("Checkpoint not found: {} (give a checkpoint file, a run folder of mdistiller-train, "
                                "or -c pretrain for a released teacher)".format(os.path.abspath(path)))
    folder = os.path.dirname(os.path.abspath(path))
    return path, folder if os.path.isfile(os.path.join(folder, "config.yaml")) else None


def run_config(run_folder):
    """The run's ``config.yaml`` as a nested dict ({} when there is none)."""
    if run_folder is None:
        return {}
    path = os.path.join(run_folder, "config.yaml")
    if not os.path.isfile(path):
        return {}
    return load_yaml_mapping(path, "run's config")


def student_state(state):
    """The student's state dict of a checkpoint: ``{"model": ...}`` of a student file, the ``student.``
    entries of a trainer checkpoint (``latest``/``best``), or a bare state dict."""
    if not isinstance(state, dict):
        return state  # not weights at all: load_weights says so
    state = state.get("model", state)
    prefix = "student."
    if isinstance(state, dict) and any(str(k).startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def _main(args):
    from torch.utils.data import DataLoader

    from .dataset import build_datasets, dataset_spec
    from .dataset.common import TensorImageDataset
    from .engine.build import DOWNLOAD_HINT, build_model, model_zoo, released_checkpoint
    from .engine.cfg import get_cfg
    from .engine.checkpoint import load_checkpoint, load_weights
    from .engine.device import resolve_device
    from .engine.evaluate import as_percentages, evaluation_sums

    path, run_folder = (args.ckpt, None) if args.ckpt == "pretrain" else resolve_checkpoint(args.ckpt)
    run = run_config(run_folder)
    run_dataset, run_distiller = run.get("DATASET") or {}, run.get("DISTILLER") or {}
    model_name = args.model or run_distiller.get("STUDENT")
    if not model_name:
        raise UsageError("Give the model with -m NAME (no config.yaml of a training run next to {})".format(args.ckpt))
    # The run's dataset, data root and model zoo where there is a run (options override them); the defaults else.
    given = {"DATASET.TYPE": args.dataset or run_dataset.get("TYPE"), "DATASET.ROOT": args.root or run_dataset.get("ROOT"),
             "DISTILLER.MODEL_ZOO": None if args.model else run_distiller.get("MODEL_ZOO")}
    if not args.dataset:  # the run's own data: its class count and (digits) image size
        given.update({"DATASET.NUM_CLASSES": run_dataset.get("NUM_CLASSES"), "DATASET.INPUT_SIZE": run_dataset.get("INPUT_SIZE")})
    opts = ["DATASET.NUM_WORKERS", str(args.workers)]
    for key, value in given.items():
        if value:
            opts += [key, str(value)]
    cfg = get_cfg(opts=opts)
    if run.get("DETECTION") and not args.dataset:  # the run's detector, input sizes and COCO-format files
        cfg.defrost()
        cfg.merge_from_other_cfg(type(cfg)({"DETECTION": run["DETECTION"]}))
        if run_dataset.get("COCO"):
            cfg.merge_from_other_cfg(type(cfg)({"DATASET": {"COCO": run_dataset["COCO"]}}))
        cfg.freeze()
    dataset, zoo = cfg.DATASET.TYPE, cfg.DISTILLER.MODEL_ZOO
    if dataset_spec(dataset).task == "detection":
        return evaluate_detector(args, cfg, model_name, path)
    if model_name not in model_zoo(dataset, zoo):
        build_model(model_name, dataset, 1, zoo=zoo)  # raises the unknown-name error, before any data is read
    device = resolve_device(args.device)
    _, val_set, num_classes = build_datasets(cfg)
    if dataset_spec(dataset).teachers == "torchvision" and path == "pretrain":
        model = build_model(model_name, dataset, num_classes, pretrained=True)
    else:
        model = build_model(model_name, dataset, num_classes, zoo=zoo)
        hint = None
        if path == "pretrain":
            hint = DOWNLOAD_HINT
            try:
                path = released_checkpoint(model_name, dataset, zoo)
            except FileNotFoundError:
                raise UsageError("No released checkpoint for {} on {}; pass -c PATH".format(model_name, dataset)) from None
        asked = "-m {}".format(model_name) if args.model else "the run's DISTILLER.STUDENT {}".format(model_name)
        load_weights(model, student_state(load_checkpoint(path, hint=hint)), path, asked)
    if run_folder:
        print("run folder {}: {} on {} ({})".format(run_folder, model_name, dataset, os.path.basename(path)))
    model = model.to(device)
    workers = 0 if isinstance(val_set, TensorImageDataset) else args.workers  # in memory: workers only cost time
    loader = DataLoader(val_set, batch_size=args.batch_size, shuffle=False, num_workers=workers)
    model.eval()
    top1, top5, loss = as_percentages(*evaluation_sums(lambda image: model(image)[0], loader, device))
    print("top-1: {:.2f}  top-5: {:.2f}  loss: {:.4f}".format(top1, top5, loss))
    return top1, top5, loss


def evaluate_detector(args, cfg, model_name, path):
    """COCO box mAP of a detector checkpoint (or, with ``-c pretrain``, torchvision's COCO detector of ``-m``) on the
    dataset's validation split; returns the metrics (percent)."""
    from torch.utils.data import DataLoader

    from .dataset import build_datasets
    from .dataset.coco import collate_detection
    from .engine.build import build_detector_model, detection_teacher_checkpoint
    from .engine.checkpoint import CheckpointError, load_checkpoint, load_weights
    from .engine.device import Runtime, resolve_device
    from .engine.evaluate import COCOEvaluator

    device = resolve_device(args.device)
    _, val_set, _ = build_datasets(cfg)
    if path == "pretrain":
        released = cfg.clone()
        released.defrost()
        released.DISTILLER.TEACHER = model_name
        path = detection_teacher_checkpoint(released)
    state = student_state(load_checkpoint(path))
    key = "roi_heads.box_predictor.cls_score.weight"
    if not isinstance(state, dict) or key not in state:
        raise CheckpointError("{} is not the checkpoint of a Faster R-CNN of this project or of torchvision (no "
                              "{})".format(os.path.abspath(path), key))
    model = build_detector_model(cfg, model_name, val_set.category_ids, num_outputs=state[key].shape[0])
    asked = "-m {}".format(model_name) if args.model else "the run's DISTILLER.STUDENT {}".format(model_name)
    load_weights(model, state, path, asked)
    model = model.to(device).eval()
    loader = DataLoader(val_set, batch_size=args.batch_size, shuffle=False, num_workers=args.workers,
                        collate_fn=collate_detection)
    metrics = COCOEvaluator("test", loader, Runtime(device=device))(lambda image: model(image))
    print("  ".join("{}: {:.2f}".format(name[len("test_"):].upper(), value) for name, value in metrics.items()))
    return metrics


def main(argv=None):
    args = build_parser().parse_args(argv)
    return run_main(_main, args, PROG)


# `mdistiller-eval` (pyproject.toml): exits 0 on success.
cli = console_entry(main)


if __name__ == "__main__":
    main()
