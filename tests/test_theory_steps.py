"""Gradient-step tilts: kernel form equals a real SGD step; SFT/TALR/DFT are one step with weights."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from talr_theory.theory.steps import (
    KernelSoftmax,
    effective_s,
    gradient_step,
    median_tau,
    talr_weights,
    token_weights,
)


@settings(max_examples=100, deadline=None)
@given(p=st.lists(st.floats(1e-6, 1.0), min_size=1, max_size=20), w_min=st.floats(0, 0.5))
def test_talr_limits(p, w_min):
    p = np.array(p)
    # τ → ∞: every weight → 1 (standard SFT); checked at a huge τ and at τ = inf.
    assert np.allclose(talr_weights(p, 1e12, 0.0), 1.0, atol=1e-9)
    assert np.array_equal(talr_weights(p, np.inf, 0.0), np.ones_like(p))
    # τ = 1 and w_min = 0: the DFT weights w = p.
    assert np.allclose(talr_weights(p, 1.0, 0.0), token_weights("dft", p)[0], rtol=1e-12)
    w = talr_weights(p, 0.3, w_min)
    assert np.allclose(w, np.maximum(p ** (1 / 0.3), w_min), rtol=1e-12, atol=0)
    # Harder tokens (smaller p) never get more weight.
    order = np.argsort(p)
    assert np.all(np.diff(w[order]) >= -1e-15)


def test_median_tau_rules():
    loss = np.array([0.1, 0.2, 3.0, 0.1, 0.1, 5.0])
    example_of = np.array([0, 0, 0, 1, 1, 1])
    assert median_tau(loss) == pytest.approx(0.15)
    assert median_tau(loss, example_of, "sequence") == pytest.approx(np.median([3.3 / 3, 5.2 / 3]))
    w, tau = token_weights("talr", np.exp(-loss), tau="median", w_min=0.0)
    assert tau == pytest.approx(0.15)
    assert np.allclose(w, np.exp(-loss / 0.15))
    with pytest.raises(ValueError, match="method"):
        token_weights("adam", np.ones(2))


def test_kernel_step_equals_autograd_step_of_linear_softmax():
    rng = np.random.default_rng(0)
    V, F, C = 5, 4, 7
    W = rng.normal(size=(V, F))
    phi = rng.normal(size=(C, F))
    model = KernelSoftmax.linear(W, phi)
    positions = np.array([1, 3, 3, 6])
    targets = np.array([0, 4, 2, 1])
    weights = np.array([1.0, 0.5, 0.01, 2.0])
    lam = 0.7
    new_logits = gradient_step(model, positions, targets, weights, lam)

    Wt = torch.tensor(W, requires_grad=True, dtype=torch.float64)
    feats = torch.tensor(phi, dtype=torch.float64)
    logits = feats[positions] @ Wt.T
    token_loss = torch.nn.functional.cross_entropy(logits, torch.tensor(targets), reduction="none")
    loss = (torch.tensor(weights) * token_loss).sum() / len(targets)
    loss.backward()
    W_new = Wt.detach() - lam * Wt.grad
    expected = (feats @ W_new.T).numpy()
    assert np.allclose(new_logits, expected, atol=1e-12)


def test_tabular_step_does_not_leak():
    rng = np.random.default_rng(1)
    model = KernelSoftmax.tabular(rng.normal(size=(6, 4)))
    new = gradient_step(model, np.array([4, 5]), np.array([0, 3]), np.ones(2), 2.0)
    assert np.array_equal(new[:4], model.logits[:4])
    assert not np.allclose(new[4:], model.logits[4:])


def test_effective_s_counts_missing_probability():
    p = np.array([0.01, 0.99, 1.0, 0.5])
    ex = np.array([0, 0, 1, 1])
    assert effective_s(p, np.ones(4), ex) == pytest.approx((0.99 + 0.01 + 0 + 0.5) / 2)
    assert effective_s(p, p, ex) < effective_s(p, np.ones(4), ex)


def test_talr_step_limits_equal_sft_and_dft_steps():
    rng = np.random.default_rng(5)
    model = KernelSoftmax.linear(rng.normal(size=(6, 5)), rng.normal(size=(9, 5)))
    positions = np.array([2, 4, 5, 8])
    targets = np.array([1, 0, 5, 3])
    logq = model.logits[positions] - np.log(np.exp(model.logits[positions]).sum(axis=1, keepdims=True))
    p = np.exp(logq[np.arange(4), targets])

    def step(method, **kw):
        w, _ = token_weights(method, p, **kw)
        return gradient_step(model, positions, targets, w, 0.3)

    assert np.allclose(step("talr", tau=1e9, w_min=0.0), step("sft"), atol=1e-8)
    assert np.allclose(step("talr", tau=1.0, w_min=0.0), step("dft"), atol=1e-14)


def test_tau_rule_names_are_shared_and_others_rejected():
    """One set of τ rule names for the numpy and torch implementations; an unknown name is an error."""
    from talr_theory.theory.steps import TAU_RULES
    from talr_theory.training import objectives as obj

    assert obj.TAU_RULES == TAU_RULES == ("median", "median-seq")
    p = np.array([0.9, 0.5, 0.01, 0.8, 0.2, 0.6])
    example_of = np.array([0, 0, 0, 1, 1, 1])
    w_tok, tau_tok = token_weights("talr", p, tau="median", w_min=0.0, example_of=example_of)
    w_seq, tau_seq = token_weights("talr", p, tau="median-seq", w_min=0.0, example_of=example_of)
    nll = -np.log(p)
    assert tau_tok == pytest.approx(np.median(nll))
    assert tau_seq == pytest.approx(np.median([nll[:3].mean(), nll[3:].mean()]))
    with pytest.raises(ValueError, match="median-seq"):
        token_weights("talr", p, tau="median-sequence", example_of=example_of)


def test_one_talr_w_min_default():
    import inspect

    from talr_theory.theory import lambda_max, scenario, steps, trajectories
    from talr_theory.training import config, hf, objectives

    assert objectives.TALR_W_MIN == steps.TALR_W_MIN == 0.01
    defaults = [inspect.signature(f).parameters["w_min"].default for f in (
        steps.token_weights, objectives.talr_loss, hf.TokenLoss.__init__, trajectories.run_trajectory,
        lambda_max.lambda_max_experiment, scenario.scenario_step_curve)]
    defaults.append(config.TrainConfig.__dataclass_fields__["w_min"].default)
    assert defaults == [steps.TALR_W_MIN] * len(defaults)
