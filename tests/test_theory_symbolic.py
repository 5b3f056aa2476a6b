"""The sympy derivations agree with the numeric functions (lambdify on random inputs)."""

import numpy as np
import sympy as sp

from talr_theory.theory.codelength import log_softmax
from talr_theory.theory.steps import KernelSoftmax, gradient_step, talr_weights
from talr_theory.theory.symbolic import (
    cumulant_expansion,
    lambda_max_root,
    ntk_first_order,
    ntk_step,
    talr_lagrangian_weights,
)
from talr_theory.theory.tilt import cumulants, lambda_max_quadratic


def test_cumulants_match_numeric_and_log_mgf():
    series, lam, m, kappas = cumulant_expansion(3)
    f_kappa = sp.lambdify(m, kappas, "numpy")
    f_series = sp.lambdify((lam, *m), series, "numpy")
    rng = np.random.default_rng(0)
    for _ in range(50):
        q = rng.dirichlet(np.ones(6))
        g = rng.normal(size=6)
        raw = [float(np.sum(q * g**k)) for k in (1, 2, 3)]
        assert np.allclose(f_kappa(*raw), cumulants(q, g), rtol=1e-10, atol=1e-12)
        for t in (1e-2, 3e-2):
            exact = float(np.log(np.sum(q * np.exp(t * g))))
            # Remainder is O(λ⁴): well below λ³ scale.
            assert abs(f_series(t, *raw) - exact) < 10 * t**4 * (1 + np.abs(g).max() ** 4)


def test_talr_lagrangian_is_normalized_algorithm_1_weights():
    weights, ell, tau = talr_lagrangian_weights(3)
    f = sp.lambdify((*ell, tau), weights, "numpy")
    rng = np.random.default_rng(1)
    for _ in range(50):
        p = rng.uniform(1e-4, 1, 3)
        t = float(rng.uniform(0.1, 5))
        w_sym = np.array(f(*(-np.log(p)), t))
        w_alg = talr_weights(p, t, w_min=0.0)
        assert np.allclose(w_sym, w_alg / w_alg.sum(), rtol=1e-9)
        assert abs(w_sym.sum() - 1) < 1e-12


def test_lambda_max_root_matches_numeric():
    out = lambda_max_root()
    A, B, eps = out["symbols"]
    f = sp.lambdify((A, B, eps), out["root"], "numpy")
    rng = np.random.default_rng(2)
    for _ in range(100):
        a, b, e = rng.uniform(0, 3), rng.uniform(1e-3, 3), 10 ** rng.uniform(-6, -1)
        assert np.isclose(f(a, b, e), lambda_max_quadratic(a, b, e), rtol=1e-8)
    assert out["first_order_ratio_limit"] == 1
    assert sp.simplify(out["second_order"] - sp.sqrt(8 * eps / B)) == 0


def test_ntk_step_is_exact_for_linear_softmax():
    delta, kernel_form, sym = ntk_step(vocab=3, features=2)
    assert sp.simplify(delta - kernel_form) == sp.zeros(3, 1)
    # And the numeric kernel step (steps.py) equals the symbolic one on random values.
    f = sp.lambdify((list(sym["W"]), list(sym["phi_i"]), list(sym["phi_c"]), sym["lambda"]), delta, "numpy")
    rng = np.random.default_rng(3)
    W = rng.normal(size=(3, 2))
    phi = rng.normal(size=(2, 2))  # context 0 = training position, context 1 = another context
    model = KernelSoftmax.linear(W, phi)
    new = gradient_step(model, np.array([0]), np.array([sym["y"]]), np.ones(1), 0.4)
    expected = np.array(f(W.ravel(), phi[0], phi[1], 0.4), dtype=float).ravel()
    assert np.allclose(new[1] - model.logits[1], expected, atol=1e-12)


def test_ntk_first_order_for_nonlinear_model():
    derivative, ntk_form, sym = ntk_first_order()
    args = (sym["params"], sym["x_i"], sym["x_c"])
    f1 = sp.lambdify(args, derivative, "numpy")
    f2 = sp.lambdify(args, ntk_form, "numpy")
    rng = np.random.default_rng(4)
    for _ in range(20):
        theta = rng.normal(size=len(sym["params"]))
        xi, xc = rng.normal(size=2)
        assert np.allclose(f1(theta, xi, xc), f2(theta, xi, xc), atol=1e-12)


def test_log_softmax_is_stable():
    z = np.array([[1000.0, 0.0, -1000.0]])
    out = log_softmax(z)
    assert np.isfinite(out[0, :2]).all() and abs(out[0, 0]) < 1e-12
