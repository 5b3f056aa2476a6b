"""One-step line search = the training core's first step; λ_max root-finding; envelope wrapper."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch

from talr_theory.lab.domains import DomainConfig, make_domain_examples
from talr_theory.lab.empirical import (
    LineModel,
    envelope_summary,
    lambda_max_curve,
    objective_gradient,
    step_direction,
)
from talr_theory.lab.synthetic import MarkovSource, SourceConfig, TinyModelConfig, build_tiny_llama
from talr_theory.training.core import TrainConfig, train


@pytest.fixture(scope="module")
def setup():
    src = MarkovSource(SourceConfig(seq_len=8))
    model = build_tiny_llama(src.n_tokens, TinyModelConfig(hidden_size=32, intermediate_size=64)).double().eval()
    examples = make_domain_examples(src, DomainConfig(s=2), 6, seed=0)
    return model, examples


@pytest.mark.parametrize("method", ["sft", "talr"])
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_line_step_equals_training_core_first_step(setup, method, optimizer):
    model, examples = setup
    lr = 1e-2
    grads, _ = objective_gradient(model, examples, method)
    stepped = LineModel(model, step_direction(grads, optimizer)).at(lr)
    trained = copy.deepcopy(model)
    train(trained, examples, TrainConfig(method=method, lr=lr, optimizer=optimizer, steps=1,
                                         batch_size=len(examples), seed=0), pad_id=0, progress=False)
    for a, b in zip(stepped.parameters(), trained.parameters()):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-9)


def test_talr_effective_s_is_below_sft(setup):
    model, examples = setup
    _, sft = objective_gradient(model, examples, "sft")
    _, talr = objective_gradient(model, examples, "talr")
    assert sft["sum_w_1mp"] == pytest.approx(sft["sum_1mp"])
    assert talr["sum_w_1mp"] < sft["sum_w_1mp"]
    assert math.isinf(sft["tau"]) and talr["tau"] > 0


class _Quadratic:
    """A stand-in line whose 'model' is λ itself, so ΔL(λ) = c·λ² has λ_max = sqrt(ε/c)."""

    def at(self, lam):
        return lam


def test_lambda_max_curve_finds_the_root():
    rows = lambda_max_curve(_Quadratic(), lambda lam: 3.0 * lam**2, [1e-4, 1e-2, 1.0], lam_start=1e-3, rtol=1e-10)
    for r in rows:
        assert r["lambda_max"] == pytest.approx(math.sqrt(r["epsilon"] / 3.0), rel=1e-8)


def test_envelope_summary_recovers_a_planted_envelope():
    k1, k2 = 0.05, 0.4
    rows = []
    for lr in (0.01, 0.02, 0.04, 0.08):
        for step in range(0, 50):
            # Δ* passes exactly through the grid values (multiples of 0.25), so the linear
            # interpolation between checkpoints introduces no chord error
            ds = min(step * 0.05, 2.0)
            rows.append({"lr": lr, "step": step, "delta_star": ds, "delta_L": k1 * ds + k2 * ds**2 * lr})
    block = envelope_summary(pd.DataFrame(rows))["block"]
    assert block["k1"] == pytest.approx(k1, rel=1e-6)
    assert block["k2"] == pytest.approx(k2, rel=1e-6)
    assert block["holdout_violation_rate"] == 0.0
    assert block["loglog_slope_dL_vs_lr_at_fixed_gain"] > 0
    assert np.isclose(block["delta_star_grid_max"], 2.0)


def test_measured_s_is_the_token_scanners_count():
    """n_hard_0.2 = mean over examples of #targets with p < 0.2: (2 + 0 + 1) / 3 for these probabilities."""
    from talr_theory.lab.empirical import _token_stats

    probs = ([0.1, 0.5, 0.15], [0.9, 0.3], [0.2, 0.05])  # p = 0.2 itself is not hard
    stats = _token_stats([-torch.log(torch.tensor(p, dtype=torch.float64)) for p in probs], "sft", math.inf, 0.1)
    assert stats["n_hard_0.2"] == pytest.approx(1.0)
    assert stats["sum_1mp"] == pytest.approx((2.25 + 0.8 + 1.75) / 3)


def test_line_model_in_place_moves_the_model_and_restores_it(setup):
    model, examples = setup
    work = copy.deepcopy(model)
    before = [p.detach().clone() for p in work.parameters()]
    grads, _ = objective_gradient(work, examples, "sft")
    line = LineModel(work, step_direction(grads, "sgd"), copy=False)
    assert line.at(0.5) is work
    assert any(not torch.equal(a, b) for a, b in zip(work.parameters(), before))
    line.restore()
    assert all(torch.equal(a, b) for a, b in zip(work.parameters(), before))
