"""Evaluate a model: top-1, top-5 and cross-entropy on a dataset's validation split.

    python -m mdistiller.eval -m resnet32x4                       # mdistiller's released teacher
    python -m mdistiller.eval -m resnet8x4 -c output/.../student_best
    python -m mdistiller.eval -m ResNet34 -d imagenet             # torchvision weights
    python tools/eval.py ...                                      # the same, mdistiller's command
"""
import argparse

from torch.utils.data import DataLoader

from .dataset import build_datasets
from .engine.build import DOWNLOAD_HINT, IMAGENET_TYPES, build_model
from .engine.cfg import get_cfg
from .engine.checkpoint import load_checkpoint
from .engine.device import resolve_device
from .engine.evaluate import as_percentages, evaluation_sums
from .models import cifar_model_dict


def main(argv=None):
    parser = argparse.ArgumentParser(description="Evaluate a model checkpoint.")
    parser.add_argument("-m", "--model", required=True, help="model name (cifar_model_dict / imagenet_model_dict)")
    parser.add_argument("-c", "--ckpt", default="pretrain", help="checkpoint path, or 'pretrain' for the released one")
    parser.add_argument("-d", "--dataset", default="cifar100", help="cifar100 | cifar10 | svhn | digits | tiny_imagenet | imagenet")
    parser.add_argument("-bs", "--batch-size", type=int, default=64)
    parser.add_argument("--root", default="data", help="DATASET.ROOT")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    cfg = get_cfg(opts=["DATASET.TYPE", args.dataset, "DATASET.ROOT", args.root, "DATASET.NUM_WORKERS", str(args.workers)])
    device = resolve_device(args.device)
    _, val_set, num_classes = build_datasets(cfg)
    if args.dataset in IMAGENET_TYPES and args.ckpt == "pretrain":
        model = build_model(args.model, args.dataset, num_classes, pretrained=True)
    else:
        model = build_model(args.model, args.dataset, num_classes)
        path = args.ckpt
        if path == "pretrain":
            path = cifar_model_dict[args.model][1]
            if path is None or args.dataset != "cifar100":
                raise SystemExit("No released checkpoint for {} on {}; pass -c PATH".format(args.model, args.dataset))
        state = load_checkpoint(path, hint=DOWNLOAD_HINT)
        model.load_state_dict(state["model"] if "model" in state else state)
    model = model.to(device)
    loader = DataLoader(val_set, batch_size=args.batch_size, shuffle=False, num_workers=args.workers)
    model.eval()
    top1, top5, loss = as_percentages(*evaluation_sums(lambda image: model(image)[0], loader, device))
    print("top-1: {:.2f}  top-5: {:.2f}  loss: {:.4f}".format(top1, top5, loss))
    return top1, top5, loss


if __name__ == "__main__":
    main()
