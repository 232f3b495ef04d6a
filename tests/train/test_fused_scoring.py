"""Batched scoring of a fused group's members equals each member's own ``evaluate``."""

from __future__ import annotations

import math

import pytest
import torch

from descentlab import fit
from descentlab.models import ACTIVATIONS, MLP, LogisticRegression
from descentlab.train.build import load_data
from descentlab.train.config import from_mapping
from descentlab.train.evaluate import evaluate
from descentlab.train.fused import fit_fused, scoring
from descentlab.train.fused.group import dense_layers
from descentlab.train.fused.scoring import score_members


def _members(model: str, k: int, n_in: int, n_classes: int) -> list[torch.nn.Module]:
    torch.manual_seed(0)
    out = []
    for _ in range(k):
        if model == "logreg":
            m: torch.nn.Module = LogisticRegression((n_in,), n_classes)
        else:
            m = MLP((n_in,), n_classes, hidden=(32, 16), activation="tanh")
        with torch.no_grad():
            for p in m.parameters():
                p.normal_(0.0, 0.3)
        out.append(m)
    return out


def _stacked(models: list[torch.nn.Module]) -> list[torch.Tensor]:
    per = [[t for lin in dense_layers(m) for t in (lin.weight, lin.bias)] for m in models]
    return [torch.stack([p[i].detach() for p in per]) for i in range(len(per[0]))]


@pytest.mark.parametrize("model", ["logreg", "mlp"])
@pytest.mark.parametrize("batch_size", [1000, 97])
def test_batched_scores_equal_each_members_evaluate(model, batch_size):
    data = load_data(from_mapping({"dataset": "digits"}))
    split = data.valid
    models = _members(model, 5, split.x[0].numel(), data.n_classes)
    act = ACTIVATIONS["tanh"] if model == "mlp" else None
    batched = score_members(
        _stacked(models),
        models,
        split,
        n_classes=data.n_classes,
        batch_size=batch_size,
        activation=act,
    )
    for m, got in zip(models, batched):
        want = evaluate(m, split, n_classes=data.n_classes, batch_size=batch_size)
        assert got.n_errors == want.n_errors
        assert got.error == want.error
        assert torch.equal(got.predictions, want.predictions)
        assert got.f1 == want.f1
        assert math.isclose(got.nll, want.nll, rel_tol=1e-6)
        assert got.n == want.n


def test_near_ties_are_scored_by_the_members_own_model(monkeypatch):
    """Rows within the tie tolerance take the member's own forward (evaluate's numbers)."""
    data = load_data(from_mapping({"dataset": "digits"}))
    split = data.valid
    models = _members("logreg", 3, split.x[0].numel(), data.n_classes)
    params = _stacked(models)
    with torch.no_grad():  # the models now differ from the stacked rows
        for m in models:
            m.linear.weight.mul_(-1.0)
    monkeypatch.setattr(scoring, "TIE_TOLERANCE", math.inf)  # every chunk is a near tie
    batched = score_members(
        params, models, split, n_classes=data.n_classes, batch_size=500, activation=None
    )
    for m, got in zip(models, batched):
        want = evaluate(m, split, n_classes=data.n_classes, batch_size=500)
        assert torch.equal(got.predictions, want.predictions)
        assert math.isclose(got.nll, want.nll, rel_tol=1e-6)


def test_tutorial_scored_members_keep_their_own_rule():
    common = {"dataset": "digits", "model": "logreg", "batch_size": 20, "quiet": True}
    common |= {"eval_style": "tutorial", "max_epochs": 2, "early_stopping": "none"}
    configs = [from_mapping({**common, "lr": lr, "seed": 1}) for lr in (0.05, 0.13)]
    fused = fit_fused(configs)
    for cfg, member in zip(configs, fused):
        alone = fit(config=cfg)
        assert [r["valid_error"] for r in member.history] == [
            r["valid_error"] for r in alone.history
        ]
        assert member.summary.test_error == alone.summary.test_error
