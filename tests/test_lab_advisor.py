"""The advisor's bracket, chord and fit on trajectories with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from talr_theory.advisor.rule import (
    advise_from_trajectories,
    chord_crossing,
    held_out_cases,
    observed_at_gain,
    predict,
)


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


def test_replicate_pilots_bracket_with_the_upper_envelope():
    """Two seeds per pilot LR: seed 1 degrades 1.3× more at every LR, so the advice must equal the advice
    from seed 1 alone (a mean or the first seed would recommend a larger, unsafe LR)."""
    k, p, gain = 2.0, 1.5, 1.0
    eps = k * gain * 0.03**p
    both = pd.concat([_trajectories(k, p).assign(seed=0), _trajectories(1.3 * k, p).assign(seed=1)],
                     ignore_index=True)
    adv = advise_from_trajectories(both, eps, gain)
    alone = advise_from_trajectories(_trajectories(1.3 * k, p), eps, gain)
    assert adv["status"] == alone["status"] == "ok"
    assert adv["recommended_lr"] == pytest.approx(alone["recommended_lr"], rel=1e-12)
    assert adv["recommended_lr"] < advise_from_trajectories(_trajectories(k, p), eps, gain)["recommended_lr"]
    # an LR at which one replicate never reaches the gain gives no point
    short = both[~((both["lr"] == 0.04) & (both["seed"] == 1) & (both["delta_star"] > 0.5))]
    adv = advise_from_trajectories(short, eps, gain)
    assert [pt["lam"] for pt in adv["pilot_points"]] == [0.01, 0.02]
    assert adv["status"] == "cannot-certify" and adv["pilot_max_gain"][0.04] == pytest.approx(0.5)


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
               "--n-samples", "4", "--sample-len", "16", "--pilot-seeds", "2", "--json", "-"])
    assert rc == 0
    advice = json.loads(capsys.readouterr().out)
    assert advice["status"] in ("ok", "cannot-certify")
    pilots = sorted({r["lr"] for r in advice["pilot"]})
    assert len(pilots) >= 3
    # two replicate runs per pilot LR (minibatch 4 of 8 examples: the seeds see different batches)
    assert advice["pilot_seeds"] == [0, 1]
    assert {(r["lr"], r["seed"]) for r in advice["pilot"]} == {(lr, s) for lr in pilots for s in (0, 1)}
    if advice["recommended_lr"] is not None:
        assert pilots[0] <= advice["recommended_lr"] <= pilots[-1]
    assert advice["s"]["0.2"]["mean"] >= 0


def _quadratic_runner(c, calls):
    """Δ* = 0.25·t (t = 0..8), ΔL = c·lr²·Δ*: at gain 1 the degradation is c·lr²."""
    def run(lr):
        calls.append(lr)
        ds = 0.25 * np.arange(9)
        return pd.DataFrame({"step": np.arange(9), "delta_star": ds, "delta_L": c * lr**2 * ds})
    return run


def test_held_out_cases_recommendation_true_safe_lr_and_check_on_a_known_curve():
    # Held-out ΔL = lr² at gain 1 (gain = 0.5 × the pilots' Δ* reach 2); pilots degrade 1.5× more.
    pilot_calls, held_calls = [], []
    rows = held_out_cases(_quadratic_runner(1.5, pilot_calls), _quadratic_runner(1.0, held_calls),
                          (0.01, 0.02, 0.04), (0.01, 0.02, 0.04, 0.08), (0.25, 0.5, 0.75, 0.95), 0.5,
                          extra_factor=3.0, max_extra=1)
    # ε between the grid's ΔL 1e-4 and 6.4e-3, geometric: 1e-4 · 64^f
    assert [r["epsilon"] for r in rows] == pytest.approx([2.8284271e-4, 8e-4, 2.2627417e-3, 5.1984153e-3], rel=1e-7)
    assert all(r["gain"] == pytest.approx(1.0) for r in rows)
    # true safe LR: chord of lr² between the grid LRs around sqrt(ε), e.g. 0.02 + (8e-4 - 4e-4)/1.2e-3 · 0.02
    assert [r["true_safe_lr"] for r in rows] == pytest.approx([0.0160948, 0.0266667, 0.0455228, 0.0699868], rel=1e-5)
    # recommendation: chord of 1.5·lr² between the pilots; the last ε needed the extra pilot 0.04 × 3 = 0.12
    assert [r["recommended_lr"] for r in rows] == pytest.approx([0.0129521, 0.0222222, 0.0384749, 0.0516601],
                                                                rel=1e-5)
    assert [r["n_extra_pilots"] for r in rows] == [0, 0, 0, 1] and pilot_calls == [0.01, 0.02, 0.04, 0.12]
    assert all(r["status"] == "ok" and r["within_epsilon"] and r["inside_pilot_range"] for r in rows)
    # the check is a held-out run at the recommended LR, read at the gain: ΔL = rec²
    assert held_calls[:4] == [0.01, 0.02, 0.04, 0.08] and held_calls[4:] == [r["recommended_lr"] for r in rows]
    assert [r["observed_delta_L"] for r in rows] == pytest.approx([r["recommended_lr"] ** 2 for r in rows], rel=1e-9)
    assert [r["ratio_to_true"] for r in rows] == pytest.approx([0.804735, 0.833333, 0.845180, 0.738138], rel=1e-5)


def test_held_out_cases_report_unsafe_recommendations_and_unmeasured_ratios():
    # Pilots that degrade half as much as the held-out runs recommend too high an LR: not within ε.
    rows = held_out_cases(_quadratic_runner(0.5, []), _quadratic_runner(1.0, []), (0.01, 0.02, 0.04),
                          (0.01, 0.02, 0.04, 0.08), (0.25,), 0.5, max_extra=0)
    (r,) = rows
    assert r["recommended_lr"] == pytest.approx(0.02 + (2.8284271e-4 - 2e-4) / 6e-4 * 0.02, rel=1e-6)
    assert r["observed_delta_L"] == pytest.approx(r["recommended_lr"] ** 2) and r["within_epsilon"] is False
    # ε above every pilot without extra pilots: not certified, nothing run, no ratio
    held = []
    (r,) = held_out_cases(_quadratic_runner(1.5, []), _quadratic_runner(1.0, held), (0.01, 0.02, 0.04),
                          (0.01, 0.02, 0.04, 0.08), (0.95,), 0.5, max_extra=0)
    assert r["status"] == "cannot-certify" and r["recommended_lr"] is None and r["within_epsilon"] is None
    assert math.isnan(r["ratio_to_true"]) and r["true_safe_lr"] == pytest.approx(0.0699868, rel=1e-5)
    assert held == [0.01, 0.02, 0.04, 0.08]
    with pytest.raises(ValueError, match="two held-out grid LRs"):
        held_out_cases(_quadratic_runner(1.5, []), _quadratic_runner(1.0, []), (0.01, 0.02), (0.01, 5.0), (0.5,), 9.0)
