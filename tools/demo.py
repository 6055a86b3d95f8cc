"""The README's first command (`make demo`): distillation side by side on CPU, no downloads.

1. Trains a resnet20 teacher on the bundled digits data (configs/digits/teacher.yaml), once:
   demo_runs/teacher/teacher/seed0/student_best is reused when its run finished.
2. Distills the same resnet8 student with every demo method whose distiller is registered
   (Vanilla, KD, DKD, WKD-L, WKL, IPOT, KD2M, WCoRD: configs/digits/<method>.yaml) over 3 seeds
   with the benchmark runner (mdistiller/benchmark.py), 4 epochs each, runs in parallel,
   one thread each.
3. Prints the comparison table (also demo_runs/sweep/results.md, results.csv) and writes the
   alignment / accuracy figures (demo_runs/sweep/*.png).

Re-running skips finished runs. Options: --seeds, --jobs, --out; KEY VALUE overrides go to every
distillation run (e.g. `SOLVER.EPOCHS 6`).
"""
import argparse
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from mdistiller.benchmark import cores_available, run_sweep, run_state  # noqa: E402
from mdistiller.distillers import distiller_dict  # noqa: E402

CONFIG_DIR = os.path.join("configs", "digits")
TEACHER_CONFIG = os.path.join(CONFIG_DIR, "teacher.yaml")
# (config file, registry key, what it is), in table order
METHODS = (
    ("vanilla.yaml", "NONE", "Vanilla (student alone)"),
    ("kd.yaml", "KD", "KD"),
    ("dkd.yaml", "DKD", "DKD"),
    ("wkd_l.yaml", "WKD", "WKD-L"),
    ("wkl.yaml", "WKL", "WKL"),
    ("ipot.yaml", "OTKD", "OTKD (IPOT)"),
    ("kd2m.yaml", "KD2M", "KD2M (W2)"),
    ("wcord.yaml", "WCORD", "WCoRD"),
)


def main(argv=None):
    parser = argparse.ArgumentParser(description="CPU demo: a digits teacher, then KD/DKD/WKD/WKL/OT side by side.")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=None, help="runs at once (default: the number of cores)")
    parser.add_argument("--out", default="demo_runs", help="output folder (relative to the repository)")
    parser.add_argument("opts", nargs="*", help="KEY VALUE overrides for the distillation runs")
    args = parser.parse_args(argv)
    os.chdir(REPO)
    started = time.time()
    cores = cores_available()
    jobs = args.jobs or cores

    methods = [(f, key, what) for f, key, what in METHODS if key in distiller_dict]
    skipped = [(f, key, what) for f, key, what in METHODS if key not in distiller_dict]
    print("Demo methods: {}".format(", ".join(what for _, _, what in methods)))
    if skipped:
        print("Skipped (distiller not registered in this checkout): {}".format(
            ", ".join("{} ({})".format(what, key) for _, key, what in skipped)))

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
    configs = [os.path.join(CONFIG_DIR, f) for f, _, _ in methods]
    opts = ["DISTILLER.TEACHER_CKPT", os.path.abspath(teacher_ckpt)] + list(args.opts)
    sweep = run_sweep(configs, seeds=args.seeds, out=args.out, name="sweep", opts=opts, jobs=jobs,
                      title="Digits demo: resnet20 (teacher, {:.2f}%) -> resnet8".format(record["best_acc"]))
    total = time.time() - started
    failed = [r for r in sweep["records"] if r["status"] != "ok"]
    ranked = sorted((r for r in sweep["rows"] if r["n"]), key=lambda r: -r["last_mean"])
    if ranked:
        print("Ranking by mean last-epoch top-1: " + " > ".join(
            "{} {:.2f}".format(r["method"], r["last_mean"]) for r in ranked))
    print("Demo finished in {:.0f} s ({:.1f} min) on {} core(s); {} failed run(s). Outputs: {}".format(
        total, total / 60.0, cores, len(failed), sweep["sweep_dir"]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
