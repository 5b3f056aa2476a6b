"""Single-step tilt: exact ΔL vs the Jensen, Hoeffding and TV bounds; λ_max roots."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from talr_theory.theory.codelength import log_softmax
from talr_theory.theory.tilt import (
    check_single_step,
    cumulants,
    delta_L_exact,
    lambda_max_exact,
    lambda_max_quadratic,
    quadratic_coefficients,
    random_instance,
    summarize_single_step,
    tilt_bounds,
)


@settings(max_examples=400, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), log_lam=st.floats(-3, 1.5))
def test_bounds_hold_on_random_instances(seed, log_lam):
    inst = random_instance(np.random.default_rng(seed))
    h = 10.0**log_lam * inst["g"]
    b = tilt_bounds(inst["rho"], inst["p"], inst["logits"], h)
    tol = 1e-12 * (1 + np.abs(h).max())
    assert b["jensen_lower"] <= b["exact"] + tol
    assert b["exact"] <= b["hoeffding_upper"] + tol
    assert b["hoeffding_upper"] <= b["tv_upper"] + tol
    assert abs(b["exact"] - b["tilt_form"]) < 1e-10 * (1 + abs(b["exact"]))


def test_batch_check_has_no_violations():
    frame = check_single_step(np.random.default_rng(7), n_instances=200)
    summary = summarize_single_step(frame)
    assert summary["n_instances"] == 200
    assert summary["lower_bound_violations"] == 0
    assert summary["upper_bound_violations"] == 0
    assert 0 <= summary["median_relative_gap"] <= summary["max_relative_gap"] < 1


def test_bound_check_detects_a_wrong_bound():
    # Sanity of the checker itself: halving the Hoeffding curvature term must break it somewhere.
    broken = 0
    rng = np.random.default_rng(11)
    for _ in range(200):
        inst = random_instance(rng)
        h = inst["g"]
        b = tilt_bounds(inst["rho"], inst["p"], inst["logits"], h)
        r = h.max(axis=1) - h.min(axis=1)
        too_small = b["jensen_lower"] + 0.1 * float(np.sum(inst["rho"] * r**2 / 8))
        broken += b["exact"] > too_small + 1e-12
    assert broken > 0


@settings(max_examples=200, deadline=None)
@given(A=st.floats(0, 10), B=st.floats(1e-6, 10), eps=st.floats(1e-8, 1))
def test_quadratic_root_solves_the_quadratic(A, B, eps):
    lam = lambda_max_quadratic(A, B, eps)
    assert lam > 0
    assert abs(B / 8 * lam**2 + A * lam - eps) <= 1e-9 * eps


def test_quadratic_root_limits():
    assert lambda_max_quadratic(0.0, 2.0, 1e-4) == pytest.approx(np.sqrt(8e-4 / 2.0), rel=1e-12)
    assert lambda_max_quadratic(5.0, 1e-12, 1e-3) == pytest.approx(1e-3 / 5.0, rel=1e-9)
    assert lambda_max_quadratic(-1.0, 0.0, 1.0) == np.inf


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), log_eps=st.floats(-6, -1))
def test_predicted_lambda_max_is_safe_and_exact_root_is_the_crossing(seed, log_eps):
    inst = random_instance(np.random.default_rng(seed))
    rho, p, logits, g = inst["rho"], inst["p"], inst["logits"], inst["g"]
    eps = 10.0**log_eps
    coef = quadratic_coefficients(rho, p, logits, g)
    pred = lambda_max_quadratic(coef["A"], coef["B"], eps)
    exact = lambda_max_exact(lambda lam: delta_L_exact(rho, p, logits, lam * g), eps, lam_start=pred)
    assert delta_L_exact(rho, p, logits, pred * g) <= eps * (1 + 1e-9)
    assert pred <= exact * (1 + 1e-9)
    if np.isfinite(exact):
        assert delta_L_exact(rho, p, logits, exact * g) == pytest.approx(eps, rel=1e-7)
        assert delta_L_exact(rho, p, logits, 1.01 * exact * g) > eps


def test_exactly_modeled_small_step_is_second_order():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(3, 6))
    q = np.exp(log_softmax(logits))
    rho = np.array([0.2, 0.3, 0.5])
    g = rng.normal(size=(3, 6))
    variance = sum(r * cumulants(qc, gc)[1] for r, qc, gc in zip(rho, q, g))
    lam = 1e-3
    assert delta_L_exact(rho, q, logits, lam * g) == pytest.approx(variance * lam**2 / 2, rel=1e-2)


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="expected rho"):
        delta_L_exact(np.ones(2), np.ones((3, 4)) / 4, np.zeros((3, 4)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="eps"):
        lambda_max_quadratic(1.0, 1.0, 0.0)
