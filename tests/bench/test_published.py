"""Published-number lookup in mdistiller/reference/published_results.csv."""
import os

from mdistiller import benchmark as bm
from mdistiller.benchmark import method_label, published_top1
from mdistiller.engine.cfg import get_cfg
from tests.helpers.runutil import REPO


def test_published_lookup():
    path = os.path.join(REPO, "mdistiller", "reference", "published_results.csv")
    assert bm.REFERENCE_CSV == path and os.path.exists(path)
    assert published_top1("cifar100", "resnet32x4", "resnet8x4", "DKD") == (76.32, "DKD paper (Zhao et al. CVPR 2022) / mdistiller README")
    assert published_top1("cifar100", "resnet32x4", "resnet8x4", "IPOT+CRD+KD")[0] == 76.82
    assert published_top1("cifar100", "resnet32x4", "resnet8x4", "WCoRD")[0] == 76.15
    assert published_top1("CIFAR100", "resnet32x4", "resnet8x4", "wkd-l")[0] == 76.53  # case-insensitive
    assert published_top1("imagenet", "ResNet34", "ResNet18", "WKD-L+F")[0] == 72.76
    assert published_top1("cifar100", "ResNet34", "ResNet18", "KD2M-CW2(G)")[0] == 61.43
    assert published_top1("cifar100", "ResNet50", "resnet8x4", "student")[0] == 72.50  # any teacher
    assert published_top1("cifar100", "resnet32x4", "resnet32x4", "teacher")[0] == 79.42
    assert published_top1("cifar100", "resnet32x4", "resnet8x4", "WKL") == (None, None)
    assert published_top1("digits", "resnet20", "resnet8", "KD") == (None, None)
    # the shipped config's header states the number the table will show
    cfg = get_cfg(os.path.join(REPO, "configs/cifar100/ipot_crd_kd/res110_res20.yaml"))
    assert published_top1(cfg.DATASET.TYPE, cfg.DISTILLER.TEACHER, cfg.DISTILLER.STUDENT, method_label(cfg))[0] == 71.81


def test_readme_tables_are_generated_from_the_csv_and_the_configs():
    from mdistiller.benchmark.published import README_END, README_START, readme_tables

    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    block = text[text.index(README_START): text.index(README_END) + len(README_END)]
    assert block == readme_tables(REPO), "README is stale: run `python -m mdistiller.benchmark.published README.md`"


def test_published_rows_are_unique():
    from mdistiller.benchmark import load_published

    keys = [(r["dataset"], r["teacher"], r["student"], r["method"]) for r in load_published()]
    assert len(keys) == len(set(keys))
