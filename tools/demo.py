"""The README's first command (`make demo`): distillation side by side on CPU, no downloads.

The experiment (fixed before any method was compared): scikit-learn's digits at 16x16. The teacher
sees the whole training set (1,347 images); each student sees a labelled subset of 10 images per
class (DATASET.TRAIN_PER_CLASS, drawn anew for every seed and shared by all methods at that seed),
30 epochs at batch 10, which the student trained alone needs to converge. So a teacher has
something to teach, as in semi-supervised distillation, and every method is compared seed by seed
with the student alone on the same subset (paired t-test).

1. Trains a resnet20 teacher on the bundled digits data (configs/digits/teacher.yaml), once:
   demo_runs/teacher/teacher/seed0/student_best is reused when its run finished.
2. Distills the same resnet8 student over the seeds (default 0-4) with the benchmark runner
   (mdistiller.benchmark), runs in parallel, one thread each: by default the showcase methods
   (``DEFAULT_METHODS``); ``--methods all`` runs every config of configs/digits/ whose distiller is
   registered (every method, KD+LS and KD+DOT), ``--methods KD FitNet ...`` the named ones.
   Table order: models trained alone, then methods on logit distributions (they declare a logit
   temperature), then the other methods, then contrastive ones; registration order within each.
3. Prints the comparison table (also demo_runs/sweep/results.md, results.csv) with the paired
   difference to the student alone, the ranking, and writes the alignment / accuracy figures
   (demo_runs/sweep/*.png).

Re-running skips finished runs. Options: --methods, --seeds, --jobs, --out; KEY VALUE overrides go to every
distillation run (e.g. `SOLVER.EPOCHS 6`).
"""
import argparse
import glob
import os
import sys
import time

from mdistiller.benchmark import cores_available, method_label, run_state, run_sweep
from mdistiller.benchmark.tables import format_mean_std, paired_text
from mdistiller.engine.cfg import get_cfg
from mdistiller.distillers import distiller_dict

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join("configs", "digits")
TEACHER_CONFIG = os.path.join(CONFIG_DIR, "teacher.yaml")
# Table labels run by default (within the demo's time budget); --methods all runs every config.
DEFAULT_METHODS = ("student", "KD", "DKD", "WKD-L", "WKL", "IPOT", "KD2M-W2(E)", "WCoRD")


def select_methods(methods, wanted=DEFAULT_METHODS):
    """The ``(path, key, label)`` entries whose label is in ``wanted`` (all of them for ``["all"]``)."""
    if list(wanted) == ["all"]:
        return list(methods)
    unknown = sorted(set(wanted) - {label for _, _, label in methods})
    if unknown:
        raise SystemExit("demo: unknown method(s) {}; choose from: {} (or all)".format(
            ", ".join(unknown), ", ".join(label for _, _, label in methods)))
    return [m for m in methods if m[2] in wanted]


def demo_methods(config_dir=CONFIG_DIR, teacher_config=TEACHER_CONFIG):
    """``(methods, skipped)``: ``(config path, registry key, label)`` of every config in ``config_dir``
    but the teacher's, in table order; ``skipped`` = those whose distiller is not registered."""
    order = {key: i for i, key in enumerate(distiller_dict)}
    methods, skipped = [], []
    for path in sorted(glob.glob(os.path.join(config_dir, "*.yaml"))):
        if os.path.normpath(path) == os.path.normpath(teacher_config):
            continue
        try:
            cfg = get_cfg(path)
            key = str(cfg.DISTILLER.TYPE)
            if key not in distiller_dict:
                skipped.append((path, key, key))
                continue
            cls = distiller_dict[key]
            needs = cls.data_needs(cfg)
            rank = (needs.teacher, cls.logit_temperature(cfg) is None, needs.contrastive_k > 0, order[key], path)
        except Exception as e:  # e.g. the block of a method this checkout lacks
            skipped.append((path, "?", "{}: {}".format(type(e).__name__, e).splitlines()[0]))
            continue
        methods.append((rank, (path, key, method_label(cfg))))
    return [m for _, m in sorted(methods)], skipped


def main(argv=None):
    parser = argparse.ArgumentParser(description="CPU demo: a digits teacher, then KD/DKD/WKD/WKL/OT side by side.")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS),
                        help="table labels to run, or 'all' (default: %(default)s)")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(5)))
    parser.add_argument("--jobs", type=int, default=None, help="runs at once (default: the number of cores)")
    parser.add_argument("--out", default="demo_runs", help="output folder (relative to the repository)")
    parser.add_argument("opts", nargs="*", help="KEY VALUE overrides for the distillation runs")
    args = parser.parse_args(argv)
    os.chdir(REPO)
    started = time.time()
    cores = cores_available()
    jobs = args.jobs or cores

    methods, skipped = demo_methods()
    methods = select_methods(methods, args.methods)
    print("Demo methods: {}".format(", ".join(label for _, _, label in methods)))
    if skipped:
        print("Skipped (distiller not registered in this checkout): {}".format(
            ", ".join("{} ({})".format(os.path.basename(path), what) for path, _, what in skipped)))

    # 1. the teacher (cached)
    teacher_dir = os.path.join(args.out, "teacher", "teacher", "seed0")
    teacher_ckpt = os.path.join(teacher_dir, "student_best")
    cached = os.path.exists(teacher_ckpt) and run_state(teacher_dir, 1) == "done"
    print("\n== Teacher: resnet20 on digits ({}) ==".format("cached: " + teacher_ckpt if cached else "training"))
    teacher = run_sweep([TEACHER_CONFIG], seeds=[0], out=args.out, name="teacher", jobs=1, threads=cores,
                        plots=False, echo=None)
    record = teacher["records"][0]
    if record["status"] != "ok" or not os.path.exists(teacher_ckpt):
        print("Teacher training failed: {} (see {})".format(record["error"], teacher_dir))
        return 1
    print("teacher resnet20: test top-1 {:.2f} (best {:.2f} at epoch {}), {} epochs, {:.0f} s{}".format(
        record["last_acc"], record["best_acc"], record["best_epoch"], record["epochs"], record["wall_time"] or 0,
        " (cached)" if cached else ""))

    # 2. the students
    print("\n== Students: resnet8, {} method(s) x {} seed(s) ==".format(len(methods), len(args.seeds)))
    configs = [path for path, _, _ in methods]
    opts = ["DISTILLER.TEACHER_CKPT", os.path.abspath(teacher_ckpt)] + list(args.opts)
    sweep = run_sweep(configs, seeds=args.seeds, out=args.out, name="sweep", opts=opts, jobs=jobs,
                      title="Digits demo: resnet20 (teacher, {:.2f}%) -> resnet8".format(record["best_acc"]))
    total = time.time() - started
    failed = [r for r in sweep["records"] if r["status"] != "ok"]
    ranked = sorted((r for r in sweep["rows"] if r["n"]), key=lambda r: -r["last_mean"])
    if ranked:
        print("Ranking by mean last-epoch top-1 (± sample std over seeds):")
        for place, r in enumerate(ranked, 1):
            print("  {}. {:<12} {}  {}".format(place, r["method"], format_mean_std(r["last_mean"], r["last_std"]),
                                             "vs student alone: " + paired_text(r) if r["delta_n"] else ""))
    print("Demo finished in {:.0f} s ({:.1f} min) on {} core(s); {} failed run(s). Outputs: {}".format(
        total, total / 60.0, cores, len(failed), sweep["sweep_dir"]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
