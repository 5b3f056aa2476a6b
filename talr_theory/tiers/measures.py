"""The statistics the tiers share: equal-gain readings, paired ratios and differences, slopes, shape checks.

Every function here is pure (frames and arrays in, numbers or frames out) and knows nothing about
claims or verdicts; :mod:`talr_theory.tiers.protocol` and the tiers turn its numbers into verdicts
through :func:`talr_theory.claims.claim_verdict`.

- :func:`cost_at_gain` (defined in ``theory.envelope``): the one equal-gain interpolation, never a
  chord from step 0;
- :func:`paired_ratio` / :func:`paired_difference`: a method against a baseline over matched pairs,
  with an interval resampling whole units (instances, seeds). A ratio needs both costs positive;
  where ΔL can be ≤ 0 the difference keeps every pair, and the ratio counts what it drops;
- :func:`fixed_gain_slopes`, :func:`lr_pair_at_gain`, :func:`frontier`: Theorem 3.1 at equal gain;
- :func:`direction_ratios`: Theorem 3.2's direction, λ_max at the smallest s over the largest;
- :func:`eps_power_law_shape`: whether λ_max(ε) is a power law at all before an exponent is fitted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from talr_theory.stats import bootstrap_ci, fit_power_law
from talr_theory.theory.envelope import cost_at_gain

__all__ = ["cost_at_gain", "frontier", "PairedRatio", "paired_ratio", "PairedDifference", "paired_difference",
           "fixed_gain_slopes", "per_unit_mean_ci", "lr_pair_at_gain", "direction_ratios", "PowerLawShape",
           "eps_power_law_shape", "MIN_LOCAL_SLOPE", "MAX_SLOPE_RANGE"]

_NAN_CI = (float("nan"), float("nan"))


def frontier(at_gain: pd.DataFrame, over: str, by: Sequence[str], cost: str = "delta_L") -> pd.DataFrame:
    """The least cost over ``over`` (e.g. the learning rates) at each gain, per ``by`` group."""
    ok = at_gain[at_gain[cost].notna()]
    idx = ok.groupby(list(by))[cost].idxmin()
    return ok.loc[idx].reset_index(drop=True)


@dataclass(frozen=True)
class PairedRatio:
    """Geometric-mean ratio numerator/denominator over matched pairs, with a bootstrap CI over units.

    ``n_dropped``: pairs left out because a value was missing or not positive (no logarithm).
    """

    estimate: float
    ci: tuple[float, float]
    n_pairs: int
    n_units: int
    n_dropped: int = 0


def paired_ratio(num, den, units, n_boot: int = 2000, seed: int = 0, min_units: int = 3) -> PairedRatio:
    """exp(mean log(num/den)) over pairs with both values positive; the CI resamples whole units.

    Fewer than ``min_units`` units give no interval (NaN): a bootstrap over one or two units is not one.
    Whether the interval has enough units to decide a claim is the verdict's business (``n_units``).
    """
    num, den, units = np.asarray(num, float), np.asarray(den, float), np.asarray(units)
    ok = np.isfinite(num) & np.isfinite(den) & (num > 0) & (den > 0)
    dropped = int((~ok).sum())
    if not ok.any():
        return PairedRatio(float("nan"), _NAN_CI, 0, 0, dropped)
    logr, u = np.log(num[ok] / den[ok]), units[ok]
    uniq = pd.unique(u)
    per_unit = np.array([[logr[u == k].sum(), (u == k).sum()] for k in uniq], dtype=float)
    est = float(math.exp(per_unit[:, 0].sum() / per_unit[:, 1].sum()))
    if len(uniq) < min_units:
        return PairedRatio(est, _NAN_CI, int(ok.sum()), len(uniq), dropped)
    lo, hi = bootstrap_ci(per_unit, statistic=lambda a: a[:, 0].sum() / a[:, 1].sum(), n_boot=n_boot, seed=seed)
    return PairedRatio(est, (math.exp(lo), math.exp(hi)), int(ok.sum()), len(uniq), dropped)


@dataclass(frozen=True)
class PairedDifference:
    """Mean over units of each unit's mean difference (method − baseline), with a bootstrap CI over units."""

    estimate: float
    ci: tuple[float, float]
    n_pairs: int
    n_units: int
    n_dropped: int = 0


def per_unit_mean_ci(values, units, n_boot: int = 2000, seed: int = 0,
                     min_units: int = 3) -> tuple[float, tuple[float, float], int]:
    """Mean over units of each unit's mean value, its bootstrap CI over units, and the number of units."""
    values, units = np.asarray(values, float), np.asarray(units)
    if not len(values):
        return float("nan"), _NAN_CI, 0
    frame = pd.DataFrame({"u": units, "v": values})
    per_unit = frame.groupby("u", sort=True)["v"].mean().to_numpy(float)
    ci = bootstrap_ci(per_unit, n_boot=n_boot, seed=seed) if len(per_unit) >= min_units else _NAN_CI
    return float(per_unit.mean()), ci, len(per_unit)


def paired_difference(a, b, units, n_boot: int = 2000, seed: int = 0, min_units: int = 3) -> PairedDifference:
    """a − b over matched pairs with both values finite (any sign); per-unit means, units resampled."""
    a, b, units = np.asarray(a, float), np.asarray(b, float), np.asarray(units)
    ok = np.isfinite(a) & np.isfinite(b)
    est, ci, n_units = per_unit_mean_ci(a[ok] - b[ok], units[ok], n_boot=n_boot, seed=seed, min_units=min_units)
    return PairedDifference(est, ci, int(ok.sum()), n_units, int((~ok).sum()))


def fixed_gain_slopes(at_gain: pd.DataFrame, unit: str, lr: str = "lam", gain: str = "delta_star",
                      cost: str = "delta_L", min_lrs: int = 3) -> pd.DataFrame:
    """Slope of log cost on log LR at each measured gain, per unit (``stats.fit_power_law``'s exponent).

    ``at_gain`` is :func:`cost_at_gain`'s output (one row per (unit, LR, gain)). Points with a
    non-positive or unmeasured cost are left out (no logarithm); a (unit, gain) cell with fewer than
    ``min_lrs`` learning rates left gives no slope. Columns: unit, gain, slope, n_lrs.
    """
    rows = []
    ok = at_gain[np.isfinite(at_gain[cost].to_numpy(float)) & (at_gain[cost] > 0)]
    for (u, g), sub in ok.groupby([unit, gain], sort=True):
        if sub[lr].nunique() < min_lrs:
            continue
        fit = fit_power_law(sub[cost].to_numpy(float), {"lr": sub[lr].to_numpy(float)}, n_boot=0)
        rows.append({unit: u, gain: float(g), "slope": fit.exponent("lr"), "n_lrs": int(sub[lr].nunique())})
    return pd.DataFrame(rows, columns=[unit, gain, "slope", "n_lrs"])


def lr_pair_at_gain(at_gain: pd.DataFrame, unit: str, lr: str = "lam", gain: str = "delta_star",
                    cost: str = "delta_L") -> pd.DataFrame:
    """Per (unit, gain): the cost at the smallest and at the largest LR that measured that gain.

    Columns: unit, gain, lr_small, lr_large, cost_small, cost_large (pairs for ``paired_ratio``).
    """
    rows = []
    ok = at_gain[np.isfinite(at_gain[cost].to_numpy(float))]
    for (u, g), sub in ok.groupby([unit, gain], sort=True):
        if sub[lr].nunique() < 2:
            continue
        sub = sub.sort_values(lr)
        rows.append({unit: u, gain: float(g), "lr_small": float(sub[lr].iloc[0]), "lr_large": float(sub[lr].iloc[-1]),
                     "cost_small": float(sub[cost].iloc[0]), "cost_large": float(sub[cost].iloc[-1])})
    return pd.DataFrame(rows, columns=[unit, gain, "lr_small", "lr_large", "cost_small", "cost_large"])


def direction_ratios(lam: pd.DataFrame, unit: str, s: str = "s", eps: str = "epsilon",
                     value: str = "lambda_max") -> pd.DataFrame:
    """Per (unit, ε): λ_max at the unit's smallest s and at its largest s (pairs for ``paired_ratio``).

    Theorem 3.2's direction (fewer hard tokens, larger safe step) is λ_max(s_low) / λ_max(s_high) > 1
    at the same ε. Columns: unit, epsilon, s_low, s_high, lam_low, lam_high.
    """
    rows = []
    for (u, e), sub in lam.groupby([unit, eps], sort=True):
        if sub[s].nunique() < 2:
            continue
        sub = sub.sort_values(s)
        rows.append({unit: u, eps: float(e), "s_low": sub[s].iloc[0], "s_high": sub[s].iloc[-1],
                     "lam_low": float(sub[value].iloc[0]), "lam_high": float(sub[value].iloc[-1])})
    return pd.DataFrame(rows, columns=[unit, eps, "s_low", "s_high", "lam_low", "lam_high"])


# A power law has one local log-log slope. λ_max that hardly grows with ε (local slope below this)
# sits near a zero of ΔL(P1) (the first-order term is negative: ΔL first goes below zero), and a
# range of local slopes wider than the span of docs/theory.md's two regimes (1 → ½) is no single law.
MIN_LOCAL_SLOPE = 0.1
MAX_SLOPE_RANGE = 0.5


@dataclass(frozen=True)
class PowerLawShape:
    """Local slopes d log λ_max / d log ε between consecutive ε, summarized over units (medians)."""

    is_power_law: bool
    min_slope: float
    max_slope: float
    slope_range: float
    n_units: int
    reason: str


def eps_power_law_shape(lam: pd.DataFrame, unit: str, eps: str = "epsilon", value: str = "lambda_max",
                        min_slope: float = MIN_LOCAL_SLOPE, max_range: float = MAX_SLOPE_RANGE) -> PowerLawShape:
    """Whether λ_max follows a power law in ε: increasing everywhere with a nearly constant local slope.

    Per unit (rows of one ``unit`` value, e.g. an (instance, s) pair) the local slopes between
    consecutive ε are taken; the medians over units of their minimum and of their range decide.
    Units with fewer than two finite positive λ_max have no slope and are left out.
    """
    mins, maxs = [], []
    for _, sub in lam.groupby(unit, sort=True):
        sub = sub[np.isfinite(sub[value].to_numpy(float)) & (sub[value] > 0)].sort_values(eps)
        if len(sub) < 2:
            continue
        d = np.diff(np.log(sub[value].to_numpy(float))) / np.diff(np.log(sub[eps].to_numpy(float)))
        mins.append(float(d.min()))
        maxs.append(float(d.max()))
    if not mins:
        return PowerLawShape(False, float("nan"), float("nan"), float("nan"), 0, "no unit has two finite λ_max")
    lo, hi = float(np.median(mins)), float(np.median(maxs))
    rng = float(np.median(np.subtract(maxs, mins)))
    reasons = []
    if lo < min_slope:
        reasons.append(f"λ_max barely grows with ε somewhere (median least local slope {lo:.2f} < {min_slope:g})")
    if rng > max_range:
        reasons.append(f"its local slope varies by {rng:.2f} (> {max_range:g}) across ε")
    return PowerLawShape(not reasons, lo, hi, rng, len(mins), "; ".join(reasons))
