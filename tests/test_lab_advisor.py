"""The advisor's fit and solve on trajectories with a known answer."""

from __future__ import annotations

import pandas as pd
import pytest

from talr_theory.lab.advisor import advise_from_trajectories, observed_at_gain


def _trajectories(c=0.1, d=2.0, lrs=(0.01, 0.02, 0.04), steps=60):
    rows = []
    for lr in lrs:
        for t in range(steps):
            ds = t * lr * 5  # Δ* grows linearly in t·λ
            rows.append({"lr": lr, "step": t, "delta_star": ds, "delta_L": c * ds + d * ds**2 * lr})
    return pd.DataFrame(rows)


def test_recommendation_solves_the_fitted_line():
    c, d, gain, eps = 0.1, 2.0, 1.0, 0.16
    adv = advise_from_trajectories(_trajectories(c, d), eps, gain)
    # ΔL(G, λ) = cG + dG²λ exactly → λ_rec = (ε - cG)/(dG²)
    assert adv["recommended_lr"] == pytest.approx((eps - c * gain) / (d * gain**2), rel=1e-6)
    assert adv["status"] == "ok"
    lo, hi = adv["band"]
    assert lo <= adv["recommended_lr"] * (1 + 1e-9) and hi >= adv["recommended_lr"] * (1 - 1e-9)


def test_infeasible_and_extrapolated_cases():
    traj = _trajectories()
    assert advise_from_trajectories(traj, 0.05, 1.0)["status"] == "infeasible"  # ε below the k1·Δ* floor
    assert advise_from_trajectories(traj, 5.0, 1.0)["status"] == "extrapolated"


def test_errors_are_clear():
    traj = _trajectories(steps=3)
    with pytest.raises(ValueError, match="reached the requested gain"):
        advise_from_trajectories(traj, 0.1, gain=0.5)
    with pytest.raises(ValueError, match="epsilon must be > 0"):
        advise_from_trajectories(traj, 0.0)


def test_observed_at_gain_interpolates():
    one = _trajectories(lrs=(0.02,))
    assert observed_at_gain(one, 1.0) == pytest.approx(0.1 * 1.0 + 2.0 * 1.0 * 0.02, rel=1e-9)
