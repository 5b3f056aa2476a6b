"""The equal-gain condition for a per-token reweighting against brute force on random linearised instances."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from scipy.optimize import brentq

from talr_theory.theory.codelength import log_softmax
from talr_theory.theory.reweighting import (
    cost_at_gain,
    equal_gain_cost,
    predicted_ratio,
    ray_coefficients,
    second_order_cost_derivatives,
)
from talr_theory.theory.steps import step_direction


def _instance(rng, weights_kind):
    Cg, N, V = 5, 6, 4
    feats = rng.normal(size=(Cg + N, 3))
    K = feats @ feats.T + 0.3 * np.eye(Cg + N)
    z = rng.normal(0, 1.5, size=(Cg + N, V))
    targets = rng.integers(0, V, size=N)
    p_gen = np.exp(log_softmax(z[:Cg] + rng.normal(0, 0.5, size=(Cg, V))))  # a mis-modeled P1
    rho = rng.dirichlet(np.ones(Cg))
    w = np.ones(N) if weights_kind == "sft" else rng.uniform(0.01, 1.0, size=N)
    return dict(K=K, z=z, targets=targets, p_gen=p_gen, rho=rho, w=w, Cg=Cg, N=N)


def _brute(inst, D):
    """Exact ΔL(P1) when the domain gain along the frozen-weight ray first reaches D (kernel-softmax model)."""
    Cg, K, z, t = inst["Cg"], inst["K"], inst["z"], inst["targets"]
    dom = np.arange(Cg, Cg + inst["N"])
    g = step_direction(K[:, dom], z[dom], t, inst["w"])
    rows = np.arange(len(t))
    lq0 = log_softmax(z)

    def gain(lam):
        return float(np.mean(log_softmax(z[dom] + lam * g[dom])[rows, t] - lq0[dom][rows, t]))

    hi = 1e-6
    while gain(hi) < D:  # the gain rises from 0 (a > 0 on the instances used)
        hi *= 2
    lam = brentq(lambda x: gain(x) - D, 0.0, hi, xtol=1e-15, rtol=1e-15)
    diff = lq0[:Cg] - log_softmax(z[:Cg] + lam * g[:Cg])
    return float(np.sum(inst["rho"] * np.sum(inst["p_gen"] * diff, axis=1)))


def _coef(inst):
    Cg, K, z = inst["Cg"], inst["K"], inst["z"]
    dom = np.arange(Cg, Cg + inst["N"])
    return ray_coefficients(K[np.ix_(np.arange(Cg), dom)], K[np.ix_(dom, dom)], z[dom], inst["targets"], inst["w"],
                            z[:Cg], inst["p_gen"], inst["rho"])


def test_sympy_series_reversion_has_the_expected_terms():
    C, sym = equal_gain_cost()
    a, b, G, Q, D = sym["a"], sym["b"], sym["G"], sym["Q"], sym["D"]
    assert sp.simplify(C - (G * D / a + (Q / a**2 + G * b / a**3) * D**2 / 2)) == 0


def test_first_and_second_derivatives_of_the_cost_are_misfit_and_fisher():
    d1, d2, first, var, sym = second_order_cost_derivatives(3)
    rng = np.random.default_rng(1)
    for _ in range(5):
        P = rng.dirichlet(np.ones(3))
        vals = {**dict(zip(sym["z"], rng.normal(size=3))), **dict(zip(sym["g"], rng.normal(size=3))),
                **dict(zip(sym["P"], P))}
        assert float(d1.subs(vals)) == pytest.approx(float(first.subs(vals)), abs=1e-12)
        assert float(d2.subs(vals)) == pytest.approx(float(var.subs(vals)), abs=1e-12)


@pytest.mark.parametrize("kind", ["sft", "weighted"])
def test_cost_at_gain_matches_brute_force_to_third_order(kind):
    rng = np.random.default_rng(3 if kind == "sft" else 4)
    for _ in range(5):
        inst = _instance(rng, kind)
        coef = _coef(inst)
        if coef["a"] <= 0:
            continue
        D = 1e-2
        err = [abs(_brute(inst, d) - float(cost_at_gain(coef, d))) for d in (D, D / 2)]
        # the remainder is O(D³): halving D divides it by ~8; a missing D² term would leave ~4
        assert err[1] < err[0] / 6 or err[0] < 1e-13


def test_predicted_sign_matches_brute_force_at_small_gain():
    rng = np.random.default_rng(5)
    checked = 0
    for _ in range(40):
        base = _instance(rng, "sft")
        other = dict(base, w=rng.uniform(0.01, 1.0, size=base["N"]))
        c1, cw = _coef(base), _coef(other)
        if c1["a"] <= 0 or cw["a"] <= 0:
            continue
        D = 1e-3
        pred = predicted_ratio(cw, c1, D)
        if not np.isfinite(pred) or abs(pred - 1) < 0.05 or pred <= 0:
            continue
        brute = _brute(other, D) / _brute(base, D)
        assert (pred < 1) == (brute < 1)
        checked += 1
    assert checked >= 10


def test_a_ray_that_loses_domain_probability_never_wins():
    assert predicted_ratio({"a": -1.0, "b": 0.0, "G": 0.0, "Q": 1.0}, {"a": 1.0, "b": 0.0, "G": 0.0, "Q": 1.0},
                           0.1) == float("inf")


# --- numpy twins of the training core's objectives (EAFT, ASFT, truncate-hard, ...) -----------------

def _torch_update(method, z, targets, z0, **opts):
    """−N ∂L/∂z from the training core's torch objective on the same logits (float64 autograd)."""
    import torch

    from talr_theory.training import objectives as obj

    N, V = z.shape
    leaf = torch.tensor(np.vstack([z, np.zeros((1, V))])[None], dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([[-100, *targets.tolist()]])
    extra = {"ref_logits": torch.tensor(np.vstack([z0, np.zeros((1, V))])[None], dtype=torch.float64)}
    loss, _ = obj.OBJECTIVES[method](leaf, labels, None, **opts, **extra)
    (grad,) = torch.autograd.grad(loss, leaf)
    return -N * grad[0, :N].numpy()


@pytest.mark.parametrize("method,np_opts,torch_opts", [
    ("eaft", {"eaft_k": 4, "eaft_alpha": 1.5}, {"k": 4, "alpha": 1.5}),
    ("asft", {"asft_beta": 0.3}, {"beta": 0.3}),
    ("truncate-hard", {"truncate_theta": 0.1}, {"theta": 0.1}),
    ("dft", {}, {}),
])
def test_numpy_method_update_equals_the_torch_objective(method, np_opts, torch_opts):
    from talr_theory.theory.codelength import log_softmax
    from talr_theory.theory.reweighting import method_update

    rng = np.random.default_rng(3)
    N, V = 9, 7
    z = rng.normal(size=(N, V)) * 2.0
    z0 = z + rng.normal(size=(N, V)) * 0.7  # a base different from the current model
    targets = rng.integers(0, V, size=N)
    w, u = method_update(method, log_softmax(z), targets, log_softmax(z0), **np_opts)
    expected = _torch_update("ce" if method == "sft" else method, z, targets, z0, **torch_opts)
    assert np.abs(u - expected).max() < 1e-12
    if method == "truncate-hard":
        assert 0 < w.sum() < N  # the threshold splits this batch


def test_numpy_eaft_weights_and_defaults_match_the_training_core():
    import torch

    from talr_theory.theory import reweighting as rw
    from talr_theory.training import config
    from talr_theory.training import objectives as obj

    assert (rw.EAFT_TOP_K, rw.EAFT_ALPHA, rw.ASFT_BETA, rw.TRUNCATE_THETA) == (
        config.EAFT_TOP_K, config.EAFT_ALPHA, config.ASFT_BETA, config.TRUNCATE_THETA)
    z = np.random.default_rng(0).normal(size=(6, 30)) * 3.0
    for k, alpha in ((20, 1.0), (5, 2.0), (30, 0.5)):
        got = rw.eaft_weights_np(z, k, alpha)
        ref = obj.eaft_weights(torch.tensor(z), k, alpha).numpy()
        assert np.abs(got - ref).max() < 1e-12
    # ASFT's anchor at the base itself is zero; elsewhere positive
    from talr_theory.theory.codelength import log_softmax

    assert np.abs(rw.kl_to_base_np(log_softmax(z), log_softmax(z))).max() < 1e-12
    assert (rw.kl_to_base_np(log_softmax(z), log_softmax(z[::-1])) > 0).all()


def test_linearised_asft_is_dft_and_eaft_has_its_own_ray():
    from talr_theory.theory.reweighting import linearised_coefficients
    from talr_theory.theory.scenario import make_scenario

    sc = make_scenario(0)
    targets = sc.targets(4)
    dft = linearised_coefficients(sc, targets, "dft")
    asft = linearised_coefficients(sc, targets, "asft")
    eaft = linearised_coefficients(sc, targets, "eaft")
    assert all(abs(dft[k] - asft[k]) < 1e-14 for k in dft)
    assert any(abs(eaft[k] - dft[k]) > 1e-8 for k in dft)
