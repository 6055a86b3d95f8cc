"""A run folder left by another config is never counted as the planned run: it is renamed and the run starts afresh."""
import json
import os
import shutil

from mdistiller.benchmark import RUN_CFG, pending_runs, plan_runs, run_config
from tests.helpers.benchutil import write_config


def finish(run, sweep_dir):
    """Write what a finished run leaves: its benchmark config, one logged epoch and a summary."""
    os.makedirs(run.run_dir, exist_ok=True)
    with open(os.path.join(run.run_dir, RUN_CFG), "w") as f:
        f.write(run_config(run, sweep_dir))
    with open(os.path.join(run.run_dir, "metrics.csv"), "w") as f:
        f.write("epoch,test_acc\n1,50.0\n")
    with open(os.path.join(run.run_dir, "summary.json"), "w") as f:
        json.dump({"epochs": run.epochs}, f)


def test_changed_config_retires_the_old_run_folder(tmp_path):
    config = write_config(tmp_path, "kd", "KD")
    sweep_dir = str(tmp_path / "sweep")
    opts = ["SOLVER.EPOCHS", "1"]
    (run,) = plan_runs([config], [0], sweep_dir, opts)
    finish(run, sweep_dir)
    assert pending_runs(plan_runs([config], [0], sweep_dir, opts)) == []

    # the sweep folder moved: LOG.PREFIX differs, the run is still the same
    moved_dir = str(tmp_path / "moved")
    shutil.move(sweep_dir, moved_dir)
    assert pending_runs(plan_runs([config], [0], moved_dir, opts)) == []

    messages = []
    (changed,) = plan_runs([config], [0], moved_dir, opts + ["SOLVER.LR", "0.1"])
    assert pending_runs([changed], echo=messages.append) == [changed]
    assert not os.path.exists(changed.run_dir)
    retired = changed.run_dir + ".replaced-1"
    with open(os.path.join(retired, RUN_CFG)) as f:
        assert "LR: 0.05" in f.read()
    assert len(messages) == 1 and retired in messages[0] and "config changed" in messages[0]
    # a second change keeps the first retired folder
    finish(changed, moved_dir)
    (again,) = plan_runs([config], [0], moved_dir, opts + ["SOLVER.LR", "0.2"])
    assert pending_runs([again]) == [again]
    assert os.path.isdir(changed.run_dir + ".replaced-2") and os.path.isdir(retired)
