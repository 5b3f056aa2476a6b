"""The shared measures and the claim verdicts built from them, on constructed data with known answers.

Each claim computation has a case whose answer is known in advance and a flipped case (the data
reversed) whose verdict must flip from agrees to disagrees.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from talr_theory.tiers import measures, protocol

LRS = (1.0, 2.0, 4.0, 8.0)
GAINS = (0.1, 0.2, 0.3)


def _at_gain(n_units: int, lr_exponent: float, noise: float = 0.02) -> pd.DataFrame:
    """cost_at_gain-shaped rows: ΔL = c_u · Δ* · λ^lr_exponent, c_u drawn per unit."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(n_units):
        c = math.exp(rng.normal(0, noise))
        rows += [{"instance": u, "lam": lam, "delta_star": g, "delta_L": c * g * lam ** lr_exponent, "measured": True}
                 for lam in LRS for g in GAINS]
    return pd.DataFrame(rows)


def test_paired_ratio_is_a_geometric_mean_and_counts_drops():
    num = np.array([2.0, 8.0, 1.0, 1.0, 4.0, 4.0, -1.0, np.nan])
    den = np.array([1.0, 2.0, 1.0, 2.0, 2.0, 1.0, 1.0, 1.0])
    units = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    r = measures.paired_ratio(num, den, units, n_boot=200)
    assert r.estimate == pytest.approx(np.exp(np.mean(np.log(num[:6] / den[:6]))))
    assert (r.n_pairs, r.n_units, r.n_dropped) == (6, 3, 2)
    # every unit has the same ratio: the interval collapses onto it
    same = measures.paired_ratio(np.full(12, 3.0), np.ones(12), np.arange(12) // 2, n_boot=200)
    assert same.ci == pytest.approx((3.0, 3.0))
    two = measures.paired_ratio(num[:4], den[:4], units[:4])
    assert math.isnan(two.ci[0]) and two.n_units == 2


def test_paired_difference_keeps_non_positive_values():
    a = np.array([-0.5, -0.3, 0.2, 0.0, 1.0, 1.0])
    b = np.array([0.5, 0.7, 0.2, 0.0, 0.0, np.nan])
    d = measures.paired_difference(a, b, np.array([0, 0, 1, 1, 2, 2]), n_boot=200)
    # unit means: −1.0, 0.0, 1.0 (the NaN pair is dropped and counted) → mean 0
    assert d.estimate == pytest.approx(0.0)
    assert (d.n_pairs, d.n_units, d.n_dropped) == (5, 3, 1)
    assert d.ci[0] < 0 < d.ci[1]


def test_fixed_gain_slopes_recover_the_exponent():
    slopes = measures.fixed_gain_slopes(_at_gain(2, 0.5, noise=0.0), unit="instance")
    assert len(slopes) == 2 * len(GAINS)
    assert slopes["slope"].to_numpy() == pytest.approx(0.5)
    # a cell with fewer than three positive learning rates gives no slope
    few = _at_gain(1, 0.5)
    few.loc[few["lam"] > 2.0, "delta_L"] = -1.0
    assert len(measures.fixed_gain_slopes(few, unit="instance")) == 0


def test_lr_pairs_take_the_extreme_learning_rates():
    pairs = measures.lr_pair_at_gain(_at_gain(1, 1.0, noise=0.0), unit="instance")
    assert pairs["lr_small"].eq(1.0).all() and pairs["lr_large"].eq(8.0).all()
    assert (pairs["cost_large"] / pairs["cost_small"]).to_numpy() == pytest.approx(8.0)


def test_eps_power_law_shape_tells_a_law_from_a_plateau():
    eps = np.array([1e-4, 1e-3, 1e-2, 1e-1])

    def frame(fn):
        return pd.DataFrame([{"unit": u, "epsilon": e, "lambda_max": (1 + 0.1 * u) * fn(e)} for u in range(4)
                             for e in eps])

    law = measures.eps_power_law_shape(frame(np.sqrt), "unit")
    assert law.is_power_law and law.min_slope == pytest.approx(0.5) and law.slope_range == pytest.approx(0.0)
    flat = measures.eps_power_law_shape(frame(lambda e: 2.0 + e), "unit")  # λ_max sits near a zero of ΔL
    assert not flat.is_power_law and "barely grows" in flat.reason
    bent = measures.eps_power_law_shape(frame(lambda e: e if e < 1e-3 else 1e-3 * (e / 1e-3) ** 0.1), "unit")
    assert not bent.is_power_law and "varies" in bent.reason


# ---- claims: a known answer, and the flip ----------------------------------------------------


@pytest.mark.parametrize("exponent, paper, stricter", [(0.5, "agrees", "agrees"), (-0.5, "disagrees", "disagrees")])
def test_theorem_3_1_flips_with_the_data(exponent, paper, stricter):
    """ΔL ∝ λ^0.5: the small LR degrades less (ratio 8^-0.5) and the slope is 0.5 — both agree;
    ΔL ∝ λ^-0.5 (larger steps degrade less) makes both disagree."""
    (vp, vs), slopes, pairs = protocol.thm31_verdicts(_at_gain(12, exponent), "instance", "toy", "q", n_boot=300)
    assert (vp.claim, vp.protocol, vs.protocol) == ("thm3.1_smaller_steps[q]", "paper", "stricter")
    assert vp.estimate == pytest.approx(8.0 ** -exponent, rel=0.05)
    assert vs.estimate == pytest.approx(exponent, abs=1e-9)
    assert (vp.verdict, vs.verdict) == (paper, stricter)
    assert vp.n_units == 12 and len(pairs) == 12 * len(GAINS)


def test_theorem_3_1_with_too_few_units_is_uninformative():
    (vp, vs), _, _ = protocol.thm31_verdicts(_at_gain(5, 0.5), "instance", "toy", "q", n_boot=100)
    assert vp.verdict == vs.verdict == "uninformative" and "interval withheld: 5 units < 10" in vp.note.lower()
    assert math.isnan(vp.ci_lo) and math.isnan(vs.ci_hi) and math.isfinite(vp.estimate)
    # a draw above the units that no interval resamples caps them
    (vp, _), _, _ = protocol.thm31_verdicts(_at_gain(12, 0.5), "instance", "toy", "q", n_boot=100, n_units=1)
    assert vp.verdict == "uninformative" and vp.n_units == 1


def _lambda_frame(n: int, s_exponent: float) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame([{"instance": i, "s": s, "epsilon": e, "group": i,
                          "lambda_max": math.exp(rng.normal(0, 0.05)) * e * s ** s_exponent}
                         for i in range(n) for s in (1, 2, 4, 8) for e in (1e-3, 1e-2, 1e-1)])


@pytest.mark.parametrize("s_exponent, label", [(-0.5, "agrees"), (0.5, "disagrees")])
def test_direction_flips_with_the_data(s_exponent, label):
    v, pairs = protocol.direction_verdict(_lambda_frame(12, s_exponent), "instance", "toy", "q", n_boot=300)
    assert v.claim == "thm3.2_direction[q]" and v.protocol == "paper"
    assert v.estimate == pytest.approx(8.0 ** -s_exponent, rel=0.05)  # λ(s=1) / λ(s=8)
    assert v.verdict == label and len(pairs) == 12 * 3


@pytest.mark.parametrize("a, ci, label", [(1.0, [0.95, 1.05], "agrees"), (0.5, [0.45, 0.55], "disagrees")])
def test_exponent_verdicts_flip_and_respect_the_shape(a, ci, label):
    fit = {"eps_exponent": a, "eps_exponent_ci": ci, "s_exponent": -0.5, "s_exponent_ci": [-0.6, -0.4],
           "s_column": "s", "n_groups": 12, "n_points": 60, "n_dropped": 0}
    eps_v, s_v = protocol.exponent_verdicts(fit, "toy", "q")
    assert eps_v.verdict == label and s_v.verdict == "agrees" and eps_v.n_units == 12
    plateau = measures.PowerLawShape(False, 0.0, 0.2, 0.2, 12, "λ_max barely grows with ε")
    for v in protocol.exponent_verdicts(fit, "toy", "q", shape=plateau):
        assert v.verdict == "uninformative" and math.isnan(v.estimate) and "Not fitted" in v.note
    sign = protocol.exponent_verdicts(fit, "toy", "q", s_verdict=False, s_reason="a sign step")
    assert sign[1].verdict == "code-check" and "a sign step" in sign[1].note
