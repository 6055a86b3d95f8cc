"""Figures of runs' per-epoch logs: alignment diagnostics (``alignment.csv``) and accuracy (``metrics.csv``).

Like the WKL paper's loss-evolution figures, every figure puts several runs side by side,
one line per run or per group of runs (a group = the seeds of one method: the line is the
seed mean, the band ± one sample std where there are two seeds or more):

* ``alignment_losses.png``: ``kl``, ``tc``, ``nc``, ``w`` (one panel each; see
  :mod:`mdistiller.engine.diagnostics` for their definitions), y on a log scale;
* ``alignment_gradients.png``: ``grad_top1`` … ``grad_top6`` (distillers with a ``logit_loss``);
* ``accuracy.png``: test top-1 per epoch (validation top-1 too for runs with a validation split), and train loss.

Runs without a teacher have no ``alignment.csv``; they appear in ``accuracy.png`` only.
A figure with no data at all is not written. matplotlib runs on the Agg backend (no display).

    mdistiller-plot RUN_DIR [RUN_DIR ...] [--out DIR]       # = python -m mdistiller.plot

This module reads run folders only (:mod:`mdistiller.engine.records`, ``config.yaml``) and names
methods through the registry; it does not import the benchmark runner (the runner imports it). The
engine and matplotlib are imported when a figure is drawn, not to parse the command line.
"""
import math
import os
from collections import OrderedDict

from ._cli import ArgumentParser, add_debug_flag, console_entry, run_main

ALIGNMENT_LOSSES = ("kl", "tc", "nc", "w")
ALIGNMENT_GRADIENTS = tuple("grad_top{}".format(i) for i in range(1, 7))
TITLES = {
    "kl": "KL (T²·KL(p_t‖p_s))",
    "tc": "target-class term (DKD's TCKD)",
    "nc": "non-target term (DKD's NCKD)",
    "w": "Wasserstein term (WKD-L's)",
    "test_acc": "test top-1 (%)",
    "val_acc": "validation top-1 (%)",
    "train_loss": "train loss",
}
for _i in range(1, 7):
    TITLES["grad_top{}".format(_i)] = "∂loss/∂z_s, teacher's rank-{} class".format(_i)


def read_table(path):
    """A CSV of per-epoch numbers as ``{column: {epoch: float}}`` (empty when the file is missing)."""
    from .engine.records import read_csv

    out = {}
    for row in read_csv(path):
        for key, value in row.items():
            if key != "epoch" and isinstance(value, float):
                out.setdefault(key, {})[row["epoch"]] = value
    return out


def find_runs(path):
    """Run folders under ``path``: itself when it holds ``metrics.csv``, else its sub-folders that do (sorted)."""
    if os.path.exists(os.path.join(path, "metrics.csv")):
        return [path]
    found = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        if "metrics.csv" in files:
            found.append(root)
            dirs[:] = []
    return found


def group_series(run_dirs, filename, column):
    """``(epochs, mean, std)`` of ``column`` over the runs (at each epoch, the runs that logged it)."""
    per_epoch = OrderedDict()
    for run_dir in run_dirs:
        for epoch, value in read_table(os.path.join(run_dir, filename)).get(column, {}).items():
            per_epoch.setdefault(epoch, []).append(value)
    epochs = sorted(per_epoch)
    means, stds = [], []
    for epoch in epochs:
        values = [v for v in per_epoch[epoch] if math.isfinite(v)]
        if not values:
            means.append(float("nan"))
            stds.append(0.0)
            continue
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
        means.append(mean)
        stds.append(std)
    return epochs, means, stds


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (files only; no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_panels(groups, filename, columns, path, title, log_y=False):
    """One panel per column, one line per group; returns ``path`` or None when there is no data."""
    data = OrderedDict()
    for column in columns:
        lines = OrderedDict()
        for label, run_dirs in groups.items():
            epochs, means, stds = group_series(run_dirs, filename, column)
            if epochs:
                lines[label] = (epochs, means, stds)
        data[column] = lines
    if not any(data.values()):
        return None
    plt = pyplot()
    ncols = min(3, len(columns)) if len(columns) != 4 else 2
    nrows = int(math.ceil(len(columns) / float(ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    color_of = {label: colors[i % len(colors)] for i, label in enumerate(groups)}
    for ax, column in zip(axes.flat, columns):
        lines = data[column]
        ax.set_title(TITLES.get(column, column), fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        if not lines:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")
            continue
        positive = True
        for label, (epochs, means, stds) in lines.items():
            color = color_of[label]
            ax.plot(epochs, means, marker="o", markersize=2.5, linewidth=1.3, label=label, color=color)
            if any(s > 0 for s in stds):
                ax.fill_between(epochs, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                                color=color, alpha=0.15, linewidth=0)
            positive = positive and all((m > 0) for m in means if math.isfinite(m))
        if log_y and positive:
            ax.set_yscale("log")
        if len(set(e for epochs, _, _ in lines.values() for e in epochs)) <= 12:
            ax.set_xticks(sorted(set(e for epochs, _, _ in lines.values() for e in epochs)))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(columns):]:
        ax.axis("off")
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=11)
    rows_of_legend = int(math.ceil(len(labels) / 5.0))
    fig.tight_layout(rect=(0, 0.04 + 0.035 * rows_of_legend, 1, 0.96))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def accuracy_columns(groups):
    """The columns of ``accuracy.png``: test top-1 and train loss, and validation top-1 when a run has it."""
    with_val = any(group_series(run_dirs, "metrics.csv", "val_acc")[0] for run_dirs in groups.values())
    return ("test_acc", "val_acc", "train_loss") if with_val else ("test_acc", "train_loss")


def plot_groups(groups, out_dir, prefix=""):
    """The three figures for ``groups`` (``{label: [run_dir, ...]}``) in ``out_dir``; returns the paths written."""
    groups = OrderedDict((label, list(dirs)) for label, dirs in groups.items() if dirs)
    written = []
    seed_note = " (seed mean ± std)" if any(len(d) > 1 for d in groups.values()) else ""
    for name, filename, columns, title, log_y in (
        ("alignment_losses.png", "alignment.csv", ALIGNMENT_LOSSES,
         "Teacher-student alignment on the probe batch" + seed_note, True),
        ("alignment_gradients.png", "alignment.csv", ALIGNMENT_GRADIENTS,
         "Gradient of the distillation loss w.r.t. the student's logits" + seed_note, False),
        ("accuracy.png", "metrics.csv", accuracy_columns(groups), "Accuracy and loss" + seed_note, False),
    ):
        path = plot_panels(groups, filename, columns, os.path.join(out_dir, prefix + name), title, log_y=log_y)
        if path:
            written.append(path)
    return written


def run_label(run_dir):
    """``<method label> [<parent>/<folder>]`` of a run (label from its config.yaml and the registry), else the folder."""
    base = os.path.basename(os.path.normpath(run_dir))
    parent = os.path.basename(os.path.dirname(os.path.normpath(run_dir)))
    name = "{}/{}".format(parent, base) if parent else base
    try:
        import yaml
        from yacs.config import CfgNode

        from .registry import get_distiller_class

        with open(os.path.join(run_dir, "config.yaml")) as f:
            cfg = CfgNode(yaml.safe_load(f))  # the run's full config, as the trainer dumped it
        return "{} [{}]".format(get_distiller_class(cfg.DISTILLER.TYPE).label(cfg), name)
    except Exception:
        return name


def plot_run_dirs(paths, out_dir):
    """CLI helper: a run folder is one line; a folder of runs (e.g. a config's seeds) is one seed-mean line."""
    groups = OrderedDict()
    for path in paths:
        if not os.path.isdir(path):
            raise FileNotFoundError("Run folder not found: {} (give the folder mdistiller-train printed, or a sweep "
                                    "folder of mdistiller-benchmark)".format(path))
        runs = find_runs(path)
        if not runs:
            raise FileNotFoundError("No metrics.csv in {} or below: no epoch of a run has finished there".format(path))
        if len(runs) == 1 and os.path.normpath(runs[0]) == os.path.normpath(path):
            label = run_label(path)
        else:
            label = "{} (n={})".format(os.path.basename(os.path.normpath(path)), len(runs))
        while label in groups:
            label += "'"
        groups[label] = runs
    return plot_groups(groups, out_dir)


def main(argv=None):
    """CLI: ``mdistiller-plot RUN_DIR [RUN_DIR ...] [--out DIR]``; returns the paths written."""
    parser = ArgumentParser(prog="mdistiller-plot",
                            description="Alignment diagnostics and accuracy curves of runs (PNG).")
    parser.add_argument("runs", nargs="+", help="run folders (or folders of runs)")
    parser.add_argument("--out", default=".", help="output folder (default: current folder)")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    return run_main(_main, args, parser.prog)


def _main(args):
    paths = plot_run_dirs(args.runs, args.out)
    for path in paths:
        print(path)
    if not paths:
        print("nothing to plot (no metrics.csv / alignment.csv rows)")
    return paths


# `mdistiller-plot` (pyproject.toml): exits 0 on success.
cli = console_entry(main)


if __name__ == "__main__":
    main()
