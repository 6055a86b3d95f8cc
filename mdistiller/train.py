"""Train a student (optionally distilled from a teacher).

    mdistiller-train --cfg configs/cifar100/dkd/res32x4_res8x4.yaml [--resume] [KEY VALUE ...]
    mdistiller-train --cfg digits/kd.yaml ...                            # a config shipped in the package
    mdistiller-train --cfg ... --print-config                            # the merged config, nothing run
    mdistiller-train --cfg ... --dry-run                                 # one train + one val step, nothing written
    python -m mdistiller.train ... | python tools/train.py ...           # the same, mdistiller's command
    torchrun --nproc_per_node=4 -m mdistiller.train --cfg ...            # DistributedDataParallel

The run folder is ``LOG.PREFIX/EXPERIMENT.PROJECT/<NAME or TAG>[,KEY:VALUE...]`` (``engine.naming``);
``--resume`` continues that folder's run from its ``latest`` checkpoint. Relative paths (config, data
root, teacher checkpoints) are relative to the current directory; a ``--cfg`` that is not a file
there names a config shipped in ``mdistiller/configs/`` (``digits/kd.yaml``). A mistake in the
command (unknown method, model or key, missing file) prints one line and exits with code 2;
``--debug`` shows the traceback.
"""
import argparse
import os
import sys

from ._cli import add_debug_flag, console_entry, pull_flags, run_main

PROG = "mdistiller-train"


def methods_and_models_text():
    """The ``--help`` epilog: every registered method (key, one-line description) and every model name."""
    from . import models
    from .distillers import distiller_dict

    width = max(len(k) for k in distiller_dict) + 2
    lines = ["methods (DISTILLER.TYPE):"]
    lines += ["  {}{}".format(key.ljust(width), cls.description()) for key, cls in distiller_dict.items()]
    zoos = [("CIFAR-style models (DATASET.TYPE cifar100, cifar10, svhn, digits, ...)", models.cifar_model_dict),
            ("ImageNet models (DATASET.TYPE imagenet, or DISTILLER.MODEL_ZOO imagenet)", models.imagenet_model_dict)]
    tiny = getattr(models, "tiny_imagenet_model_dict", None)
    if tiny:
        zoos.append(("Tiny-ImageNet models", tiny))
    for title, zoo in zoos:
        lines += ["", "{} (DISTILLER.STUDENT / DISTILLER.TEACHER):".format(title)]
        lines += _wrap(sorted(zoo))
    from .engine.cfg import packaged_configs

    lines += ["", "packaged configs (--cfg NAME when no such file exists here):"] + _wrap(packaged_configs())
    return "\n".join(lines)


def _wrap(names, width=100):
    lines, line = [], "  "
    for name in names:
        if len(line) + len(name) + 2 > width and line.strip():
            lines.append(line.rstrip(", "))
            line = "  "
        line += name + ", "
    if line.strip():
        lines.append(line.rstrip(", "))
    return lines



def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Train with a yacs config (mdistiller-compatible). Trailing KEY VALUE pairs override the config.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--cfg", type=str, default="",
                        help="yaml config: a path, or a packaged config name such as digits/kd.yaml")
    parser.add_argument("--resume", action="store_true", help="continue the run from its folder's `latest`")
    parser.add_argument("--print-config", action="store_true", help="print the merged config and exit")
    parser.add_argument("--dry-run", action="store_true",
                        help="build data, models, teacher and distiller, run one training and one validation step, "
                             "report time and peak memory; writes nothing")
    add_debug_flag(parser)
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER, help="KEY VALUE overrides")
    return parser


def _wants_help(argv):
    words = []
    for word in argv:
        if not word.startswith("-") and word.isupper():  # the KEY VALUE overrides start here
            break
        words.append(word)
    return "-h" in words or "--help" in words


def summary_line(summary, log_path):
    """The line printed after a run: best and last test top-1, and with a validation split the test top-1 at the
    epoch of best validation accuracy."""
    parts = []
    if "test_top1_at_val_best" in summary:
        parts.append("test_top1_at_val_best {:.2f} (val_best epoch {}, val {:.2f})".format(
            summary["test_top1_at_val_best"], summary["val_best_epoch"], summary["val_best_acc"]))
    if summary["best_acc"] is not None:
        parts.append("best_acc {:.2f} (epoch {})".format(summary["best_acc"], summary["best_epoch"]))
    parts.append("last_acc {:.2f}".format(summary["last_acc"]))
    return "{}  -> {}".format("  ".join(parts), log_path)


def _main(args):
    from .engine.cfg import get_cfg, show_cfg
    from .engine.naming import run_dir

    opts = args.opts or []
    if opts and opts[0] == "--":
        opts = opts[1:]
    cfg = get_cfg(args.cfg, opts)
    log_path = run_dir(cfg, opts)
    if args.print_config:
        print(show_cfg(cfg), end="")
        return None
    if args.dry_run:
        from .engine.dry_run import dry_run

        report = dry_run(cfg)
        print("dry run of {} ({} -> {}, {}): built in {:.2f} s; train step {:.3f} s (batch {}), "
              "validation step {:.3f} s (batch {}); {}; losses {}; nothing written (the run folder would be {})".format(
                  cfg.DISTILLER.TYPE, cfg.DISTILLER.TEACHER, cfg.DISTILLER.STUDENT, cfg.DATASET.TYPE,
                  report["build_s"], report["train_step_s"], report["train_batch"], report["val_step_s"],
                  report["val_batch"], report["memory"],
                  ", ".join("{} {:.4f}".format(k, v) for k, v in report["losses"].items()), log_path))
        return report
    from .engine.trainer import train

    summary = train(cfg, log_path, resume=args.resume)
    if int(os.environ.get("RANK", "0")) == 0:
        print(summary_line(summary, log_path))
    return summary


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if _wants_help(argv):
        parser.epilog = methods_and_models_text()
    args = parser.parse_args(argv)
    args.opts = pull_flags(parser, args, args.opts or [])
    return run_main(_main, args, PROG)


# `mdistiller-train` (pyproject.toml): exits 0 on success.
cli = console_entry(main)


if __name__ == "__main__":
    main()
