"""The advisor's rule: from short pilot trajectories, the largest LR certified to keep ΔL(P1) ≤ ε at a gain.

Method. A short pilot trains at a few learning rates and records trajectories (Δ*, ΔL(P1)). Each
is read at the requested gain G (no extrapolation in Δ*), which gives measured points
(λ_k, ΔL_k). The recommendation never leaves the range the pilots measured:

- *bracketed* (status ``ok``): the largest pilot LR λ_s such that it and every smaller pilot LR
  measured ΔL ≤ ε, and the next pilot LR λ_u > λ_s, which measured ΔL > ε. The safe LR is where
  the chord between (λ_s, ΔL_s) and (λ_u, ΔL_u) crosses ε. ΔL(G, λ) is convex in λ in every tier
  we measured (flat for small steps, then rising fast); the chord of a convex function lies above
  it, so the chord's crossing is at or below the true one — conservative by construction, and
  always inside [λ_s, λ_u].
- every pilot safe: the safe LR lies above the largest pilot. With a pilot runner
  (:func:`advise_with_pilots`) another pilot runs higher up (×``factor``, at most ``max_extra``
  times); if the largest pilot is still safe, the status is ``cannot-certify`` (the reason says
  the safe LR is above the largest pilot, which is reported as ``largest_measured_safe_lr``).
- every pilot unsafe: likewise downwards; then ``cannot-certify`` (the safe LR is below the
  smallest pilot).
- fewer than two pilots reach the gain: ``cannot-certify``.

``recommended_lr`` is null unless the status is ``ok``. Next to it, the power law ΔL ≈ c·λ^p
(``stats.fit_power_law`` over the pilots; Theorem 3.2's λ_max ∝ ε^(1/p) at this gain) is fitted and
its solution reported as ``fit_lr`` with a 10-90 % bootstrap band over pilot LRs — for information,
and to place extra pilots; it never sets the recommendation, because an extrapolated fit is exactly
what made earlier versions recommend unsafe LRs.

:func:`held_out_cases` checks the rule against independent runs: the stage ``tiers.advisor`` (the
synthetic lab) and the real-model tier use it. Everything here is pure: no model, no training.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from talr_theory.stats import fit_power_law
from talr_theory.theory.envelope import interpolate_at_common_delta

# The advisor reads ΔL(P1) where a run first reaches the gain, also inside the first step (chord from the
# measured step 0); the stages' equal-gain comparisons never do (their default min_step is 1).
FIRST_BRACKET_STEP = 0

STATUSES = ("ok", "cannot-certify")
BAND_LEVEL = "10-90% bootstrap of the power-law solution over pilot LRs (information only)"


def check_epsilon(epsilon) -> float:
    """ε as a float; a clear error unless it is a finite number > 0."""
    try:
        eps = float(epsilon)
    except (TypeError, ValueError):
        raise ValueError(f"epsilon must be a number > 0 (a tolerance on ΔL(P1) in nats), got {epsilon!r}") from None
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"epsilon must be > 0 (a tolerance on ΔL(P1) in nats), got {epsilon}")
    return eps


def fit_power(lam: np.ndarray, dl: np.ndarray) -> tuple[float, float]:
    """(log c, p) of ΔL = c·λ^p: the one log-log fit (``stats.fit_power_law``), no interval."""
    fit = fit_power_law(dl, {"lr": lam}, n_boot=0)
    return fit.log_prefactor, fit.exponent("lr")


def solve_power(logc: float, p: float, eps: float) -> float:
    """λ with c·λ^p = ε; inf when ΔL does not grow with the LR (p at rounding level or below)."""
    if p <= 1e-6:
        return math.inf
    return math.exp((math.log(eps) - logc) / p)


def _runs(traj: pd.DataFrame):
    """(lr, run) groups: one per pilot run; a ``seed`` column marks replicate runs at the same LR."""
    return traj.groupby(["lr", "seed"] if "seed" in traj.columns else ["lr"])


def pilot_reach(traj: pd.DataFrame) -> dict[float, float]:
    """The largest Δ* each pilot LR reaches — in every one of its replicate runs (the smallest over seeds)."""
    per_run = _runs(traj)["delta_star"].max().reset_index()
    return {float(lr): float(g["delta_star"].min()) for lr, g in per_run.groupby("lr")}


def points_at_gain(traj: pd.DataFrame, gain: float) -> pd.DataFrame:
    """ΔL(P1) of each pilot LR at the moment it first reaches ``gain``.

    With replicate runs per LR (a ``seed`` column) the point is the *largest* ΔL over them — the
    upper envelope, so the bracket also covers the run-to-run spread of the seeds measured — and an
    LR counts only when every replicate reaches the gain. LRs that never do are left out.
    """
    trajs, keys = [], []
    for key, g in _runs(traj):
        g = g.sort_values("step")
        keys.append(key[0] if isinstance(key, tuple) else key)
        trajs.append((len(trajs), g["delta_star"].to_numpy(float), g["delta_L"].to_numpy(float)))
    # A pilot at a large LR often reaches the gain within its first step: the measured step-0 point
    # serves as the bracket's lower end (min_step=0), for pilots and held-out runs alike.
    at = interpolate_at_common_delta(trajs, [gain], min_step=FIRST_BRACKET_STEP).astype({"delta_L": float})
    at["lam"] = [float(keys[int(k)]) for k in at["lam"]]
    n_runs = pd.Series(keys, dtype=float).value_counts()
    # an LR with a replicate that never reaches the gain has fewer rows than runs: left out
    at = at.groupby("lam", as_index=False)["delta_L"].agg(["max", "size"])
    at = at[(at["size"].to_numpy() == n_runs.reindex(at["lam"]).to_numpy()) & np.isfinite(at["max"])]
    return at.rename(columns={"max": "delta_L"})[["lam", "delta_L"]].sort_values("lam").reset_index(drop=True)


def bracket(lams: np.ndarray, dls: np.ndarray, epsilon: float) -> tuple[str, float | None, float | None]:
    """Where ε falls among measured points sorted by LR: ('ok', λ_s, λ_u), ('above', λ_top, None) or ('below', None, λ_bottom).

    λ_s is the largest LR such that it and every smaller one measured ΔL ≤ ε (a non-monotone
    pilot never lets a safe point above an unsafe one count).
    """
    safe = dls <= epsilon
    if not safe[0]:
        return "below", None, float(lams[0])
    k = int(np.argmin(safe)) if not safe.all() else len(safe)
    if k == len(safe):
        return "above", float(lams[-1]), None
    return "ok", float(lams[k - 1]), float(lams[k])


def chord_crossing(l_s: float, d_s: float, l_u: float, d_u: float, epsilon: float) -> float:
    """λ where the chord from (λ_s, ΔL_s ≤ ε) to (λ_u, ΔL_u > ε) reaches ε; always in [λ_s, λ_u)."""
    f = (epsilon - d_s) / (d_u - d_s)
    return float(l_s + min(max(f, 0.0), 1.0) * (l_u - l_s))


def power_fit_block(lams: np.ndarray, dls: np.ndarray, epsilon: float, n_boot: int, seed: int) -> dict:
    """The power law through the positive points, its ε-solution and a bootstrap band over pilot LRs."""
    pos = dls > 0
    block = {"fit_lr": None, "band": [None, None], "log_c": None, "power_p": None}
    if pos.sum() < 2:
        return block
    lp, dp = lams[pos], dls[pos]
    logc, p = fit_power(lp, dp)
    block.update(log_c=logc, power_p=p, fit_lr=solve_power(logc, p, epsilon))
    rng = np.random.default_rng(seed)
    boots, solved = [], {}  # a resample's fit depends only on its multiset of points: each is fitted once
    for _ in range(n_boot):
        idx = rng.integers(0, len(lp), size=len(lp))
        if np.unique(lp[idx]).size >= 2:
            key = tuple(sorted(idx.tolist()))
            if key not in solved:
                solved[key] = solve_power(*fit_power(lp[idx], dp[idx]), epsilon)
            boots.append(solved[key])
    boots = [b for b in boots if math.isfinite(b)]  # a flat resample has no finite solution
    if boots:
        block["band"] = [float(x) for x in np.quantile(boots, [0.1, 0.9])]
    return block


def _verdict(lams: np.ndarray, dls: np.ndarray, epsilon: float, gain: float) -> dict:
    """status, needs, recommended_lr, bracket, reason and explanation from the measured points."""
    kind, l_s, l_u = bracket(lams, dls, epsilon)
    measured = ", ".join(f"{lam:g}: {d:.3g}" for lam, d in zip(lams, dls))
    text = f"ΔL(P1) at gain {gain:.3g} per pilot LR ({measured})"
    if kind == "ok":
        d_s, d_u = float(dls[lams == l_s][0]), float(dls[lams == l_u][0])
        rec = chord_crossing(l_s, d_s, l_u, d_u, epsilon)
        return {"status": "ok", "needs": None, "recommended_lr": rec, "largest_measured_safe_lr": l_s,
                "bracket": [l_s, l_u], "reason": None,
                "explanation": (f"{text}: ε = {epsilon:g} is crossed between pilot LRs {l_s:g} (safe) and {l_u:g} "
                                f"(unsafe); the chord between them reaches ε at {rec:.3g} (conservative for a "
                                f"ΔL convex in the LR)")}
    if kind == "above":
        return {"status": "cannot-certify", "needs": "higher", "largest_measured_safe_lr": l_s,
                "reason": (f"every pilot LR up to {l_s:g} kept ΔL(P1) ≤ ε = {epsilon:g}: the safe LR lies above the "
                           f"largest pilot; run pilots at larger LRs"),
                "explanation": text}
    return {"status": "cannot-certify", "needs": "lower",
            "reason": (f"every pilot LR from {l_u:g} up exceeded ε = {epsilon:g}: the safe LR lies below the "
                       f"smallest pilot; run pilots at smaller LRs"),
            "explanation": text}


def advise_from_trajectories(traj: pd.DataFrame, epsilon: float, gain: float | None = None,
                             n_boot: int = 1000, seed: int = 0) -> dict:
    """The advice from pilot trajectories (columns lr, step, delta_star, delta_L); see the module docstring."""
    epsilon = check_epsilon(epsilon)
    for col in ("lr", "step", "delta_star", "delta_L"):
        if col not in traj.columns:
            raise KeyError(f"pilot trajectories lack column '{col}'")
    reach = pilot_reach(traj)
    if gain is None:
        gain = 0.5 * min(reach.values())
    if not gain > 0:
        raise ValueError("the pilot runs did not improve the domain (Δ* ≤ 0): raise the pilot LRs or steps")
    at = points_at_gain(traj, gain)
    lams, dls = at["lam"].to_numpy(float), at["delta_L"].to_numpy(float)
    base = {"recommended_lr": None, "epsilon": epsilon, "gain": gain, "pilot_lrs": sorted(reach),
            "pilot_max_gain": reach, "pilot_points": at.to_dict("records"), "largest_measured_safe_lr": None,
            "fit_lr": None, "band": [None, None], "log_c": None, "power_p": None, "band_level": BAND_LEVEL}
    if len(lams) < 2:
        return {**base, "status": "cannot-certify", "needs": None,
                "reason": (f"only {len(lams)} pilot LR(s) reached the requested gain {gain:.3g} (max gains per LR: "
                           f"{', '.join(f'{lr:g}: {g:.3g}' for lr, g in reach.items())}); lower --gain or run "
                           f"longer pilots"),
                "explanation": "too few pilots reached the gain to bracket the safe LR"}
    base.update(power_fit_block(lams, dls, epsilon, n_boot, seed))
    return {**base, **_verdict(lams, dls, epsilon, gain)}


def _next_pilot(adv: dict, lrs: list[float], factor: float, max_jump: float) -> float:
    """The extra pilot's LR: ×factor beyond the range, towards the fit's answer when further, at most ×max_jump."""
    fit = adv["fit_lr"] if adv["fit_lr"] is not None and math.isfinite(adv["fit_lr"]) else None
    if adv["needs"] == "higher":
        return max(lrs) * min(max(factor, (fit / max(lrs)) if fit else factor), max_jump)
    return min(lrs) / min(max(factor, (min(lrs) / fit) if fit else factor), max_jump)


def advise_with_pilots(run_pilot: Callable[[float], pd.DataFrame], pilot_lrs: Sequence[float], epsilon: float,
                       gain: float | None = None, factor: float = 3.0, max_extra: int = 2,
                       cache: dict | None = None, n_boot: int = 1000, seed: int = 0, max_jump: float = 10.0) -> dict:
    """Advice that extends the pilot when ε is not bracketed: at most ``max_extra`` more pilots.

    Each extra pilot lies beyond the current range by ×``factor``, or by as much as the power-law
    fit's answer suggests when that lies further, never more than ×``max_jump`` (the fit only
    places the pilot; the recommendation still comes from measured points).

    ``run_pilot(lr)`` returns one trajectory (columns step, delta_star, delta_L). ``cache`` (LR →
    trajectory) lets several tolerances share pilot runs. The gain is fixed by the initial pilots
    (half the smallest gain they reach unless given), so extra pilots answer the same question.
    """
    epsilon = check_epsilon(epsilon)
    if len(pilot_lrs) < 2:
        raise ValueError("the advisor needs at least two pilot learning rates")
    if factor <= 1 or max_jump < factor or max_extra < 0:
        raise ValueError(f"advise_with_pilots: need 1 < factor <= max_jump and max_extra >= 0, got {factor}, "
                         f"{max_jump}, {max_extra}")
    cache = {} if cache is None else cache

    def frame(lrs) -> pd.DataFrame:
        for lr in lrs:
            if lr not in cache:
                cache[lr] = run_pilot(lr).assign(lr=lr)
        return pd.concat([cache[lr] for lr in lrs], ignore_index=True)

    lrs = sorted(float(x) for x in pilot_lrs)
    if gain is None:
        gain = 0.5 * min(pilot_reach(frame(lrs)).values())
    extra: list[float] = []
    while True:
        adv = advise_from_trajectories(frame(lrs), epsilon, gain, n_boot=n_boot, seed=seed)
        if adv["needs"] is None or len(extra) >= max_extra:
            break
        extra.append(_next_pilot(adv, lrs, factor, max_jump))
        lrs = sorted([*lrs, extra[-1]])
    adv["extra_pilot_lrs"] = extra
    if adv["status"] != "ok" and extra:
        adv["reason"] += f" (after {len(extra)} extra pilot(s) at {', '.join(f'{x:g}' for x in extra)})"
    return adv


def predict(advice: dict, lr: float) -> float:
    """The fitted power law's ΔL(P1) at the advice's gain for learning rate ``lr`` (NaN without a fit)."""
    if advice.get("log_c") is None:
        return float("nan")
    return math.exp(advice["log_c"]) * lr ** advice["power_p"]


def observed_at_gain(traj: pd.DataFrame, gain: float) -> float:
    """ΔL(P1) of one trajectory at the moment it first reaches ``gain`` (NaN if it never does)."""
    g = traj.sort_values("step")
    at = interpolate_at_common_delta([(1.0, g["delta_star"].to_numpy(float), g["delta_L"].to_numpy(float))], [gain],
                                     min_step=FIRST_BRACKET_STEP)
    return float(at["delta_L"].iloc[0]) if len(at) else float("nan")


def tolerances_between(dls: np.ndarray, fracs: Sequence[float]) -> list[float]:
    """Tolerances spread between the smallest and the largest measured ΔL (geometric when all are > 0)."""
    lo, hi = float(np.min(dls)), float(np.max(dls))
    if lo > 0:
        return [lo * (hi / lo) ** f for f in fracs]
    return [max(lo, 0.0) + f * (hi - max(lo, 0.0)) for f in fracs]


def true_safe_lr(grid: np.ndarray, grid_dl: np.ndarray, epsilon: float) -> tuple[str, float]:
    """The held-out grid's largest safe LR for ε: the chord between the bracketing grid LRs (NaN beyond the grid)."""
    kind, l_s, l_u = bracket(grid, grid_dl, epsilon)
    if kind != "ok":
        return kind, float("nan")  # beyond the grid: the ratio is not measured for this case
    d_s, d_u = float(grid_dl[grid == l_s][0]), float(grid_dl[grid == l_u][0])
    return kind, chord_crossing(l_s, d_s, l_u, d_u, epsilon)


def _case_row(adv: dict, eps: float, gain: float, kind: str, true_lr: float, observed: float,
              pilot_range: list[float]) -> dict:
    """One held-out case: the advice next to the held-out truth and the check run."""
    rec = adv["recommended_lr"]
    return {"epsilon": eps, "gain": gain, "status": adv["status"], "recommended_lr": rec,
            "observed_delta_L": observed,
            "within_epsilon": bool(observed <= eps * (1 + 1e-9)) if rec is not None else None,
            "inside_pilot_range": (bool(pilot_range[0] <= rec <= pilot_range[-1]) if rec is not None else None),
            "true_safe_lr": true_lr, "grid_bracket": kind,
            "ratio_to_true": rec / true_lr if rec is not None and math.isfinite(true_lr) else float("nan"),
            "n_extra_pilots": len(adv["extra_pilot_lrs"]), "reason": adv["reason"] or "",
            "fit_lr": adv["fit_lr"] if adv["fit_lr"] is not None else float("nan")}


def held_out_cases(run_pilot: Callable[[float], pd.DataFrame], run_held_out: Callable[[float], pd.DataFrame],
                   pilot_lrs: Sequence[float], grid_lrs: Sequence[float], eps_fracs: Sequence[float],
                   gain_fraction: float, extra_factor: float = 3.0, max_extra: int = 2, n_boot: int = 200,
                   seed: int = 0) -> list[dict]:
    """The advisor checked against held-out runs: one row per tolerance ε.

    ``run_pilot(lr)`` trains an advisor pilot, ``run_held_out(lr)`` an independent run (another seed,
    or the same deterministic runner); both return one trajectory (columns step, delta_star,
    delta_L). The gain is ``gain_fraction`` × the smallest gain the pilots reach. The held-out grid
    ``grid_lrs`` is read at that gain; the ε values lie between its smallest and largest ΔL
    (:func:`tolerances_between` at ``eps_fracs``). Per ε: the advice (:func:`advise_with_pilots`,
    pilots shared between tolerances, extra pilots through ``run_pilot``); the *true* largest safe
    LR from the grid (:func:`true_safe_lr`); and, when certified, a held-out run at the recommended
    LR whose ΔL at the gain is compared with ε.
    """
    if len(pilot_lrs) < 2 or len(grid_lrs) < 2:
        raise ValueError(f"held_out_cases: need at least two pilot LRs and two grid LRs, got {list(pilot_lrs)} and "
                         f"{list(grid_lrs)}")
    cache: dict[float, pd.DataFrame] = {}
    pilots = pd.concat([run_pilot(lr).assign(lr=lr) for lr in pilot_lrs], ignore_index=True)
    for lr, g in pilots.groupby("lr"):
        cache[float(lr)] = g
    gain = gain_fraction * min(pilot_reach(pilots).values())
    if not gain > 0:
        raise ValueError(f"held_out_cases: the pilots at {list(pilot_lrs)} did not improve the domain (Δ* ≤ 0)")
    grid = np.array(sorted(grid_lrs), dtype=float)
    grid_dl = np.array([observed_at_gain(run_held_out(lr), gain) for lr in grid])
    ok = np.isfinite(grid_dl)
    if ok.sum() < 2:
        raise ValueError(f"held_out_cases: fewer than two held-out grid LRs reached the gain {gain:.3g} "
                         f"(ΔL at the gain per grid LR: {dict(zip(grid.tolist(), grid_dl.tolist()))})")
    rows = []
    for eps in tolerances_between(grid_dl[ok], eps_fracs):
        adv = advise_with_pilots(run_pilot, pilot_lrs, eps, gain=gain, factor=extra_factor,
                                 max_extra=max_extra, cache=cache, n_boot=n_boot, seed=seed)
        kind, true_lr = true_safe_lr(grid[ok], grid_dl[ok], eps)
        rec = adv["recommended_lr"]
        observed = observed_at_gain(run_held_out(rec), gain) if rec is not None else float("nan")
        rows.append(_case_row(adv, eps, gain, kind, true_lr, observed, sorted(cache)))
    return rows
