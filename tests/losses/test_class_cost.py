"""mdistiller.losses.class_cost: the release's post-processing and fc cost, cost files, linear CKA."""
import os

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mdistiller.losses.class_cost import (
    classifier_weight,
    fc_cost_matrix,
    linear_cka_matrix,
    load_cost_matrix,
    prepare_cost_matrix,
)
from tests.helpers.distill_inputs import raw_cost


def test_prepare_cost_matrix_and_fc_cost():
    raw = raw_cost(5)
    torch.testing.assert_close(prepare_cost_matrix(raw, 2.0), F.relu(1 - torch.exp(-2.0 * raw)) + 1e-8, rtol=0, atol=0)
    torch.testing.assert_close(prepare_cost_matrix(raw, 0), F.relu(raw) + 1e-8, rtol=0, atol=0)
    for attr in ("fc", "linear", "classifier"):
        model = nn.Module()
        model.body = nn.Linear(3, 4)
        setattr(model, attr, nn.Linear(4, 5))
        weight = getattr(model, attr).weight
        assert classifier_weight(model) is weight
        wn = F.normalize(weight.detach(), dim=1)
        torch.testing.assert_close(fc_cost_matrix(model), 1 - wn @ wn.t())
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 7))
    assert classifier_weight(model) is model[2].weight


def test_linear_cka_paths_agree_with_formula():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(4, 12, 5, generator=g, dtype=torch.float64)
    x, y = feats[0] - feats[0].mean(0), feats[2] - feats[2].mean(0)
    direct = (y.t() @ x).norm() ** 2 / ((x.t() @ x).norm() * (y.t() @ y).norm())
    pairwise = linear_cka_matrix(feats, gram_budget=0)
    gram = linear_cka_matrix(feats[:, :4], gram_budget=1 << 30)  # N=4 <= d=5: Gram path
    torch.testing.assert_close(pairwise[0, 2], direct)
    torch.testing.assert_close(gram, linear_cka_matrix(feats[:, :4], gram_budget=0))
    torch.testing.assert_close(pairwise.diagonal(), torch.ones(4, dtype=torch.float64))


def test_cost_file_loads_grad_and_non_contiguous(tmp_path):
    base = raw_cost(6, dtype=torch.float32)
    t1 = base.clone().requires_grad_(True)
    torch.save(t1, tmp_path / "grad.pth")
    t2 = base.t()  # non-contiguous view
    assert not t2.is_contiguous()
    torch.save(t2, tmp_path / "view.pth")
    for name, expected in (("grad.pth", base), ("view.pth", base.t())):
        loaded = load_cost_matrix(str(tmp_path / name))
        assert not loaded.requires_grad and loaded.is_contiguous() and loaded.dtype == torch.float32
        torch.testing.assert_close(loaded, expected)


def test_missing_cost_file_says_where_and_how(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_cost_matrix(str(tmp_path / "nope" / "linear_cka.pth"))
    message = str(info.value)
    assert str(tmp_path / "nope" / "linear_cka.pth") in message
    assert "mdistiller-download cost-matrices" in message and "mdistiller-cost-matrix --teacher" in message


def test_relative_cost_path_resolves_against_the_current_directory(tmp_path, monkeypatch):
    cost = raw_cost(4, dtype=torch.float32)
    (tmp_path / "wkd_cost_matrix").mkdir()
    torch.save(cost, tmp_path / "wkd_cost_matrix" / "m.pth")
    monkeypatch.chdir(tmp_path)
    torch.testing.assert_close(load_cost_matrix(os.path.join("wkd_cost_matrix", "m.pth")), cost)
    monkeypatch.chdir(tmp_path / "wkd_cost_matrix")
    with pytest.raises(FileNotFoundError) as info:
        load_cost_matrix(os.path.join("wkd_cost_matrix", "m.pth"))
    message = str(info.value)
    assert os.path.join(str(tmp_path), "wkd_cost_matrix", "wkd_cost_matrix", "m.pth") in message
    assert "current directory" in message and "mdistiller-download" in message
