"""Train a student (optionally distilled from a teacher).

    mdistiller-train --cfg configs/cifar100/dkd/res32x4_res8x4.yaml [--resume] [KEY VALUE ...]
    mdistiller-train --cfg digits/kd.yaml ...                            # a config shipped in the package
    mdistiller-train --cfg ... --print-config                            # the merged config, nothing run
    mdistiller-train --cfg ... --dry-run                                 # one train + one val step, nothing written
    python -m mdistiller.train ... | python tools/train.py ...           # the same, mdistiller's command
    torchrun --nproc_per_node=4 -m mdistiller.train --cfg ...            # DistributedDataParallel

The run folder is ``LOG.PREFIX/EXPERIMENT.PROJECT/<NAME or TAG>[,KEY:VALUE...]`` (``engine.naming``);
``--resume`` continues that folder's run from its ``latest`` checkpoint. SIGTERM or SIGUSR2 (a SLURM
preemption or time limit) stops the run after its current step with ``latest`` intact and exit code 75
(``_cli.EXIT_REQUEUE``): run the same command with ``--resume`` to continue. Relative paths (config, data
root, teacher checkpoints) are relative to the current directory; a ``--cfg`` that is not a file
there names a config shipped in ``mdistiller/configs/`` (``digits/kd.yaml``). A mistake in the
command (unknown method, model or key, missing file) prints one line and exits with code 2;
``--debug`` shows the traceback.
"""
import argparse
import os
import sys

from ._cli import EXIT_REQUEUE, ArgumentParser, add_debug_flag, console_entry, run_main, split_overrides

PROG = "mdistiller-train"


def methods_and_models_text():
    """The ``--help`` epilog: every built-in method (key, one-line description), every model name and every
    shipped config, read without importing torch (:mod:`mdistiller.catalogue`)."""
    from .catalogue import builtin_methods, model_names, packaged_configs

    methods = builtin_methods()
    width = max(len(key) for key, _ in methods) + 2
    lines = ["methods (DISTILLER.TYPE):"]
    lines += ["  {}{}".format(key.ljust(width), description) for key, description in methods]
    lines += ["", "methods with a detection variant (DATASET.TYPE coco, shapes):"]
    lines += _wrap([key for key, _ in builtin_methods("detection")])
    names = model_names()
    for title, zoo in (("CIFAR-style models (DATASET.TYPE cifar100, cifar10, svhn, digits, ...)", "cifar"),
                       ("ImageNet models (DATASET.TYPE imagenet, or DISTILLER.MODEL_ZOO imagenet)", "imagenet"),
                       ("Tiny-ImageNet models", "tiny_imagenet"),
                       ("Faster R-CNN + FPN detectors, by backbone (DATASET.TYPE coco, shapes)", "detection")):
        lines += ["", "{} (DISTILLER.STUDENT / DISTILLER.TEACHER):".format(title)]
        lines += _wrap(sorted(names[zoo]))
    lines += ["", "shipped configs, by folder (--cfg FOLDER/NAME.yaml from any folder; a file of that path here wins):"]
    folders = {}
    for config in packaged_configs():
        folder, _, name = config.rpartition("/")
        folders.setdefault(folder, []).append(name[:-len(".yaml")])
    for folder, names in folders.items():
        lines += _wrap(names, first="{}/: ".format(folder))
    return "\n".join(lines)


def _wrap(names, width=100, first=""):
    """``names`` comma-separated in lines of at most ``width`` characters, indented (the first line starts with
    ``first``)."""
    lines, line = [], "  " + first
    for name in names:
        if len(line) + len(name) + 2 > width and line.strip() != first.strip():
            lines.append(line.rstrip(", "))
            line = "    " if first else "  "
        line += name + ", "
    if line.strip():
        lines.append(line.rstrip(", "))
    return lines


def build_parser():
    parser = ArgumentParser(
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
    parser.add_argument("opts", nargs="*", metavar="KEY VALUE",
                        help="config overrides, e.g. SOLVER.EPOCHS 1 (after -- when a value starts with -)")
    return parser


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

    opts = args.opts
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
    return train_and_report(cfg, log_path, resume=args.resume)


def train_and_report(cfg, log_path, resume=False, sinks=(), prog=PROG):
    """Train, print the summary line (rank 0) and return the summary; a run stopped by SIGTERM/SIGUSR2 (preemption,
    time limit) says so on stderr and exits with ``EXIT_REQUEUE``, the runner's "resume me" (not a failure)."""
    from .engine.trainer import TrainingInterrupted, train

    try:
        summary = train(cfg, log_path, resume=resume, sinks=sinks)
    except TrainingInterrupted as e:
        print("{}: {}".format(prog, e), file=sys.stderr)
        raise SystemExit(EXIT_REQUEUE) from None
    if int(os.environ.get("RANK", "0")) == 0:
        print(summary_line(summary, log_path))
    return summary


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    options, overrides = split_overrides(parser, argv)
    if "-h" in options or "--help" in options:
        parser.epilog = methods_and_models_text()
    args = parser.parse_args(options)
    args.opts = overrides
    return run_main(_main, args, PROG)


# `mdistiller-train` (pyproject.toml): exits 0 on success.
cli = console_entry(main)


if __name__ == "__main__":
    main()
