"""The advisor's bracket, chord and fit on trajectories with a known answer."""

from __future__ import annotations

import pandas as pd
import pytest

from talr_theory.lab.advisor import advise_from_trajectories, chord_crossing, observed_at_gain, predict


def _trajectories(k=2.0, p=1.5, lrs=(0.01, 0.02, 0.04), steps=60):
    rows = []
    for lr in lrs:
        for t in range(steps):
            ds = t * 0.05  # Δ* passes exactly through the requested gains used below
            rows.append({"lr": lr, "step": t, "delta_star": ds, "delta_L": k * ds * lr**p})
    return pd.DataFrame(rows)


def test_recommendation_is_the_chord_crossing_inside_the_bracket():
    k, p, gain = 2.0, 1.5, 1.0
    eps = k * gain * 0.03**p  # the true safe LR is 0.03, between the pilots 0.02 and 0.04
    adv = advise_from_trajectories(_trajectories(k, p), eps, gain)
    assert adv["status"] == "ok" and adv["bracket"] == [0.02, 0.04]
    d2, d4 = k * gain * 0.02**p, k * gain * 0.04**p
    assert adv["recommended_lr"] == pytest.approx(0.02 + (eps - d2) / (d4 - d2) * 0.02, rel=1e-9)
    # ΔL is convex in the LR here, so the chord's crossing is below the true safe LR
    assert 0.02 <= adv["recommended_lr"] < 0.03
    # the power-law fit is reported for information and recovers the curve
    assert adv["power_p"] == pytest.approx(p, rel=1e-9)
    assert adv["fit_lr"] == pytest.approx(0.03, rel=1e-9)
    assert predict(adv, 0.02) == pytest.approx(d2, rel=1e-9)


def test_unbracketed_tolerances_are_not_certified():
    traj = _trajectories()
    big = advise_from_trajectories(traj, 10.0, 1.0)
    assert big["status"] == "cannot-certify" and big["recommended_lr"] is None
    assert big["needs"] == "higher" and big["largest_measured_safe_lr"] == 0.04
    assert big["fit_lr"] > 0.04  # the fit extrapolates; the advisor does not follow it
    small = advise_from_trajectories(traj, 1e-6, 1.0)
    assert small["status"] == "cannot-certify" and small["needs"] == "lower" and small["recommended_lr"] is None
    assert "below the smallest pilot" in small["reason"]


def test_a_safe_point_above_an_unsafe_one_does_not_count():
    rows = []
    for lr, dl in ((0.01, 0.1), (0.02, 0.5), (0.04, 0.2)):  # non-monotone: 0.04 looks safe again
        rows += [{"lr": lr, "step": 0, "delta_star": 0.0, "delta_L": 0.0},
                 {"lr": lr, "step": 1, "delta_star": 1.0, "delta_L": dl}]
    adv = advise_from_trajectories(pd.DataFrame(rows), 0.3, 1.0)
    assert adv["status"] == "ok" and adv["bracket"] == [0.01, 0.02]
    assert adv["recommended_lr"] == pytest.approx(chord_crossing(0.01, 0.1, 0.02, 0.5, 0.3))


def test_too_few_pilots_at_the_gain_and_bad_epsilon():
    traj = _trajectories(steps=3)  # reaches Δ* = 0.1 only
    adv = advise_from_trajectories(traj, 0.1, gain=0.5)
    assert adv["status"] == "cannot-certify" and "reached the requested gain" in adv["reason"]
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="epsilon must be"):
            advise_from_trajectories(traj, bad)


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
    assert advice["status"] in ("ok", "cannot-certify")
    pilots = sorted({r["lr"] for r in advice["pilot"]})
    assert len(pilots) >= 3
    if advice["recommended_lr"] is not None:
        assert pilots[0] <= advice["recommended_lr"] <= pilots[-1]
    assert advice["s"]["0.2"]["mean"] >= 0
