"""A sweep: plan the runs, execute the unfinished ones, collect every record, write the tables and figures."""
import os
import time
from collections import OrderedDict

from .collect import collect_run, run_state
from .execute import execute_runs, threads_per_run
from .plan import plan_runs
from .tables import RUN_FIELDS, aggregate, format_markdown, write_csv


def sweep_folder(out="benchmark_runs", name=None):
    return os.path.join(out, name) if name else out


def run_sweep(configs, seeds=(0,), out="benchmark_runs", name=None, opts=(), jobs=1, threads=None, python=None,
              plots=True, echo=print, title=None):
    """Run every (config, seed) not finished yet, then write and return the tables.

    Returns a dict: ``sweep_dir``, ``records`` (one per run), ``rows`` (one per config),
    ``markdown``, ``paths`` (results.md, results.csv, runs.csv, plots).
    """
    echo = echo or (lambda *a, **k: None)
    sweep_dir = sweep_folder(out, name)
    os.makedirs(sweep_dir, exist_ok=True)
    runs = plan_runs(configs, seeds, sweep_dir, opts)
    jobs = max(1, int(jobs))
    threads = int(threads) if threads else threads_per_run(jobs)
    todo = []
    for run in runs:
        if run.load_error is None and run_state(run.run_dir, run.epochs) == "done":
            run.action = "skip"
        else:
            todo.append(run)
    skipped = len(runs) - len(todo)
    echo("Sweep {}: {} runs ({} configs x {} seeds), {} finished already, {} to run; {} at once, {} thread(s) each".format(
        sweep_dir, len(runs), len(configs), len(seeds), skipped, len(todo), jobs, threads))
    done_count = [0]

    def report(run, action, started):
        record = collect_run(run)
        done_count[0] += 1
        what = "resumed" if action == "resume" else "ran"
        if record["status"] == "ok":
            msg = "{} {}/seed{}: last {:.2f} best {:.2f} ({:.0f} s)".format(
                what, run.name, run.seed, record["last_acc"], record["best_acc"], time.time() - started)
        else:
            msg = "FAILED {}/seed{}: {}".format(run.name, run.seed, record["error"])
        echo("[{}/{}] {}".format(done_count[0], len(todo), msg))

    execute_runs(todo, sweep_dir, jobs, threads, python=python, on_done=report)

    records = [collect_run(run) for run in runs]
    rows = aggregate(records)
    notes = [
        "Top-1 (%) on the test set, mean ± sample std over seeds (— for one seed); Last = final epoch, "
        "Best = best epoch. Wall = mean wall-clock seconds of a run's train.py process(es) (this invocation: "
        "{} run(s) at once, {} thread(s) each; every run's benchmark.json records its own).".format(jobs, threads),
        "Published = the paper's number for the same dataset/pair/method under its full protocol "
        "(mdistiller/reference/published_results.csv).",
    ]
    markdown = format_markdown(rows, title=title or "Results: {}".format(sweep_dir), notes=notes)
    paths = OrderedDict(
        markdown=os.path.join(sweep_dir, "results.md"),
        csv=os.path.join(sweep_dir, "results.csv"),
        runs=os.path.join(sweep_dir, "runs.csv"),
    )
    with open(paths["markdown"], "w") as f:
        f.write(markdown)
    write_csv(rows, paths["csv"])
    write_csv(records, paths["runs"], RUN_FIELDS)
    paths["plots"] = []
    if plots:
        paths["plots"] = draw_sweep_plots(records, sweep_dir, echo=echo)
    echo("")
    echo(markdown)
    echo("Wrote {}, {}, {}{}".format(paths["markdown"], paths["csv"], paths["runs"],
                                    "".join(", " + p for p in paths["plots"])))
    return dict(sweep_dir=sweep_dir, records=records, rows=rows, markdown=markdown, paths=paths)


def draw_sweep_plots(records, sweep_dir, echo=print):
    """Alignment and accuracy figures of the sweep: one line per config (seed mean) -> list of PNG paths."""
    with_logs = [r for r in records if r["epochs"]]
    names_of = OrderedDict()
    for r in with_logs:
        names_of.setdefault(r["method"], set()).add(r["name"])
    groups = OrderedDict()
    for r in with_logs:
        method = "vanilla" if r["method"] == "student" else r["method"]
        label = method if len(names_of[r["method"]]) == 1 else "{} ({})".format(method, r["name"])
        groups.setdefault(label, []).append(r["run_dir"])
    if not groups:
        return []
    try:
        from ..plots import plot_groups

        return plot_groups(groups, sweep_dir)
    except ImportError as e:
        echo("plots skipped: {}".format(e))
        return []
