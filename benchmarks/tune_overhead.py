"""What a tuning trial costs against a plain training run of the same length.

    python benchmarks/tune_overhead.py [--epochs 30] [--repeats 3] [--config digits/kd.yaml]

Three kinds of run of the same config (a digits KD student by default: the tune_digits suite's protocol, with a
resnet20 teacher of random weights, since the cost does not depend on what the teacher knows), each launched as
a SLURM job of the benchmark runner launches it (:func:`mdistiller.benchmark.execute.execute_run`: a subprocess,
one thread), interleaved ``plain, split, trial, plain, ...``:

* ``plain``: ``mdistiller.train`` as mdistiller runs it, the test set (450 images) evaluated every epoch;
* ``split``: the same with ``DATASET.VAL_SPLIT 20`` (200 images held out, evaluated every epoch) and
  ``DATASET.TEST_AT_END_ONLY`` (the test set after the last epoch only) — the runs the tuner retrains;
* ``trial``: ``mdistiller.tune.trial`` on the split run's config: the same training plus the sink that reports each
  epoch's validation top-1 to an Optuna study (journal file, MedianPruner that never prunes a first trial).

Printed: the median over repeats of each kind's process wall time and of the trainer's own training time (the sum
of its epochs' training loops), and the time of one validation pass and one test pass of the model (in this
process). A trial costs a plain run plus its validation passes when ``trial - plain`` is within
``epochs x (validation pass) - (epochs - 1) x (test pass)`` plus noise.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import torch


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="digits/kd.yaml")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--val-split", type=float, default=20)
    args = parser.parse_args(argv)

    import optuna

    from mdistiller.benchmark.execute import execute_run
    from mdistiller.benchmark.plan import Run
    from mdistiller.engine.cfg import get_cfg
    from mdistiller.models import cifar_model_dict
    from mdistiller.tune.study import JOURNAL, TRIAL_FILE, journal_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    root = tempfile.mkdtemp(prefix="tune-overhead-")
    base = get_cfg(args.config)
    teacher = os.path.join(root, "teacher.pth")
    torch.manual_seed(0)
    torch.save({"model": cifar_model_dict[base.DISTILLER.TEACHER][0](num_classes=10).state_dict()}, teacher)
    common = ["SOLVER.EPOCHS", str(args.epochs), "DISTILLER.TEACHER_CKPT", teacher]
    split = ["DATASET.VAL_SPLIT", str(args.val_split), "DATASET.TEST_AT_END_ONLY", "True"]
    kinds = {"plain": common, "split": common + split, "trial": common + split}
    study = optuna.create_study(study_name="overhead", storage=journal_storage(os.path.join(root, JOURNAL)),
                                direction="maximize", pruner=optuna.pruners.MedianPruner())
    times = {kind: ([], []) for kind in kinds}
    for repeat in range(args.repeats):
        for kind, opts in kinds.items():
            folder = "{}{}".format(kind, repeat)
            run = Run(args.config, 0, "runs", root, get_cfg(args.config, opts), folder=folder,
                      module="mdistiller.tune.trial" if kind == "trial" else None)
            if kind == "trial":
                trial = study.ask()
                os.makedirs(run.run_dir)
                with open(os.path.join(run.run_dir, TRIAL_FILE), "w") as f:
                    json.dump({"journal": os.path.join(root, JOURNAL), "study": "overhead", "trial_id": trial._trial_id,
                               "number": trial.number, "pruner": "median", "pruner_options": {}}, f)
            execute_run(run, root, threads=1)
            with open(os.path.join(run.run_dir, "benchmark.json")) as f:
                wall = json.load(f)["attempts"][-1]["wall_time"]
            with open(os.path.join(run.run_dir, "summary.json")) as f:
                train_time = json.load(f)["train_time"]
            if kind == "trial":
                study.tell(trial, 0.0)  # every trial is a first one for the pruner: none is stopped
            times[kind][0].append(wall)
            times[kind][1].append(train_time)
            print("{} {}: wall {:.2f} s, training loops {:.2f} s".format(kind, repeat, wall, train_time), flush=True)

    val_pass, test_pass = evaluation_passes(os.path.join(root, "runs", "split0"))
    print("\nconfig {}, {} epochs, {} repeats; one validation pass {:.3f} s, one test pass {:.3f} s".format(
        args.config, args.epochs, args.repeats, val_pass, test_pass))
    print("| run | wall (median) | training loops (median) | wall − plain |")
    print("|---|---:|---:|---:|")
    plain = statistics.median(times["plain"][0])
    for kind, (walls, loops) in times.items():
        wall = statistics.median(walls)
        print("| {} | {:.2f} s | {:.2f} s | {:+.2f} s |".format(kind, wall, statistics.median(loops), wall - plain))
    expected = args.epochs * val_pass - (args.epochs - 1) * test_pass
    print("validation passes minus the test passes a split run skips: {:+.2f} s".format(expected))


def evaluation_passes(run_dir):
    """Seconds of one pass over the validation split and one over the test set with the run's final model (median of
    5, one thread)."""
    from mdistiller.engine.cfg import get_cfg
    from mdistiller.engine.trainer import Trainer

    torch.set_num_threads(1)
    cfg = get_cfg(os.path.join(run_dir, "config.yaml"), ["LOG.WANDB", "False"])
    trainer = Trainer(cfg, os.path.join(os.path.dirname(run_dir), "timing"))
    out = []
    for evaluator in (trainer.evaluators[0], trainer.test_evaluator):
        samples = []
        for _ in range(5):
            started = time.perf_counter()
            trainer.evaluate([evaluator])
            samples.append(time.perf_counter() - started)
        out.append(statistics.median(samples))
    trainer.logger.close()
    return out


if __name__ == "__main__":
    sys.exit(main())
