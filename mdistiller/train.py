"""Train a student (optionally distilled from a teacher).

    python -m mdistiller.train --cfg configs/cifar100/dkd/res32x4_res8x4.yaml [--resume] [KEY VALUE ...]
    python tools/train.py --cfg ...                                      # the same, mdistiller's command
    torchrun --nproc_per_node=4 -m mdistiller.train --cfg ...            # DistributedDataParallel

The run folder is ``LOG.PREFIX/EXPERIMENT.PROJECT/<NAME or TAG>[,KEY:VALUE...]`` (``engine.naming``);
``--resume`` continues that folder's run from its ``latest`` checkpoint. Relative paths (config, data
root, teacher checkpoints) are relative to the current directory.
"""
import argparse
import os

from .engine.cfg import get_cfg
from .engine.naming import run_dir
from .engine.trainer import train


def main(argv=None):
    parser = argparse.ArgumentParser(description="Train with a yacs config (mdistiller-compatible).")
    parser.add_argument("--cfg", type=str, default="", help="path to a yaml config")
    parser.add_argument("--resume", action="store_true", help="continue the run from its folder's `latest`")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER, help="KEY VALUE overrides")
    args = parser.parse_args(argv)
    opts = args.opts or []
    cfg = get_cfg(args.cfg, opts)
    log_path = run_dir(cfg, opts)
    summary = train(cfg, log_path, resume=args.resume)
    if int(os.environ.get("RANK", "0")) == 0:
        print("best_acc {:.2f} (epoch {})  last_acc {:.2f}  -> {}".format(
            summary["best_acc"], summary["best_epoch"], summary["last_acc"], log_path))
    return summary


if __name__ == "__main__":
    main()
