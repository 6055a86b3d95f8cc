"""The runner's command line: override splitting, suite files, and the ``python -m`` entry points."""
import importlib.util
import os
import subprocess
import sys

import pytest

from mdistiller import benchmark as bm
from mdistiller.benchmark import cli as bench_cli
from tests.helpers.benchutil import write_config
from tests.helpers.runutil import REPO


def test_cli_splits_overrides_and_reads_suites(tmp_path):
    spec = importlib.util.spec_from_file_location("benchmark_cli", os.path.join(REPO, "tools", "benchmark.py"))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    options, opts = cli.split_overrides(["--configs", "a.yaml", "--seeds", "0", "1", "SOLVER.EPOCHS", "2"])
    assert options == ["--configs", "a.yaml", "--seeds", "0", "1"] and opts == ["SOLVER.EPOCHS", "2"]
    assert cli.split_overrides(["--seeds", "3", "--", "KD.TEMPERATURE", "2"]) == (["--seeds", "3"],
                                                                                ["KD.TEMPERATURE", "2"])
    config = write_config(tmp_path, "kd", "KD")
    suite = tmp_path / "suite.yaml"
    suite.write_text("configs: [kd.yaml]\nseeds: [0, 1]\nopts: [SOLVER.EPOCHS, 2]\n")
    loaded = bm.load_suite(str(suite))
    assert loaded["configs"] == [config] and loaded["seeds"] == [0, 1] and loaded["opts"] == ["SOLVER.EPOCHS", "2"]
    suite.write_text("configs: [kd.yaml]\nseed: [0]\n")
    with pytest.raises(ValueError, match="seed"):
        bm.load_suite(str(suite))


def test_tools_script_is_the_package_cli():
    spec = importlib.util.spec_from_file_location("benchmark_cli", os.path.join(REPO, "tools", "benchmark.py"))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    assert cli.main is bench_cli.main and cli.split_overrides is bench_cli.split_overrides


def test_options_written_after_the_overrides_are_the_runners():
    """``... KEY VALUE --poll 1`` (as ``--wait`` already was): options move back; values, even ``-1``, stay pairs."""
    options, opts = bench_cli.split_overrides(["--configs", "a.yaml", "SOLVER.EPOCHS", "1", "--poll", "0.5", "--wait",
                                               "KD.TEMPERATURE", "-1", "--seeds", "3", "4", "--jobs=2"])
    assert opts == ["SOLVER.EPOCHS", "1", "KD.TEMPERATURE", "-1"]
    args = bench_cli.build_parser().parse_args(options)
    assert (args.configs, args.poll, args.wait, args.seeds, args.jobs) == (["a.yaml"], 0.5, True, [3, 4], 2)


@pytest.mark.slow
def test_python_m_names_are_the_console_commands_and_answer_help(tmp_path):
    """``mdistiller-<name>`` is ``python -m mdistiller.<name>`` (dashes as underscores), from any folder, and its
    --help names the console command."""
    tomllib = pytest.importorskip("tomllib")
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p))
    for command, target in scripts.items():
        module = "mdistiller." + command[len("mdistiller-"):].replace("-", "_")
        assert target.split(":")[0] in (module, module + ".__main__"), (command, target)
        result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=str(tmp_path), env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("usage: {} ".format(command)), result.stdout[:200]
