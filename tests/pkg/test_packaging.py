"""Packaging metadata (pyproject.toml), licence and citation files, and the built wheel's contents."""
import os
import re
import zipfile

import pytest

from tests.helpers.runutil import REPO

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

SCRIPTS = {
    "mdistiller-train": "mdistiller.train:cli",
    "mdistiller-eval": "mdistiller.eval:cli",
    "mdistiller-benchmark": "mdistiller.benchmark.__main__:main",
    "mdistiller-tune": "mdistiller.tune.__main__:main",
    "mdistiller-plot": "mdistiller.plot:cli",
    "mdistiller-cost-matrix": "mdistiller.cost_matrix:cli",
    "mdistiller-download": "mdistiller.download:main",
}


@pytest.fixture(scope="module")
def project():
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def _bound(requirements, name):
    for req in requirements:
        m = re.match(r"^{}\s*>=\s*([0-9.]+)$".format(re.escape(name)), req)
        if m:
            return tuple(int(x) for x in m.group(1).split("."))
    raise AssertionError("{} has no lower bound in {}".format(name, requirements))


def test_pyproject_replaces_setup_py(project):
    assert not os.path.exists(os.path.join(REPO, "setup.py"))
    meta = project["project"]
    assert meta["name"] == "mdistiller" and meta["license"] == "MIT" and meta["readme"] == "README.md"
    assert meta["requires-python"] == ">=3.9"
    assert meta["scripts"] == SCRIPTS
    assert set(meta["optional-dependencies"]) == {"wandb", "plots", "slurm", "detection", "tune", "test", "all"}
    assert any(r.startswith("submitit") for r in meta["optional-dependencies"]["slurm"])
    assert _bound(meta["optional-dependencies"]["tune"], "optuna") == (4, 0)  # JournalFileBackend's first release
    assert "tune" in meta["optional-dependencies"]["all"][0]
    data = project["tool"]["setuptools"]["package-data"]["mdistiller"]
    assert "reference/*.csv" in data and "download_manifest.json" in data
    assert "configs/**/*.yaml" in data  # the packaged configs (mdistiller-train --cfg digits/kd.yaml)
    assert "suites/*.yaml" in data  # the packaged suites (mdistiller-tune --suite tune_digits.yaml)


def test_torch_lower_bound_is_the_first_release_with_the_apis_used(project):
    """torch.serialization.safe_globals (checkpoint loading) first shipped in torch 2.5."""
    import torch

    deps = project["project"]["dependencies"]
    assert _bound(deps, "torch") == (2, 5)
    assert _bound(deps, "torchvision") == (0, 20)  # the torchvision built for torch 2.5
    assert hasattr(torch.serialization, "safe_globals")
    with open(os.path.join(REPO, "mdistiller", "engine", "checkpoint.py")) as f:
        assert "torch.serialization.safe_globals" in f.read()


def test_version_is_single_sourced(project):
    import mdistiller

    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "mdistiller.__version__"}
    assert re.match(r"^\d+\.\d+\.\d+", mdistiller.__version__)


def test_licence_and_citation_files():
    import yaml

    with open(os.path.join(REPO, "LICENSE")) as f:
        licence = f.read()
    assert licence.startswith("MIT License") and "MEGVII Research" in licence and "JiamingLv/WKD" in licence
    with open(os.path.join(REPO, "CITATION.cff")) as f:
        cff = yaml.safe_load(f)
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "MIT"
    import mdistiller

    assert str(cff["version"]) == mdistiller.__version__


def test_citations_bib_has_every_method():
    with open(os.path.join(REPO, "docs", "citations.bib")) as f:
        bib = f.read()
    assert bib.count("{") == bib.count("}")
    keys = re.findall(r"^@\w+\{([^,]+),", bib, flags=re.M)
    assert len(keys) == len(set(keys)) == 20
    for title in ("Distilling the Knowledge in a Neural Network", "Decoupled Knowledge Distillation",
                  "Contrastive Representation Distillation", "Wasserstein Distance Rivals",
                  "Stage-Adaptive Knowledge Distillation", "Unifying Framework for Feature Knowledge Distillation",
                  "Model Compression Using Optimal Transport", "Wasserstein Contrastive Representation Distillation",
                  "Hints for Thin Deep Nets", "Attention Transfer", "Neuron Selectivity Transfer",
                  "Probabilistic Knowledge Transfer", "Singular Value Decomposition", "Relational Knowledge",
                  "Similarity-Preserving", "Variational Information Distillation", "Overhaul of Feature Distillation",
                  "Knowledge Review", "Distillation-Oriented Trainer", "Logit Standardization"):
        assert title in bib, title


@pytest.mark.slow
def test_wheel_holds_package_data_every_config_licence_and_scripts(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = zf.read(dist_info + "/METADATA").decode()
        entry_points = zf.read(dist_info + "/entry_points.txt").decode()
    assert "mdistiller/download_manifest.json" in names
    assert "mdistiller/reference/published_results.csv" in names
    shipped = sorted(n[len("mdistiller/configs/"):] for n in names if n.startswith("mdistiller/configs/"))
    configs = sorted(os.path.relpath(os.path.join(d, f), os.path.join(REPO, "configs")).replace(os.sep, "/")
                     for d, _, files in os.walk(os.path.join(REPO, "configs")) for f in files if f.endswith(".yaml"))
    assert shipped == configs and "digits/kd.yaml" in shipped and "cifar100/kd/res32x4_res8x4.yaml" in shipped
    assert "mdistiller/dataset/restricted_pickle.py" in names
    assert not any(n.startswith(("tests/", "tools/")) for n in names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "Requires-Dist: torch>=2.5" in metadata and "License-Expression: MIT" in metadata
    assert 'Provides-Extra: slurm' in metadata and "Requires-Dist: submitit" in metadata
    for script, target in SCRIPTS.items():
        assert "{} = {}".format(script, target) in entry_points


def test_readme_bibtex_is_docs_citations_bib():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, "README.md")) as f:
        readme = f.read()
    with open(os.path.join(root, "docs", "citations.bib")) as f:
        bib = f.read().strip()
    assert "```bibtex\n" + bib + "\n```" in readme
