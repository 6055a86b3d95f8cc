"""Done when: every command of README.md runs as written from an empty folder after ``pip install`` of the wheel.

The test reads every ``bash`` block of the README and takes each line that runs a console command (``mdistiller-…``,
``python -m mdistiller…``, ``torchrun … -m mdistiller…``). Every such line must be a key of :data:`README_COMMANDS`,
which says how the test runs it: :data:`RUN` as written; :class:`Shortened` as written plus a few words that cut its
time (fewer epochs or seeds), where the words are the only difference; or :class:`Needs` what this machine does not
have (a dataset, a GPU, a cluster, the network, an optional extra), in which case the configs it names are checked
to ship in the wheel. A new README command fails the test until it is added here, and an entry whose command left
the README fails it too. The commands run in README order in one empty folder, in a fresh virtual environment
holding the wheel (its dependencies come from this interpreter).
"""
import os
import re
import shlex
import site
import subprocess
import sys
from collections import namedtuple

import pytest

from tests.helpers.runutil import REPO, read_metrics

TEACHER = "demo_runs/digits_demo/teacher,resnet20/student_best"

RUN = "run as written"
# run as written + ``extra`` words; ``moved``: (folder it made, folder the README's next commands read), when the
# extra words are in its run folder's name
Shortened = namedtuple("Shortened", ["extra", "why", "moved"])
Shortened.__new__.__defaults__ = (None,)
Needs = namedtuple("Needs", ["what"])  # not run here: ``what`` it needs that this machine lacks

README_COMMANDS = {
    # First steps (from any folder)
    "mdistiller-train --help": RUN,
    "mdistiller-train --cfg digits/vanilla.yaml SOLVER.EPOCHS 1": RUN,
    'mdistiller-eval -c "demo_runs/digits_demo/vanilla,resnet8,SOLVER.EPOCHS:1"': RUN,
    "mdistiller-train --cfg digits/kd.yaml --print-config": RUN,
    "mdistiller-train --cfg digits/teacher.yaml": Shortened(
        ["SOLVER.EPOCHS", "1"], "8 epochs take 1-2 minutes",
        ("demo_runs/digits_demo/teacher,resnet20,SOLVER.EPOCHS:1", os.path.dirname(TEACHER))),
    'mdistiller-benchmark --configs digits/kd.yaml digits/dkd.yaml --seeds 0 1 DISTILLER.TEACHER_CKPT "{}"'.format(
        TEACHER): Shortened(["SOLVER.EPOCHS", "1", "--seeds", "0", "--jobs", "2"], "30 epochs x 4 runs"),
    "mdistiller-plot benchmark_runs/kd benchmark_runs/dkd": RUN,
    'mdistiller-cost-matrix --teacher resnet20 --dataset digits --ckpt "{}"'.format(TEACHER): RUN,
    "mdistiller-download --list": RUN,
    # Usage (CIFAR-100, ImageNet)
    "mdistiller-download": Needs("the network (GitHub release files)"),
    "mdistiller-train --cfg configs/cifar100/dkd/res32x4_res8x4.yaml --dry-run": Needs("CIFAR-100 and the teachers"),
    "mdistiller-train --cfg configs/cifar100/dkd/res32x4_res8x4.yaml": Needs("CIFAR-100, the teachers, a GPU"),
    "mdistiller-train --cfg configs/cifar100/wkl/res32x4_res8x4.yaml SOLVER.BATCH_SIZE 128 EXPERIMENT.SEED 1":
        Needs("CIFAR-100, the teachers, a GPU"),
    "mdistiller-train --cfg configs/cifar100/wkl/res32x4_res8x4.yaml --resume": Needs("a crashed CIFAR-100 run"),
    "torchrun --nproc_per_node=4 -m mdistiller.train --cfg configs/imagenet/r34_r18/wkd_l.yaml":
        Needs("ImageNet and 4 GPUs"),
    "mdistiller-eval -m resnet32x4": Needs("CIFAR-100 and the teachers"),
    "mdistiller-eval -m resnet8x4 -c output/cifar100_baselines/dkd,res32x4,res8x4/student_best":
        Needs("a finished CIFAR-100 run"),
    "mdistiller-cost-matrix --teacher resnet32x4 --dataset cifar100": Needs("CIFAR-100 and the teachers"),
    # Comparing methods
    "mdistiller-benchmark --configs configs/cifar100/{kd,dkd,wkd_l,wkl}/res32x4_res8x4.yaml --seeds 0 1 2 --jobs 1":
        Needs("CIFAR-100, the teachers, the WKD cost matrix, a GPU"),
    "mdistiller-plot benchmark_runs/kd_res32x4_res8x4 benchmark_runs/wkl_res32x4_res8x4": Needs("that CIFAR-100 sweep"),
    # Sweeps on SLURM
    "mdistiller-benchmark --suite suite.yaml --launcher slurm --partition gpu --gpus-per-job 1 --cpus-per-job 8 "
    "--time 12:00:00 --account myproj": Needs("a SLURM cluster and a suite file"),
    "mdistiller-benchmark --suite suite.yaml --launcher slurm --slurm-config slurm.yaml":
        Needs("a SLURM cluster and a suite file"),
    "mdistiller-benchmark --suite suite.yaml --launcher slurm --wait --poll 60": Needs("a SLURM cluster and a suite file"),
    "mdistiller-benchmark --suite suite.yaml --collect-only": Needs("a suite file and its runs"),
    # Object detection (COCO) without Detectron2
    "mdistiller-train --cfg configs/coco/vanilla/r101.yaml": Needs("COCO 2017 and GPUs"),
    "mdistiller-download fasterrcnn_resnet50_fpn_coco": Needs("the network (torchvision's weights)"),
    "mdistiller-cost-matrix --cfg configs/coco/vanilla/r101.yaml --teacher ResNet101 "
    "--ckpt output/coco_baselines/teacher,r101/student_best --max-per-class 500": Needs("COCO and the R-101 teacher"),
    "torchrun --nproc_per_node=8 -m mdistiller.train --cfg configs/coco/dkd/r101_r18.yaml":
        Needs("COCO, the R-101 teacher, 8 GPUs"),
    "mdistiller-benchmark --configs configs/coco/{vanilla/r18,dkd/r101_r18,wkd_l/r101_r18}.yaml --seeds 0 1 2":
        Needs("COCO, the R-101 teacher and its cost matrix, GPUs"),
    "mdistiller-eval -c output/coco_baselines/dkd,r101,r18": Needs("a finished COCO run"),
    "mdistiller-train --cfg configs/coco/kd/r101_r18.yaml --dry-run": Needs("COCO and the R-101 teacher"),
    # the generated set: minutes per run on a CPU, hours for the sweep; tests/detection trains these configs on a
    # 4-image set (resume, torchrun) and computes a cost matrix with the same command
    "mdistiller-train --cfg shapes/teacher.yaml": Needs("about 9 minutes on 2 CPU cores"),
    "mdistiller-cost-matrix --cfg shapes/teacher.yaml --teacher ResNet50 "
    "--ckpt output/shapes_detection/teacher,r50/student_best --max-per-class 200": Needs("the trained shapes teacher"),
    "mdistiller-benchmark --configs shapes/{vanilla,kd,dkd,fitnet,reviewkd,reviewkd_dkd,wkd_l,wkd_f,wkd_lf}.yaml "
    "--seeds 0 1 2 --jobs 2 --name shapes": Needs("about 75 minutes of 2 CPU cores (27 runs) and the shapes teacher"),
    # Tuned comparisons
    "mdistiller-tune --suite tune_digits.yaml": Shortened(
        ["--trials", "1", "--seeds", "0", "--no-plots", "SOLVER.EPOCHS", "1"],
        "8 trials x 3 methods and 4 configs x 5 seeds, 30 epochs each (the teacher's 8 epochs stay)"),
    "mdistiller-tune --suite tune_cifar100.yaml --launcher slurm --partition gpu --time 8:00:00":
        Needs("CIFAR-100, the teachers, the WKD cost matrix, a SLURM cluster with GPUs"),
    "mdistiller-tune --suite tune_digits.yaml --dry-run": RUN,
}


def is_command(words):
    return bool(words) and (words[0].startswith("mdistiller-") or (
        words[0] in ("python", "python3", "torchrun") and any(w.startswith("mdistiller") for w in words[1:3] + words[
            words.index("-m") + 1:words.index("-m") + 2] if "-m" in words)))


def readme_commands():
    """The console-command lines of README.md's bash blocks, as word lists (continuations joined, comments cut)."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read()
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if is_command(words):
                found.append(words)
    return found


def expand_braces(word):
    """``a/{x,y}/b`` -> ``[a/x/b, a/y/b]`` (bash's brace expansion, one level)."""
    match = re.search(r"\{([^{}]*,[^{}]*)\}", word)
    if not match:
        return [word]
    return [word[:match.start()] + part + word[match.end():] for part in match.group(1).split(",")]


def configs_named(words):
    """The config names a command line gives (after --cfg, and after --configs up to the next option or key)."""
    names = []
    for i, word in enumerate(words):
        if word == "--cfg":
            names += expand_braces(words[i + 1])
        elif word == "--configs":
            for value in words[i + 1:]:
                if value.startswith("-") or re.match(r"^[A-Z][A-Z0-9_]*\.", value):
                    break
                names += expand_braces(value)
    return names


def test_every_readme_command_is_covered_and_every_entry_is_in_the_readme():
    readme = [tuple(words) for words in readme_commands()]
    table = {tuple(shlex.split(line)): line for line in README_COMMANDS}
    assert [" ".join(w) for w in readme if w not in table] == [], "README commands this test does not cover"
    assert [line for words, line in table.items() if words not in readme] == [], "entries no longer in the README"


def _run(cmd, cwd, env, timeout=600):
    result = subprocess.run(cmd, cwd=str(cwd), env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, "{}\n{}\n{}".format(cmd, result.stdout[-3000:], result.stderr[-3000:])
    return result


@pytest.mark.slow
def test_readme_commands_run_from_an_empty_folder_after_installing_the_wheel(wheel, tmp_path):
    venv, work = tmp_path / "venv", tmp_path / "work"
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], tmp_path, os.environ)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = str(bindir / "python")
    # The dependencies (torch, ...) come from this interpreter's site-packages, after the new venv's own:
    # a plain .pth line adds the folder without running the .pth files there (no editable mdistiller).
    own = subprocess.run([python, "-c", "import site; print(site.getsitepackages()[0])"], capture_output=True,
                         text=True, check=True).stdout.strip()
    with open(os.path.join(own, "zz_parent_site_packages.pth"), "w") as f:
        f.write("\n".join(p for p in site.getsitepackages() if os.path.isdir(p)) + "\n")
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], tmp_path, os.environ)

    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", MPLBACKEND="Agg", PATH=str(bindir) + os.pathsep + env.get("PATH", ""))
    where = _run([python, "-c", "import mdistiller; print(mdistiller.__file__)"], work, env).stdout.strip()
    assert where.startswith(str(venv)), where  # the wheel's package, not the repository's

    printed, needed = {}, []
    for words in readme_commands():
        line = " ".join(words)
        how = README_COMMANDS[next(k for k in README_COMMANDS if shlex.split(k) == words)]
        if isinstance(how, Needs):
            needed += configs_named(words)
            continue
        extra = how.extra if isinstance(how, Shortened) else []
        argv = [str(bindir / words[0])] + words[1:] + extra
        printed[line] = _run(argv, work, env, timeout=900).stdout
        if isinstance(how, Shortened) and how.moved:
            os.rename(str(work / how.moved[0]), str(work / how.moved[1]))

    # what the commands left is what the README says they leave
    vanilla = work / "demo_runs" / "digits_demo" / "vanilla,resnet8,SOLVER.EPOCHS:1"
    assert "-> ./demo_runs/digits_demo/vanilla,resnet8,SOLVER.EPOCHS:1" in printed[
        "mdistiller-train --cfg digits/vanilla.yaml SOLVER.EPOCHS 1"]
    assert "top-1: {:.2f}".format(float(read_metrics(vanilla)[0]["test_acc"])) in printed[
        "mdistiller-eval -c demo_runs/digits_demo/vanilla,resnet8,SOLVER.EPOCHS:1"]
    assert "methods (DISTILLER.TYPE):" in printed["mdistiller-train --help"]
    assert (work / TEACHER).is_file()
    for name in ("kd", "dkd"):
        assert len(read_metrics(work / "benchmark_runs" / name / "seed0")) == 1
    assert (work / "benchmark_runs" / "results.md").is_file()
    assert (work / "accuracy.png").is_file() and (work / "alignment_losses.png").is_file()
    assert (work / "wkd_cost_matrix" / "digits" / "resnet20" / "linear_cka.pth").is_file()
    assert "wkd_cost_cifar100_resnet32x4" in printed["mdistiller-download --list"]
    assert not (work / "configs").exists()
    tuned = work / "tune_runs" / "tune_digits"
    assert "KD (kd): KD.TEMPERATURE [1, 8]" in printed["mdistiller-tune --suite tune_digits.yaml --dry-run"]
    assert "## Tuning on the validation split" in printed["mdistiller-tune --suite tune_digits.yaml"]
    assert len(read_metrics(tuned / "wkd_l" / "seed0")) == 1 and (tuned / "tuned" / "kd.yaml").is_file()
    # the configs of the commands that need data ship in the wheel
    check = "from mdistiller.catalogue import resolve_config_path as r; import sys; [r(c) for c in sys.argv[1:]]"
    _run([python, "-c", check] + sorted(set(needed)), work, env)
