"""Every user mistake of every console command: one line naming the file, key or value and what to do, exit code 2,
and nothing left behind that was not there before; ``--debug`` keeps the traceback.

Each case runs the command's ``main(argv)`` in this process, from an empty folder; the bad files (a truncated or
foreign checkpoint, yaml with a tab, a syntax error, a plain string, nothing at all, damaged CIFAR pickles) are made
once for the module. Most cases stop before any data or model is built.
"""
import os
import urllib.error

import pytest

from mdistiller import cost_matrix, download, eval as evaluate, plot, train
from mdistiller.benchmark import cli as benchmark
from mdistiller.tune import cli as tune
from tests.helpers.datagen import make_cifar100_folder
from tests.helpers.runutil import random_teacher_ckpt

MAINS = {"mdistiller-train": train.main, "mdistiller-eval": evaluate.main, "mdistiller-benchmark": benchmark.main,
         "mdistiller-plot": plot.main, "mdistiller-cost-matrix": cost_matrix.main,
         "mdistiller-download": download.main, "mdistiller-tune": tune.main}
QUICK = ["SOLVER.EPOCHS", "1", "EXPERIMENT.DEVICE", "cpu"]
TEACHER = ["DISTILLER.TEACHER", "resnet8", "DISTILLER.TEACHER_CKPT"]  # + a checkpoint file
DIGITS = ["-m", "resnet8", "-d", "digits", "--device", "cpu", "--workers", "0", "-c"]  # eval; + a checkpoint file
MATRIX = ["--teacher", "resnet8", "--dataset", "digits", "--device", "cpu", "--ckpt"]  # cost-matrix; + a file
CIFAR = ["DATASET.TYPE", "cifar100", "DATASET.DOWNLOAD", "False", "DATASET.ROOT"]  # + {F}/cifar (damaged pickles)

# (command, case, argv with {F} = the folder of bad files, words the one line must contain)
CASES = [
    ("mdistiller-train", "epochs-0", ["--cfg", "digits/vanilla.yaml", "SOLVER.EPOCHS", "0"], ["SOLVER.EPOCHS is 0", "at least 1"]),
    ("mdistiller-train", "epochs-negative", ["--cfg", "digits/vanilla.yaml", "SOLVER.EPOCHS", "-1"], ["SOLVER.EPOCHS is -1"]),
    ("mdistiller-train", "batch-0", ["--cfg", "digits/vanilla.yaml", "SOLVER.BATCH_SIZE", "0"], ["SOLVER.BATCH_SIZE is 0"]),
    ("mdistiller-train", "truncated-teacher", ["--cfg", "digits/kd.yaml"] + QUICK + TEACHER + ["{F}/truncated.pth"],
     ["Cannot read", "truncated.pth", "not a PyTorch checkpoint, or a damaged one"]),
    ("mdistiller-train", "not-a-checkpoint", ["--cfg", "digits/kd.yaml"] + QUICK + TEACHER + ["{F}/notes.pth"],
     ["Cannot read", "notes.pth"]),
    ("mdistiller-train", "teacher-of-another-model", ["--cfg", "digits/kd.yaml"] + QUICK + TEACHER + ["{F}/resnet20.pth"],
     ["resnet20.pth holds the weights of a resnet20", "DISTILLER.TEACHER resnet8"]),
    ("mdistiller-train", "yaml-tab", ["--cfg", "{F}/tab.yaml"], ["tab.yaml, line 2, column 1", "tabs"]),
    ("mdistiller-train", "yaml-syntax", ["--cfg", "{F}/syntax.yaml"], ["syntax.yaml, line 3, column 1", "fix the yaml"]),
    ("mdistiller-train", "yaml-string", ["--cfg", "{F}/string.yaml"], ["string.yaml holds a plain string"]),
    ("mdistiller-train", "yaml-empty", ["--cfg", "{F}/empty.yaml"], ["empty.yaml is empty"]),
    ("mdistiller-train", "cfg-folder", ["--cfg", "{F}"], ["Is a directory"]),
    ("mdistiller-train", "cfg-missing", ["--cfg", "nope.yaml"], ["Config file not found: nope.yaml", "--help"]),
    ("mdistiller-train", "prefix-not-writable", ["--cfg", "digits/vanilla.yaml", "LOG.PREFIX", "{F}/notes.pth/out"],
     ["Cannot create the run folder", "LOG.PREFIX", "is a file"]),
    ("mdistiller-train", "damaged-cifar", QUICK + ["DISTILLER.STUDENT", "resnet8"] + CIFAR + ["{F}/cifar"],
     ["cifar-100-python", "damaged", "download the dataset again"]),
    ("mdistiller-train", "resume-without-run", ["--cfg", "digits/vanilla.yaml", "--resume"], ["Nothing to resume in"]),
    ("mdistiller-train", "unknown-method", ["--cfg", "digits/vanilla.yaml", "DISTILLER.TYPE", "KDD"], ["Unknown distiller 'KDD'", "Valid names"]),
    ("mdistiller-train", "unknown-model", ["--cfg", "digits/vanilla.yaml", "DISTILLER.STUDENT", "resnet9"], ["Unknown model 'resnet9'"]),
    ("mdistiller-train", "key-typo", ["--cfg", "digits/vanilla.yaml", "SOLVER.EPOCH", "1"], ["Non-existent config key: SOLVER.EPOCH"]),
    ("mdistiller-train", "value-type", ["--cfg", "digits/vanilla.yaml", "SOLVER.EPOCHS", "many"], ["SOLVER.EPOCHS"]),
    ("mdistiller-train", "odd-overrides", ["--cfg", "digits/vanilla.yaml", "SOLVER.EPOCHS"], ["KEY VALUE pairs"]),
    ("mdistiller-train", "device", ["--cfg", "digits/vanilla.yaml", "EXPERIMENT.DEVICE", "gpu"], ["'gpu'", "not a device"]),
    ("mdistiller-train", "unknown-option", ["--cfg", "digits/vanilla.yaml", "--epochs", "3"], ["unrecognized arguments: --epochs"]),
    ("mdistiller-eval", "truncated", DIGITS + ["{F}/truncated.pth"], ["Cannot read", "truncated.pth"]),
    ("mdistiller-eval", "not-a-checkpoint", DIGITS + ["{F}/notes.pth"], ["Cannot read", "notes.pth"]),
    ("mdistiller-eval", "another-model", DIGITS + ["{F}/resnet20.pth"], ["holds the weights of a resnet20", "-m resnet8"]),
    ("mdistiller-eval", "another-class-count", DIGITS + ["{F}/resnet8_100.pth"], ["trained for 100 classes", "has 10"]),
    ("mdistiller-eval", "missing", DIGITS + ["nowhere.pth"], ["Checkpoint not found", "nowhere.pth"]),
    ("mdistiller-eval", "folder-without-checkpoint", DIGITS + ["{F}/cifar"], ["No checkpoint in", "cifar"]),
    ("mdistiller-eval", "damaged-cifar", ["-m", "resnet8", "-d", "cifar100", "--root", "{F}/cifar", "--workers", "0",
                                          "-c", "{F}/resnet8_100.pth"], ["cifar-100-python", "damaged"]),
    ("mdistiller-eval", "unknown-model", ["-m", "resnet9", "-c", "pretrain"], ["Unknown model 'resnet9'"]),
    ("mdistiller-eval", "device", DIGITS + ["{F}/resnet8_10.pth", "--device", "gpu"], ["'gpu'", "not a device"]),
    ("mdistiller-benchmark", "yaml-tab", ["--configs", "{F}/tab.yaml"], ["tab.yaml, line 2, column 1"]),
    ("mdistiller-benchmark", "yaml-syntax", ["--configs", "{F}/syntax.yaml"], ["syntax.yaml, line 3"]),
    ("mdistiller-benchmark", "yaml-string", ["--configs", "{F}/string.yaml"], ["string.yaml holds a plain string"]),
    ("mdistiller-benchmark", "yaml-empty", ["--configs", "digits/vanilla.yaml", "{F}/empty.yaml"], ["empty.yaml is empty"]),
    ("mdistiller-benchmark", "epochs-0", ["--configs", "digits/vanilla.yaml", "SOLVER.EPOCHS", "0"],
     ["digits/vanilla.yaml: SOLVER.EPOCHS is 0"]),
    ("mdistiller-benchmark", "batch-0", ["--configs", "digits/vanilla.yaml", "SOLVER.BATCH_SIZE", "0"], ["SOLVER.BATCH_SIZE is 0"]),
    ("mdistiller-benchmark", "no-teacher-yet", ["--configs", "digits/vanilla.yaml", "digits/kd.yaml", "digits/dkd.yaml"],
     ["digits/kd.yaml: No released resnet20 teacher", "mdistiller-train --cfg digits/teacher.yaml",
      "DISTILLER.TEACHER_CKPT demo_runs/digits_demo/teacher,resnet20/student_best"]),
    ("mdistiller-benchmark", "teacher-file-missing", ["--configs", "digits/kd.yaml", "DISTILLER.TEACHER_CKPT", "t.pth"],
     ["teacher checkpoint t.pth does not exist", "mdistiller-train --cfg digits/teacher.yaml"]),
    ("mdistiller-benchmark", "out-not-writable", ["--configs", "digits/vanilla.yaml", "--out", "{F}/notes.pth/runs"],
     ["notes.pth", "is a file"]),
    ("mdistiller-benchmark", "suite-yaml", ["--suite", "{F}/tab.yaml"], ["tab.yaml, line 2"]),
    ("mdistiller-benchmark", "suite-empty", ["--suite", "{F}/empty.yaml"], ["empty.yaml is empty"]),
    ("mdistiller-benchmark", "suite-keys", ["--suite", "{F}/suite.yaml"], ["Unknown keys in suite", "config"]),
    ("mdistiller-benchmark", "slurm-config", ["--configs", "digits/vanilla.yaml", "--launcher", "slurm",
                                              "--slurm-config", "{F}/string.yaml"], ["string.yaml holds a plain string"]),
    ("mdistiller-benchmark", "config-missing", ["--configs", "nope.yaml"], ["Config file not found: nope.yaml"]),
    ("mdistiller-benchmark", "key-typo", ["--configs", "digits/vanilla.yaml", "SOLVER.EPOCHZ", "1"],
     ["Non-existent config key: SOLVER.EPOCHZ"]),
    ("mdistiller-benchmark", "odd-overrides", ["--configs", "digits/vanilla.yaml", "SOLVER.EPOCHS"], ["KEY VALUE pairs"]),
    ("mdistiller-benchmark", "unknown-option", ["--configs", "digits/vanilla.yaml", "SOLVER.EPOCHS", "1", "--bogus"],
     ["unrecognized arguments: --bogus"]),
    ("mdistiller-plot", "missing-folder", ["nowhere"], ["Run folder not found: nowhere"]),
    ("mdistiller-plot", "folder-without-runs", ["{F}/cifar"], ["No metrics.csv in", "cifar"]),
    ("mdistiller-cost-matrix", "unknown-teacher", ["--teacher", "resnet999", "--dataset", "cifar100"], ["Unknown model 'resnet999'"]),
    ("mdistiller-cost-matrix", "cifar-missing", ["--teacher", "resnet8", "--ckpt", "{F}/resnet8_100.pth", "--dataset",
                                                 "cifar100"], ["CIFAR-100", "not found", "Automatic download failed"]),
    ("mdistiller-cost-matrix", "damaged-cifar", ["--teacher", "resnet8", "--ckpt", "{F}/resnet8_100.pth", "--dataset",
                                                 "cifar100", "--opts", "DATASET.ROOT", "{F}/cifar"], ["damaged"]),
    ("mdistiller-cost-matrix", "truncated", MATRIX + ["{F}/truncated.pth"], ["Cannot read", "truncated.pth"]),
    ("mdistiller-cost-matrix", "not-a-checkpoint", MATRIX + ["{F}/notes.pth"], ["Cannot read", "notes.pth"]),
    ("mdistiller-cost-matrix", "another-model", MATRIX + ["{F}/resnet20.pth"], ["holds the weights of a resnet20"]),
    ("mdistiller-cost-matrix", "key-typo", MATRIX + ["{F}/resnet8_10.pth", "--opts", "DATASET.ROOTS", "x"],
     ["Non-existent config key: DATASET.ROOTS"]),
    ("mdistiller-cost-matrix", "out-not-writable", ["--teacher", "resnet8", "--ckpt", "{F}/resnet8_10.pth", "--dataset",
                                                    "digits", "--method", "fc", "--num-classes", "10", "--out",
                                                    "{F}/notes.pth/m.pth"], ["Cannot create the output file", "--out", "is a file"]),
    ("mdistiller-cost-matrix", "missing-argument", ["--teacher", "resnet8"], ["give the dataset: --dataset NAME"]),
    ("mdistiller-download", "unknown-file", ["nosuch"], ["unknown file or group 'nosuch'", "cifar_teachers"]),
    ("mdistiller-download", "manifest-missing", ["--manifest", "nowhere.json"], ["No such file", "nowhere.json"]),
    ("mdistiller-download", "manifest-not-json", ["--manifest", "{F}/tab.yaml"], ["tab.yaml: not a JSON manifest"]),
    ("mdistiller-download", "mirror", ["--mirror", "https://x", "--list"], ["--mirror expects PREFIX=NEWPREFIX"]),
    ("mdistiller-tune", "suite-missing", ["--suite", "nope.yaml"], ["Suite file not found: nope.yaml", "tune_digits.yaml"]),
    ("mdistiller-tune", "suite-tab", ["--suite", "{F}/tab.yaml"], ["tab.yaml, line 2, column 1"]),
    ("mdistiller-tune", "no-split", ["--configs", "digits/vanilla.yaml"], ["set DATASET.VAL_SPLIT"]),
    ("mdistiller-tune", "split-type", ["--configs", "digits/vanilla.yaml", "DATASET.VAL_SPLIT", "2.5"],
     ["DATASET.VAL_SPLIT 2.5", "whole number of images per class"]),
]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_files")
    good = random_teacher_ckpt(folder / "resnet8_10.pth", "resnet8", 10)
    with open(good, "rb") as f:
        data = f.read()
    (folder / "truncated.pth").write_bytes(data[: len(data) // 2])
    (folder / "notes.pth").write_text("my notes, not weights\n")
    random_teacher_ckpt(folder / "resnet20.pth", "resnet20", 10)
    random_teacher_ckpt(folder / "resnet8_100.pth", "resnet8", 100)
    (folder / "tab.yaml").write_text("SOLVER:\n\tEPOCHS: 1\n")
    (folder / "syntax.yaml").write_text("SOLVER:\n  EPOCHS: [1, 2\n")
    (folder / "string.yaml").write_text("just a sentence\n")
    (folder / "empty.yaml").write_text("")
    (folder / "suite.yaml").write_text("config: [digits/kd.yaml]\n")
    make_cifar100_folder(folder / "cifar", n_train=4, n_test=2)
    (folder / "cifar" / "cifar-100-python" / "train").write_bytes(b"\x80\x02}q\x00(X\x04\x00\x00\x00data")
    (folder / "cifar" / "cifar-100-python" / "test").write_bytes(b"not a pickle")
    return str(folder)


def snapshot(*folders):
    """Every path below ``folders`` with its size (folders: -1)."""
    seen = set()
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            seen |= {(os.path.join(root, d), -1) for d in dirs}
            seen |= {(os.path.join(root, f), os.path.getsize(os.path.join(root, f))) for f in files}
    return seen


def run(command, argv):
    """The exit code of one command run in this process."""
    try:
        code = MAINS[command](argv)
    except SystemExit as e:
        code = e.code
    return code


@pytest.fixture
def offline_cifar_download(monkeypatch):
    """torchvision's CIFAR download as it fails offline: it makes the data folder, starts a file, then the network
    error."""
    from mdistiller.dataset.cifar import CIFAR100

    def download(root):
        os.makedirs(root, exist_ok=True)
        with open(os.path.join(root, "cifar-100-python.tar.gz"), "wb") as f:
            f.write(b"\x1f\x8b partial")
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(CIFAR100, "_download", classmethod(lambda cls, root: download(root)))


@pytest.mark.parametrize("command, argv, expected", [pytest.param(c, a, e, id="{}:{}".format(c[11:], k))
                                                     for c, k, a, e in CASES])
def test_a_mistake_is_one_line_exit_2_and_leaves_nothing_behind(command, argv, expected, bad_files, tmp_path,
                                                                 monkeypatch, capsys, offline_cifar_download):
    monkeypatch.chdir(tmp_path)
    before = snapshot(str(tmp_path), bad_files)
    code = run(command, [word.replace("{F}", bad_files) for word in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith(command + ": error: "), err
    for words in expected:
        assert words in lines[0], lines[0]
    assert snapshot(str(tmp_path), bad_files) == before  # nothing created, nothing changed


@pytest.mark.parametrize("command, argv", [
    ("mdistiller-train", ["--cfg", "{F}/tab.yaml"]),
    ("mdistiller-eval", DIGITS + ["{F}/truncated.pth"]),
    ("mdistiller-benchmark", ["--configs", "{F}/empty.yaml"]),
    ("mdistiller-plot", ["nowhere"]),
    ("mdistiller-cost-matrix", ["--teacher", "resnet999", "--dataset", "cifar100"]),
    ("mdistiller-download", ["nosuch"]),
    ("mdistiller-tune", ["--suite", "{F}/tab.yaml"]),
], ids=lambda v: v if isinstance(v, str) else None)
def test_debug_keeps_the_traceback(command, argv, bad_files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Exception) as raised:
        MAINS[command]([word.replace("{F}", bad_files) for word in argv] + ["--debug"])
    assert not isinstance(raised.value, SystemExit)


def test_a_folder_without_write_permission_is_named_before_anything_runs(tmp_path, monkeypatch, capsys):
    """(As root every folder is writable, so the permission is denied by stubbing os.access.)"""
    import mdistiller._cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(mdistiller._cli.os, "access", lambda path, mode: False)
    assert run("mdistiller-train", ["--cfg", "digits/vanilla.yaml", "LOG.PREFIX", "out"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("mdistiller-train: error: Cannot write the run folder out/digits_demo/vanilla,resnet8 "
                           "(LOG.PREFIX): {} (choose a folder you may write to".format(tmp_path))
    assert os.listdir(str(tmp_path)) == []
