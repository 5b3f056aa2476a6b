"""The advisor's fit and solve on trajectories with a known answer."""

from __future__ import annotations

import pandas as pd
import pytest

from talr_theory.lab.advisor import advise_from_trajectories, observed_at_gain, predict


def _trajectories(k=2.0, p=1.5, lrs=(0.01, 0.02, 0.04), steps=60):
    rows = []
    for lr in lrs:
        for t in range(steps):
            ds = t * 0.05  # Δ* passes exactly through the requested gains used below
            rows.append({"lr": lr, "step": t, "delta_star": ds, "delta_L": k * ds * lr**p})
    return pd.DataFrame(rows)


def test_recommendation_inverts_the_fitted_power_law():
    k, p, gain = 2.0, 1.5, 1.0
    eps = k * gain * 0.03**p  # the safe LR is 0.03, inside the pilot range
    adv = advise_from_trajectories(_trajectories(k, p), eps, gain)
    assert adv["power_p"] == pytest.approx(p, rel=1e-9)
    assert adv["recommended_lr"] == pytest.approx(0.03, rel=1e-9)
    assert adv["status"] == "ok"
    assert predict(adv, 0.02) == pytest.approx(k * gain * 0.02**p, rel=1e-9)
    lo, hi = adv["band"]
    assert lo <= adv["recommended_lr"] * (1 + 1e-9) and hi >= adv["recommended_lr"] * (1 - 1e-9)


def test_capped_below_pilot_and_unbounded_cases():
    traj = _trajectories()
    big = advise_from_trajectories(traj, 10.0, 1.0)
    assert big["status"] == "capped" and big["recommended_lr"] == 0.04 and big["uncapped_lr"] > 0.04
    small = advise_from_trajectories(traj, 1e-6, 1.0)
    assert small["status"].startswith("extrapolated") and small["recommended_lr"] < 0.01
    flat = advise_from_trajectories(_trajectories(p=0.0), 0.5, 1.0)
    assert flat["status"] == "unbounded" and flat["recommended_lr"] == 0.04


def test_errors_are_clear():
    traj = _trajectories(steps=3)
    with pytest.raises(ValueError, match="reached the requested gain"):
        advise_from_trajectories(traj, 0.1, gain=0.5)
    with pytest.raises(ValueError, match="epsilon must be > 0"):
        advise_from_trajectories(traj, 0.0)


def test_observed_at_gain_interpolates():
    one = _trajectories(lrs=(0.02,))
    assert observed_at_gain(one, 1.0) == pytest.approx(2.0 * 1.0 * 0.02**1.5, rel=1e-9)


@pytest.mark.shared
def test_advise_cli_on_a_real_tiny_model(capsys):
    """`talr-theory advise` end to end on stories260K (../shared): s estimate, pilot, recommendation."""
    import json

    from talr_theory.cli import main

    rc = main(["advise", "--model", "stories260k", "--data", "medcalc-synth:40", "--epsilon", "0.05",
               "--pilot-lrs", "1e-4,1e-3,1e-2", "--pilot-steps", "3", "--n-train", "8", "--n-eval", "4",
               "--n-samples", "4", "--sample-len", "16", "--json", "-"])
    assert rc == 0
    advice = json.loads(capsys.readouterr().out)
    assert advice["status"] in ("ok", "capped", "unbounded", "extrapolated (below the pilot)")
    assert advice["recommended_lr"] > 0
    assert advice["band"][0] <= advice["band"][1]
    assert advice["s"]["0.2"]["mean"] >= 0
    assert len({r["lr"] for r in advice["pilot"]}) == 3
