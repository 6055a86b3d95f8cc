"""What a tuning sweep reports besides the benchmark's table: one row per study (trials, best validation top-1, the
chosen values, the search space) and one figure per study (``tune_<name>.png``: the trials' validation top-1 with
the best so far, and the importance of each knob by Optuna's fANOVA evaluator)."""
import os

from ..benchmark.tables import md_cell
from .space import describe

COLUMNS = ("Method", "Run", "Trials (complete / pruned / diverged)", "Best val top-1 (trial)", "Chosen values",
           "Search space", "Figure")


def _value(value):
    return "{:.4g}".format(value) if isinstance(value, float) else str(value)


def tuning_markdown(studies, settings, figures=None):
    """The tuning section of ``results.md``."""
    from optuna.trial import TrialState

    figures = figures or {}
    pruner = "none" if settings["pruner"] == "none" else "MedianPruner({}) on each epoch's validation top-1".format(
        ", ".join("{}={}".format(k, v) for k, v in sorted(settings["pruner_options"].items())))
    lines = [
        "## Tuning on the validation split",
        "",
        "{} trials per method; TPE sampler (seed {}, {} random start-up trials); pruner: {}. Each trial is a training "
        "run at EXPERIMENT.SEED {} on the training split; its value is its best validation top-1 over the epochs. The "
        "best trial's values were retrained with the seeds above and the test set evaluated once per run.".format(
            settings["trials"], settings["seed"], settings["startup_trials"], pruner,
            studies[0].trial_seed if studies else "—"),
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|---|---|---:|---:|---|---|---|",
    ]
    for study in studies:
        if not study.tuned:
            cells = [study.label, study.name, "— (no search space)", "—", "as configured", "—", "—"]
        else:
            counts = [len(study.trials(state)) for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)]
            best = study.best()
            cells = [study.label, study.name, "{} ({})".format(sum(counts), " / ".join(map(str, counts))),
                     "{:.2f} ({})".format(best[0], best[1]) if best else "—",
                     ", ".join("{} {}".format(k, _value(v)) for k, v in best[2].items()) if best else "—",
                     describe(study.space), os.path.basename(figures.get(study.name, "")) or "—"]
        lines.append("| " + " | ".join(md_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def study_plots(studies, sweep_dir, echo=print):
    """``tune_<name>.png`` for each study -> ``{name: path}`` (none without matplotlib)."""
    try:
        from ..plot import pyplot

        plt = pyplot()
    except ImportError as e:
        echo("tuning figures skipped: {}".format(e))
        return {}
    return {study.name: plot_study(plt, study, os.path.join(sweep_dir, "tune_{}.png".format(study.name)))
            for study in studies}


def plot_study(plt, study, path):
    """History (each trial's validation top-1, the best so far, pruned and diverged trials marked) and importances."""
    import optuna
    from optuna.trial import TrialState

    fig, (history, importance) = plt.subplots(1, 2, figsize=(10, 3.6))
    trials = sorted(study.trials(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL), key=lambda t: t.number)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    history.plot([t.number for t in complete], [t.value for t in complete], "o", color="C0", label="trial")
    best, best_so_far = [], None
    for t in complete:
        best_so_far = t.value if best_so_far is None else max(best_so_far, t.value)
        best.append(best_so_far)
    history.step([t.number for t in complete], best, where="post", color="C1", label="best so far")
    pruned = [t for t in trials if t.state == TrialState.PRUNED and t.intermediate_values]
    if pruned:
        history.plot([t.number for t in pruned], [t.intermediate_values[max(t.intermediate_values)] for t in pruned],
                     "x", color="grey", label="pruned (last reported)")
    history.xaxis.get_major_locator().set_params(integer=True)  # trial numbers
    history.set_xlabel("trial")
    history.set_ylabel("best validation top-1 (%)")
    history.set_title("{}: history".format(study.label), fontsize=10)
    history.legend(fontsize=8)
    history.grid(alpha=0.3)
    try:
        scores = optuna.importance.get_param_importances(study.study)
    except Exception as e:  # fANOVA needs a few complete trials with distinct values
        scores = {}
        importance.text(0.5, 0.5, "importance not available:\n{}".format(str(e).splitlines()[0][:60] if str(e) else
                                                                           type(e).__name__),
                        ha="center", va="center", fontsize=8, transform=importance.transAxes)
    if scores:
        names = list(scores)[::-1]
        importance.barh(names, [scores[n] for n in names], color="C2")
        importance.tick_params(axis="y", labelsize=7)
    importance.set_title("importance (fANOVA, {} complete trials)".format(len(complete)), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
