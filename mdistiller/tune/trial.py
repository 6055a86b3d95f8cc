"""One trial of a study: ``python -m mdistiller.tune.trial --cfg <trial>/benchmark_cfg.yaml [--resume]``.

The training run of ``mdistiller.train`` (same trainer, same run folder), plus a sink that reports each epoch's
validation top-1 to the trial's study (the run folder's ``optuna_trial.json`` names the journal, the study and the
trial) and stops the run when the study's pruner says so: it then writes ``pruned.json`` and ends with a line
saying so (exit code 0; the tuner reads the file).
"""
import json
import os
import sys

from .._cli import ArgumentParser, add_debug_flag, run_main

PROG = "mdistiller-tune"  # its one-line errors are the tuner's (and the runner reads them as the reason)


class TrialPruned(Exception):
    """The study's pruner stopped this trial."""


def make_reporter(info, log_path):
    """The :class:`~mdistiller.engine.logging.Sink` reporting to the trial of ``info`` (an ``optuna_trial.json``)."""
    import optuna

    from ..engine.logging import Sink
    from .study import PRUNED_FILE, journal_storage, make_pruner

    class PruningReporter(Sink):
        def __init__(self):
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            storage = journal_storage(info["journal"])
            study = optuna.load_study(study_name=info["study"], storage=storage, pruner=make_pruner(info))
            self.trial = optuna.trial.Trial(study, info["trial_id"])
            self.reported = set(storage.get_trial(info["trial_id"]).intermediate_values)  # a resumed trial's epochs

        def log_epoch(self, record, diagnostics):
            epoch, value = int(record["epoch"]), float(record["val_acc"])
            if epoch not in self.reported:
                self.trial.report(value, epoch)
                self.reported.add(epoch)
            if self.trial.should_prune():
                with open(os.path.join(log_path, PRUNED_FILE), "w") as f:
                    json.dump({"epoch": epoch, "val_acc": value}, f)
                raise TrialPruned("trial {} of study {} pruned at epoch {} (validation top-1 {:.2f})".format(
                    info["number"], info["study"], epoch, value))

    return PruningReporter()


def _main(args):
    from ..engine.cfg import get_cfg
    from ..engine.naming import run_dir
    from ..train import train_and_report
    from .study import TRIAL_FILE

    cfg = get_cfg(args.cfg)
    log_path = run_dir(cfg)
    path = os.path.join(log_path, TRIAL_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError("{} not found: a trial is launched by mdistiller-tune, which writes it".format(path))
    with open(path) as f:
        info = json.load(f)
    try:
        return train_and_report(cfg, log_path, resume=args.resume, sinks=[make_reporter(info, log_path)], prog=PROG)
    except TrialPruned as e:
        print("{}: {}".format(PROG, e), file=sys.stderr)
        return None


def main(argv=None):
    parser = ArgumentParser(prog=PROG, description="One trial of an mdistiller-tune study (launched by it).")
    parser.add_argument("--cfg", required=True, help="the trial's benchmark_cfg.yaml")
    parser.add_argument("--resume", action="store_true", help="continue the trial from its folder's latest")
    add_debug_flag(parser)
    return run_main(_main, parser.parse_args(argv), PROG)


if __name__ == "__main__":
    main()
