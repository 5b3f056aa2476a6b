"""Envelope LP (Theorem 3.1): tightness, validity, β scan, hold-out, interpolation at common Δ*."""

import numpy as np
import pandas as pd
import pytest

from talr_theory.theory.envelope import (
    fit_best_beta,
    fit_envelope,
    holdout_validity,
    interpolate_at_common_delta,
    lambda_excess_exponents,
)


def _points(rng, k1, k2, beta, n=60, noise=0.0):
    ds = rng.uniform(0.05, 1.0, n)
    lam = rng.choice([0.1, 0.2, 0.4, 0.8, 1.6], n)
    dl = k1 * ds + k2 * ds**beta * lam - noise * rng.uniform(0, 1, n)
    return ds, dl, lam


def test_exact_points_recover_constants():
    ds, dl, lam = _points(np.random.default_rng(0), 0.3, 2.0, 2.0)
    fit = fit_envelope(ds, dl, lam, beta=2.0)
    assert fit.k1 == pytest.approx(0.3, rel=1e-6)
    assert fit.k2 == pytest.approx(2.0, rel=1e-6)
    assert fit.total_slack == pytest.approx(0.0, abs=1e-6)


def test_lp_is_valid_and_no_feasible_grid_point_is_tighter():
    rng = np.random.default_rng(1)
    ds, dl, lam = _points(rng, 0.2, 1.0, 2.0, noise=0.05)
    fit = fit_envelope(ds, dl, lam, beta=2.0)
    assert np.all(fit.bound(ds, lam) >= dl)  # valid everywhere, exactly (no tolerance)
    a, b = ds, ds**2 * lam
    best = np.inf
    for k1 in np.linspace(0, 0.6, 241):
        for k2 in np.linspace(0, 3, 241):
            if np.all(k1 * a + k2 * b >= dl):
                best = min(best, float(np.sum(k1 * a + k2 * b - dl)))
    assert fit.total_slack <= best + 1e-9


def test_best_beta_finds_generating_beta():
    ds, dl, lam = _points(np.random.default_rng(2), 0.05, 1.5, 3.0)
    fit = fit_best_beta(ds, dl, lam)
    assert fit.beta == pytest.approx(3.0)
    assert fit.total_slack < fit_envelope(ds, dl, lam, beta=2.0).total_slack


def test_holdout_detects_violations_and_accepts_valid_points():
    rng = np.random.default_rng(3)
    ds, dl, lam = _points(rng, 0.2, 1.0, 2.0)
    df = pd.DataFrame({"lam": lam, "delta_star": ds, "delta_L": dl})
    good = holdout_validity(df, [0.1, 0.4, 1.6], [0.2, 0.8])
    assert good["holdout_violation_rate"] == 0.0
    # Make the held-out λ degrade more than the generating law: the fitted bound must fail there.
    bad_df = df.copy()
    bad_df.loc[bad_df["lam"] == 0.8, "delta_L"] *= 1.5
    bad = holdout_validity(bad_df, [0.1, 0.4, 1.6], [0.2, 0.8])
    assert bad["holdout_violation_rate"] > 0.2
    with pytest.raises(ValueError, match="overlap"):
        holdout_validity(df, [0.1, 0.2], [0.2])


def test_interpolation_reads_first_crossing_and_never_extrapolates():
    trajs = [(1.0, [0.0, 0.5, 0.4, 1.0], [0.0, 1.0, 2.0, 3.0]), (2.0, [0.0, 0.3], [0.0, 0.6])]
    frame = interpolate_at_common_delta(trajs, [0.25, 0.45, 0.9])
    t0 = frame[frame.trajectory == 0].set_index("delta_star")["delta_L"]
    # 0.25 lies only between step 0 and step 1: no chord from the origin, so it is unmeasured
    assert 0.25 not in t0.index and (0, 0.25) in frame.attrs["unreached"]
    assert t0[0.45] == pytest.approx(1.5)  # first crossing: between steps 1 (0.5) and 2 (0.4)
    assert t0[0.9] == pytest.approx(2.0 + (0.9 - 0.4) / 0.6 * 1.0)
    # one checkpoint after step 0 brackets nothing
    assert not (frame.trajectory == 1).any()
    assert {(1, 0.25), (1, 0.45), (1, 0.9)} <= set(frame.attrs["unreached"])


def test_interpolation_is_cost_at_gain():
    """The adapter and the package's one equal-gain interpolation give the same numbers."""
    from talr_theory.theory.envelope import cost_at_gain

    ds, dl = [0.0, 0.2, 0.5, 0.7, 1.1], [0.0, 0.1, 0.4, 0.5, 1.3]
    grid = [0.3, 0.6, 1.0]
    a = interpolate_at_common_delta([(3.0, ds, dl)], grid)
    b = cost_at_gain(pd.DataFrame({"run": 0, "step": range(5), "delta_star": ds, "delta_L": dl}), grid, by=["run"])
    assert a["delta_L"].tolist() == pytest.approx(b["delta_L"].tolist())
    assert a["delta_L"].tolist() == pytest.approx([0.2, 0.45, 1.1])


def test_lambda_excess_exponents_recover_the_law():
    rows = [{"lam": lam, "delta_star": d, "delta_L": 0.1 * d**2 + 0.7 * d**1.5 * lam}
            for d in np.linspace(0.1, 1, 8) for lam in (0.5, 1, 2, 4)]
    out = lambda_excess_exponents(pd.DataFrame(rows), n_boot=100)
    assert out["beta_excess"] == pytest.approx(1.5, abs=1e-9)
    assert out["lam_exponent"] == pytest.approx(1.0, abs=1e-9)
    for key, true in (("beta_excess", 1.5), ("lam_exponent", 1.0)):
        lo, hi = out[f"{key}_ci"]  # an exact law: every resample gives the same exponent
        assert lo == pytest.approx(true, abs=1e-9) and hi == pytest.approx(true, abs=1e-9)


def test_envelope_rejects_unboundable_points():
    with pytest.raises(ValueError, match="delta_star=0"):
        fit_envelope([0.0, 1.0], [0.5, 0.1], [1.0, 1.0])
