"""Theorem 3.1 as a measurement: the tightest envelope ΔL(P1) ≤ k1·Δ* + k2·Δ*^β·λ over trajectories.

The paper states (informally) that at a fixed domain gain Δ* the general degradation obeys
ΔL(P1) ≤ k1 Δ* + k2 Δ*² λ, with k1, k2 constants of model and data that it does not give. We
cannot check unknown constants, so we ask a sharper question: given measured points
(Δ*, ΔL, λ) from trajectories run at several step sizes λ, what is the *tightest* pair k1, k2 ≥ 0
for which the bound holds at every point, and does that bound still hold for step sizes it was
not fitted on? "Tightest" means minimal total slack Σ (bound − ΔL), which is linear in (k1, k2),
so the fit is a two-variable linear program (scipy's HiGHS solver).

Pipeline:
1. ``cost_at_gain`` (the package's one equal-gain interpolation; ``interpolate_at_common_delta`` is
   its adapter for ``(λ, Δ*, ΔL)`` arrays) puts every trajectory on a shared grid of Δ* values, read
   where each grid value is first reached between two checkpoints after step 0; nothing is
   extrapolated and no chord is drawn from the origin.
2. ``fit_envelope`` solves the LP for a given β (2 is the paper's); ``fit_best_beta`` scans β.
3. ``holdout_validity`` fits on some λ and counts violations on the held-out λ.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import linprog

DEFAULT_BETAS = tuple(np.round(np.arange(0.5, 4.01, 0.1), 10))


def cost_at_gain(traj: pd.DataFrame, gains: Sequence[float], by: Sequence[str], gain: str = "delta_star",
                 cost: str = "delta_L", step: str = "step", min_step: int = 1) -> pd.DataFrame:
    """Interpolated cost (e.g. ΔL(P1)) at each target gain, per trajectory (rows grouped by ``by``).

    The one equal-gain interpolation of the package. Only brackets between two measured
    checkpoints with ``step >= min_step`` are used: with the default the origin (step 0) never
    serves as one end, so a first step that overshoots a grid value leaves that value unmeasured
    instead of drawing a chord from the origin. The gain is taken as first reached along the
    trajectory (the first bracket that crosses it). Targets without a bracket get NaN
    (``measured=False``) and are counted by the callers.
    """
    rows = []
    for key, g in traj.groupby(list(by), sort=True):
        g = g[g[step] >= min_step].sort_values(step)
        x, y = g[gain].to_numpy(float), g[cost].to_numpy(float)
        key = key if isinstance(key, tuple) else (key,)
        for target in gains:
            val = _first_crossing(x, y, float(target))
            rows.append({**dict(zip(by, key)), gain: float(target), cost: val, "measured": not math.isnan(val)})
    # Same columns when nothing could be measured (no gains, no trajectories): callers count and drop.
    return pd.DataFrame(rows, columns=[*by, gain, cost, "measured"])


def _first_crossing(x: np.ndarray, y: np.ndarray, target: float) -> float:
    """y linearly interpolated where x first reaches ``target`` (NaN when no bracket holds it)."""
    for i in range(len(x) - 1):
        lo, hi = x[i], x[i + 1]
        if lo == target:
            return float(y[i])
        if min(lo, hi) <= target <= max(lo, hi) and hi != lo:
            return float(y[i] + (target - lo) / (hi - lo) * (y[i + 1] - y[i]))
    if len(x) and x[-1] == target:
        return float(y[-1])
    return float("nan")


def interpolate_at_common_delta(trajectories, grid, min_step: int = 1) -> pd.DataFrame:
    """Read each trajectory's ΔL(P1) at common domain-gain values Δ* (through :func:`cost_at_gain`).

    ``trajectories`` is a list of ``(lam, delta_star_array, delta_L_array)`` (one entry per
    checkpoint, in time order, the first being step 0). Each grid value is read where Δ* first
    reaches it, between two checkpoints after step 0 (a first step that overshoots a grid value
    leaves it unmeasured: no chord from the origin). Grid values a trajectory does not bracket are
    not extrapolated; they are listed in ``frame.attrs["unreached"]`` as (trajectory, g) pairs.

    ``min_step`` is :func:`cost_at_gain`'s: 0 lets the measured step-0 point (Δ* = ΔL = 0) serve as a
    bracket's end, for callers that read a gain reached inside the first step (the advisor's pilots).

    Returns a tidy frame with columns ``lam, delta_star, delta_L, trajectory``.
    """
    grid = np.asarray(grid, dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)):
        raise ValueError("interpolate_at_common_delta: grid must be a non-empty 1-D array of finite values")
    frames = []
    for k, traj in enumerate(trajectories):
        if len(traj) != 3:
            raise ValueError(f"trajectory {k}: expected (lam, delta_star_array, delta_L_array), got {len(traj)} items")
        lam, ds, dl = traj
        ds = np.asarray(ds, dtype=np.float64)
        dl = np.asarray(dl, dtype=np.float64)
        if ds.shape != dl.shape or ds.ndim != 1:
            raise ValueError(f"trajectory {k} (lam={lam}): delta_star and delta_L must be 1-D arrays of equal length, "
                             f"got shapes {ds.shape} and {dl.shape}")
        if not (np.all(np.isfinite(ds)) and np.all(np.isfinite(dl))):
            raise ValueError(f"trajectory {k} (lam={lam}): non-finite delta_star or delta_L values")
        frames.append(pd.DataFrame({"trajectory": k, "lam": float(lam), "step": np.arange(len(ds)),
                                    "delta_star": ds, "delta_L": dl}))
    at = cost_at_gain(pd.concat(frames, ignore_index=True), grid, by=["trajectory", "lam"],
                      min_step=min_step) if frames else None
    if at is None:
        frame = pd.DataFrame(columns=["lam", "delta_star", "delta_L", "trajectory"])
        frame.attrs["unreached"] = []
        return frame
    unreached = [(int(r.trajectory), float(r.delta_star)) for r in at[~at["measured"]].itertuples()]
    frame = at[at["measured"]][["lam", "delta_star", "delta_L", "trajectory"]].reset_index(drop=True)
    frame.attrs["unreached"] = unreached
    return frame


@dataclass(frozen=True)
class EnvelopeFit:
    """The tightest valid envelope ΔL ≤ k1·Δ* + k2·Δ*^β·λ on the points it was fitted to."""

    k1: float
    k2: float
    beta: float
    total_slack: float
    n_points: int = 0
    mean_relative_slack: float = float("nan")

    def bound(self, delta_star, lam) -> np.ndarray:
        """The envelope's value at (Δ*, λ)."""
        ds = np.asarray(delta_star, dtype=np.float64)
        return self.k1 * ds + self.k2 * ds**self.beta * np.asarray(lam, dtype=np.float64)


def _as_points(delta_star, delta_L, lam) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ds = np.asarray(delta_star, dtype=np.float64).ravel()
    dl = np.asarray(delta_L, dtype=np.float64).ravel()
    lm = np.broadcast_to(np.asarray(lam, dtype=np.float64), ds.shape).ravel()
    if not (ds.shape == dl.shape == lm.shape):
        raise ValueError(f"fit_envelope: delta_star, delta_L, lam need equal lengths, got {ds.shape}, {dl.shape}, {lm.shape}")
    if ds.size == 0:
        raise ValueError("fit_envelope: no points to fit")
    if not (np.all(np.isfinite(ds)) and np.all(np.isfinite(dl)) and np.all(np.isfinite(lm))):
        raise ValueError("fit_envelope: non-finite input values")
    if np.any(ds < 0) or np.any(lm <= 0):
        raise ValueError("fit_envelope: needs delta_star >= 0 (a domain gain) and lam > 0")
    return ds, dl, lm


def fit_envelope(delta_star, delta_L, lam, beta: float = 2.0) -> EnvelopeFit:
    """Tightest k1, k2 ≥ 0 with ΔL_i ≤ k1·Δ*_i + k2·Δ*_i^β·λ_i at every point i.

    Minimizes the total slack Σ_i (k1 a_i + k2 b_i − ΔL_i), a_i = Δ*_i, b_i = Δ*_i^β λ_i — the
    constant Σ ΔL_i drops out, so the objective is k1 Σa + k2 Σb. Points with ΔL ≤ 0 (general
    performance improved) are satisfied by any non-negative k and only add to the slack.
    Raises if no non-negative (k1, k2) can bound the points (a positive ΔL at Δ* = 0).
    """
    ds, dl, lm = _as_points(delta_star, delta_L, lam)
    a = ds
    b = ds**beta * lm
    bad = (dl > 0) & (a == 0) & (b == 0)
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"fit_envelope: point {i} has delta_L={dl[i]:.3g} > 0 at delta_star=0; "
                         "no envelope of the form k1*Δ* + k2*Δ*^β*λ can bound it")
    # Scale columns so the LP is well conditioned whatever the units of Δ* and λ.
    sa = max(float(np.max(a)), 1e-300)
    sb = max(float(np.max(b)), 1e-300)
    res = linprog(
        c=[a.sum() / sa, b.sum() / sb],
        A_ub=-np.column_stack([a / sa, b / sb]),
        b_ub=-dl,
        bounds=[(0, None), (0, None)],
        method="highs",
    )
    if res.status != 0:
        raise RuntimeError(f"fit_envelope: linear program failed ({res.message})")
    k1, k2 = float(res.x[0] / sa), float(res.x[1] / sb)
    # The LP solver meets constraints to ~1e-9 relative; scale k up so the bound holds exactly.
    bound = k1 * a + k2 * b
    positive = dl > 0
    if np.any(positive & (bound <= 0)):
        raise RuntimeError("fit_envelope: LP returned an envelope that is zero where delta_L > 0")
    if np.any(positive):
        factor = float(np.max(dl[positive] / bound[positive]))
        if factor > 1.0:
            k1, k2 = k1 * factor, k2 * factor
            bound = k1 * a + k2 * b
    slack = bound - dl
    rel = float(np.mean(slack[positive] / dl[positive])) if np.any(positive) else float("nan")
    return EnvelopeFit(k1=k1, k2=k2, beta=float(beta), total_slack=float(slack.sum()),
                       n_points=int(ds.size), mean_relative_slack=rel)


def fit_best_beta(delta_star, delta_L, lam, betas: Sequence[float] = DEFAULT_BETAS) -> EnvelopeFit:
    """Scan β and return the envelope with the least total slack (the β the data prefer).

    Total slack is comparable across β because the points (and Σ ΔL) are the same. When several β
    tie (e.g. the envelope uses only k1, so β does not matter) the one closest to 2 is returned.
    """
    fits = [fit_envelope(delta_star, delta_L, lam, beta=float(b)) for b in betas]
    slacks = np.array([f.total_slack for f in fits])
    best = slacks.min()
    tied = [f for f in fits if f.total_slack <= best + 1e-9 * max(abs(best), 1e-300)]
    return min(tied, key=lambda f: abs(f.beta - 2.0))


def holdout_validity(df: pd.DataFrame, fit_lams, test_lams, beta: float | None = 2.0,
                     rtol: float = 1e-9) -> dict:
    """Fit the envelope on rows with λ in ``fit_lams``; count bound violations on ``test_lams``.

    ``df`` has columns ``lam, delta_star, delta_L`` (e.g. from ``interpolate_at_common_delta``).
    ``beta=None`` picks the best β on the fitting rows. A held-out point violates the bound when
    ΔL > bound·(1 + rtol) + rtol·|ΔL| — the tolerance only absorbs rounding.
    Returns k1, k2, beta, holdout_violation_rate, n_fit, n_test, max_violation (largest
    ΔL − bound on held-out points; ≤ 0 means every point is bounded) and max_violation_ratio.
    """
    for col in ("lam", "delta_star", "delta_L"):
        if col not in df.columns:
            raise KeyError(f"holdout_validity: frame lacks column '{col}' (have {list(df.columns)})")
    lam_vals = df["lam"].to_numpy(dtype=np.float64)
    fit_mask = np.isin(lam_vals, np.asarray(fit_lams, dtype=np.float64))
    test_mask = np.isin(lam_vals, np.asarray(test_lams, dtype=np.float64))
    if not fit_mask.any():
        raise ValueError(f"holdout_validity: no rows with lam in fit_lams={list(fit_lams)}")
    if not test_mask.any():
        raise ValueError(f"holdout_validity: no rows with lam in test_lams={list(test_lams)}")
    if np.any(fit_mask & test_mask):
        raise ValueError("holdout_validity: fit_lams and test_lams overlap")
    fit_df, test_df = df[fit_mask], df[test_mask]
    args = (fit_df["delta_star"], fit_df["delta_L"], fit_df["lam"])
    fit = fit_best_beta(*args) if beta is None else fit_envelope(*args, beta=beta)
    bound = fit.bound(test_df["delta_star"], test_df["lam"])
    y = test_df["delta_L"].to_numpy(dtype=np.float64)
    excess = y - bound
    violated = excess > rtol * (np.abs(bound) + np.abs(y))
    positive = bound > 0
    ratio = float(np.max(y[positive] / bound[positive])) if np.any(positive) else float("nan")
    return {
        "k1": fit.k1,
        "k2": fit.k2,
        "beta": fit.beta,
        "holdout_violation_rate": float(np.mean(violated)),
        "n_fit": int(fit_mask.sum()),
        "n_test": int(test_mask.sum()),
        "n_violations": int(violated.sum()),
        "max_violation": float(np.max(excess)),
        "max_violation_ratio": ratio,
        "fit_total_slack": fit.total_slack,
        "fit_lams": sorted(float(x) for x in np.unique(lam_vals[fit_mask])),
        "test_lams": sorted(float(x) for x in np.unique(lam_vals[test_mask])),
    }


def lambda_excess_exponents(df: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict:
    """How the λ-dependent part of ΔL scales with Δ* and λ, measured directly rather than via the LP.

    The excess e = ΔL(Δ*, λ) − ΔL(Δ*, λ_min) over the smallest step size is what the paper's
    k2·Δ*²·λ term describes (it predicts e = k2·Δ*²·(λ − λ_min)). Regressing log e on log Δ* and
    log(λ − λ_min) over the points with e > 0 gives ``beta_excess`` (paper: 2) and ``lam_exponent``
    (paper: 1) with bootstrap CIs (resampling whole step sizes would leave too few groups, so points
    are resampled). This separates the λ-dependence from the λ-free part of ΔL (the gradient-flow
    path), which the LP's k1·Δ* term must cover and which can pull the LP's least-slack β away from
    the λ-scaling when that part is curved in Δ*.
    """
    from talr_theory.stats import fit_power_law

    for col in ("lam", "delta_star", "delta_L"):
        if col not in df.columns:
            raise KeyError(f"lambda_excess_exponents: frame lacks column '{col}'")
    lam_min = float(df["lam"].min())
    base = df[df["lam"] == lam_min].groupby("delta_star")["delta_L"].mean()
    rest = df[df["lam"] > lam_min]
    excess = rest["delta_L"].to_numpy(np.float64) - rest["delta_star"].map(base).to_numpy(np.float64)
    ok = np.isfinite(excess) & (excess > 0)
    out = {"lam_min": lam_min, "n_points": int(len(rest)), "n_positive": int(ok.sum())}
    ds = rest["delta_star"].to_numpy(np.float64)[ok]
    dlam = rest["lam"].to_numpy(np.float64)[ok] - lam_min
    if ok.sum() >= 4 and np.unique(ds).size >= 2 and np.unique(dlam).size >= 2:
        fit = fit_power_law(excess[ok], {"delta_star": ds, "lam_excess": dlam}, n_boot=n_boot, seed=seed)
        out.update(beta_excess=fit.exponent("delta_star"), beta_excess_ci=list(fit.ci("delta_star")),
                   lam_exponent=fit.exponent("lam_excess"), lam_exponent_ci=list(fit.ci("lam_excess")),
                   r2=fit.r2)
    else:
        out.update(beta_excess=None, beta_excess_ci=None, lam_exponent=None, lam_exponent_ci=None, r2=None)
    return out
