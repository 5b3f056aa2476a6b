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
