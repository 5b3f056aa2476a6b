"""The experiment protocol every tier follows, and the helpers the tiers share.

A tier is one module in ``talr_theory.tiers`` with

- ``NAME``: the tier's name (``exact``, ``synthetic``, ``llm``, ...);
- ``Config``: a dataclass holding every grid it uses, with ``Config.quick(seed)`` and ``Config(seed=...)``
  (the default scale) constructors;
- ``run(cfg, out) -> TierResult``: tidy DataFrames plus a list of :class:`~talr_theory.verdicts.Verdict`;
- ``figures(result, save)``: draws its figures through ``save(fig, name)``.

``reproduce`` runs the tiers through :class:`StageStore`, which stores each finished tier under
``OUT/stages/<name>/`` with a fingerprint of its config and the package version; a stored stage whose
fingerprint differs from the current one is never reused. Per-unit rows of a long tier go through
:func:`results_table`, whose folder name carries the same fingerprint, so rows of another
configuration can never be mixed in.

Shared measurement helpers used by more than one tier live here too: the λ_max power-law verdicts,
cost-at-equal-gain interpolation (never between the origin and the first checkpoint) and paired
ratios with bootstrap intervals.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from talr_theory import __version__
from talr_theory.configs import json_safe, to_dict
from talr_theory.results import ResultsTable
from talr_theory.stats import bootstrap_ci
from talr_theory.verdicts import Verdict, code_check, verdict

# The paper's values and the honest alternative for each exponent claim (see docs/theory.md §3).
PAPER_EPS_EXPONENT, ALT_EPS_EXPONENT = 1.0, 0.5
PAPER_S_EXPONENT, ALT_S_EXPONENT = -0.5, 0.0
# Theorem 3.1's form k1·Δ* + k2·Δ*²·λ is affine in λ at fixed Δ*: log-log slope in (0, 1].
PAPER_FIXED_GAIN_SLOPE = (0.0, 1.0)


@dataclass
class TierResult:
    """What one tier measured: tidy tables, verdicts, and scalar facts (setup, fitted constants, timings)."""

    tier: str
    config: dict
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    verdicts: list[Verdict] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return json_safe({"tier": self.tier, "config": self.config, "info": self.info,
                          "verdicts": [v.to_dict() for v in self.verdicts]})

    def save(self, folder: str | os.PathLike) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, frame in self.frames.items():
            frame = frame.copy()
            for col in frame.columns:  # mixed-type object columns would break Parquet
                if frame[col].dtype == object:
                    frame[col] = frame[col].map(lambda v: v if v is None or isinstance(v, str) else json.dumps(json_safe(v)))
            frame.to_parquet(folder / f"{name}.parquet", index=False)
        (folder / "result.json").write_text(json.dumps(self.to_json(), indent=2, default=str))

    @classmethod
    def load(cls, folder: str | os.PathLike) -> TierResult:
        folder = Path(folder)
        data = json.loads((folder / "result.json").read_text())
        frames = {p.stem: pd.read_parquet(p) for p in sorted(folder.glob("*.parquet"))}
        return cls(data["tier"], data["config"], frames, [Verdict.from_dict(v) for v in data["verdicts"]],
                   data.get("info") or {})


def fingerprint(config) -> str:
    """Hash of a resolved config (dataclass or dict) and the package version."""
    payload = {"config": to_dict(config) if not isinstance(config, dict) else config, "version": __version__}
    text = json.dumps(json_safe(payload), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class StageStore:
    """Run-once stages under ``OUT/stages/<name>/``; reuse only a stage whose fingerprint matches."""

    def __init__(self, out: str | os.PathLike):
        self.dir = Path(out) / "stages"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.timings: dict[str, float] = {}
        self.resumed: list[str] = []
        self.discarded: list[str] = []

    def run(self, name: str, config, fn: Callable[[], TierResult]) -> TierResult:
        folder = self.dir / name
        fp = fingerprint(config)
        stamp = folder / "fingerprint.json"
        if stamp.exists():
            stored = json.loads(stamp.read_text())
            if stored.get("fingerprint") == fp:
                self.timings[name] = float(stored.get("seconds", 0.0))
                self.resumed.append(name)
                return TierResult.load(folder)
            warnings.warn(f"stage {name!r} in {folder} was computed with another config or package version "
                          f"(fingerprint {stored.get('fingerprint')} != {fp}); recomputing it", stacklevel=2)
            self.discarded.append(name)
        if folder.exists():
            shutil.rmtree(folder)
        t0 = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - t0
        self.timings[name] = seconds
        tmp = folder.with_name(folder.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        result.save(tmp)
        (tmp / "fingerprint.json").write_text(json.dumps({"fingerprint": fp, "version": __version__,
                                                          "seconds": seconds}))
        os.replace(tmp, folder)  # the stage counts as done only once everything is on disk
        # What was stored, not what was computed: a fresh run and a resumed one give the same values
        # (Parquet stores mixed object columns as JSON text), so the report and the readers agree.
        return TierResult.load(folder)


def results_table(out: str | os.PathLike | None, name: str, config, key_fields: Sequence[str]) -> ResultsTable | None:
    """A crash-safe per-unit table whose folder carries the config's fingerprint (None without ``out``)."""
    if out is None:
        return None
    return ResultsTable(Path(out) / "results" / f"{name}-{fingerprint(config)}", key_fields)


def ensure_rows(table: ResultsTable | None, done: pd.DataFrame | None, key: dict, compute) -> list[dict]:
    """Rows for one unit of work: read back from ``done`` (the table loaded once) when there, else computed.

    A unit's rows are appended only after the whole unit is computed, so a unit is either complete
    in the table or absent (a crash mid-unit recomputes just that unit).
    """
    if table is not None and done is not None and len(done):
        sel = np.ones(len(done), dtype=bool)
        for k, v in key.items():
            if k not in done.columns:
                sel[:] = False
                break
            sel &= (done[k] == v).to_numpy()
        if sel.any():
            return done[sel].to_dict("records")
    rows = compute()
    if table is not None:
        for r in rows:
            table.append({**r, **key})
    return rows



def collect_units(out: str | os.PathLike | None, name: str, config, key_fields: Sequence[str],
                  units: Sequence[dict], compute: Callable[..., list[dict]], progress: bool = False,
                  desc: str | None = None) -> pd.DataFrame:
    """The one resumable per-unit loop: every unit's rows, computed once and persisted under ``out``.

    ``units`` are dicts over ``key_fields``; ``compute(**unit)`` returns that unit's rows. With ``out``
    the rows go to ``results_table(out, name, config, key_fields)`` one unit at a time, so a killed run
    resumes without losing or duplicating a unit. Each returned row carries its unit's key fields.
    """
    from tqdm.auto import tqdm

    table = results_table(out, name, config, key_fields)
    done = table.load() if table is not None else None
    rows = []
    for key in tqdm(list(units), desc=desc or name, disable=not progress, leave=False):
        missing = set(key_fields) - set(key)
        if missing:
            raise ValueError(f"unit {key!r} lacks key fields {sorted(missing)}")
        for r in ensure_rows(table, done, key, lambda key=key: compute(**key)):
            rows.append({**r, **key})
    return pd.DataFrame(rows)

# ----------------------------------------------------------------------------------------------
# Verdicts from fitted exponents


def exponent_verdicts(fit: dict, tier: str, suffix: str = "", note: str = "") -> list[Verdict]:
    """``thm3.2_eps_exponent`` and (when s varied) ``thm3.2_s_exponent`` from a ``fit_lambda_max_scaling`` block."""
    tag = f"[{suffix}]" if suffix else ""
    out = [verdict(f"thm3.2_eps_exponent{tag}", tier, "exponent a of λ_max ∝ ε^a", fit.get("eps_exponent"),
                   fit.get("eps_exponent_ci"), PAPER_EPS_EXPONENT, ALT_EPS_EXPONENT,
                   note=(note + f" n_groups={fit.get('n_groups')}, n_points={fit.get('n_points')}.").strip())]
    if fit.get("s_exponent") is not None:
        out.append(verdict(f"thm3.2_s_exponent{tag}", tier, "exponent b of λ_max ∝ s^b", fit["s_exponent"],
                           fit.get("s_exponent_ci"), PAPER_S_EXPONENT, ALT_S_EXPONENT,
                           note=(note + f" s = {fit.get('s_column', 's')}; n_groups={fit.get('n_groups')}.").strip()))
    return out


def bound_check(claim: str, tier: str, n_violations: int, n_checks: int, what: str) -> Verdict:
    """A bound that holds for any logit change: a code-check counting violations."""
    return code_check(claim, tier, f"violations of {what} in {n_checks} checks", float(n_violations),
                      note="Holds for any model by construction; checks our implementation, not the theorem.")


# ----------------------------------------------------------------------------------------------
# Equal-gain comparisons


def cost_at_gain(traj: pd.DataFrame, gains: Sequence[float], by: Sequence[str], gain: str = "delta_star",
                 cost: str = "delta_L", step: str = "step", min_step: int = 1) -> pd.DataFrame:
    """Interpolated cost (e.g. ΔL(P1)) at each target gain, per trajectory (rows grouped by ``by``).

    Only brackets between two measured checkpoints with ``step >= min_step`` are used: with the
    default the origin (step 0) never serves as one end, so a first step that overshoots a grid
    value leaves that value unmeasured instead of drawing a chord from the origin. The gain is
    taken as first reached along the trajectory (the first bracket that crosses it). Targets
    without a bracket get NaN (``measured=False``) and are counted by the callers.
    """
    rows = []
    for key, g in traj.groupby(list(by), sort=True):
        g = g[g[step] >= min_step].sort_values(step)
        x, y = g[gain].to_numpy(float), g[cost].to_numpy(float)
        key = key if isinstance(key, tuple) else (key,)
        for target in gains:
            val = float("nan")
            for i in range(len(x) - 1):
                lo, hi = x[i], x[i + 1]
                if min(lo, hi) <= target <= max(lo, hi) and hi != lo:
                    f = (target - lo) / (hi - lo)
                    val = float(y[i] + f * (y[i + 1] - y[i]))
                    break
                if lo == target:
                    val = float(y[i])
                    break
            if math.isnan(val) and len(x) and x[-1] == target:
                val = float(y[-1])
            rows.append({**dict(zip(by, key)), gain: float(target), cost: val, "measured": not math.isnan(val)})
    # Same columns when nothing could be measured (no gains, no trajectories): callers count and drop.
    return pd.DataFrame(rows, columns=[*by, gain, cost, "measured"])


def frontier(at_gain: pd.DataFrame, over: str, by: Sequence[str], cost: str = "delta_L") -> pd.DataFrame:
    """The least cost over ``over`` (e.g. the learning rates) at each gain, per ``by`` group."""
    ok = at_gain[at_gain[cost].notna()]
    idx = ok.groupby(list(by))[cost].idxmin()
    return ok.loc[idx].reset_index(drop=True)


@dataclass(frozen=True)
class PairedRatio:
    """Geometric-mean ratio numerator/denominator over matched pairs, with a bootstrap CI over units."""

    estimate: float
    ci: tuple[float, float]
    n_pairs: int
    n_units: int


def paired_ratio(num: np.ndarray, den: np.ndarray, units: np.ndarray, n_boot: int = 2000, seed: int = 0,
                 min_units: int = 3) -> PairedRatio:
    """exp(mean log(num/den)) over pairs with both values positive; CI resamples whole units.

    Fewer than ``min_units`` units give no interval (NaN): a bootstrap over one or two units is not one.
    """
    num, den, units = np.asarray(num, float), np.asarray(den, float), np.asarray(units)
    ok = np.isfinite(num) & np.isfinite(den) & (num > 0) & (den > 0)
    if not ok.any():
        return PairedRatio(float("nan"), (float("nan"), float("nan")), 0, 0)
    logr, u = np.log(num[ok] / den[ok]), units[ok]
    uniq = pd.unique(u)
    per_unit = np.array([[logr[u == k].sum(), (u == k).sum()] for k in uniq], dtype=float)
    est = float(math.exp(per_unit[:, 0].sum() / per_unit[:, 1].sum()))
    if len(uniq) < min_units:
        return PairedRatio(est, (float("nan"), float("nan")), int(ok.sum()), len(uniq))
    lo, hi = bootstrap_ci(per_unit, statistic=lambda a: a[:, 0].sum() / a[:, 1].sum(), n_boot=n_boot, seed=seed)
    return PairedRatio(est, (math.exp(lo), math.exp(hi)), int(ok.sum()), len(uniq))


def ratio_verdict(claim: str, tier: str, quantity: str, ratio: PairedRatio, note: str = "") -> Verdict:
    """A 'less degradation' claim as a ratio: paper value [0, 1] (ratio below one)."""
    return verdict(claim, tier, quantity, ratio.estimate, ratio.ci, (0.0, 1.0), None,
                   note=(note + f" {ratio.n_pairs} matched pairs over {ratio.n_units} bootstrap units.").strip())


# ----------------------------------------------------------------------------------------------
# Theorem 3.1 at fixed domain gain (used by every tier with multi-step trajectories)


def fixed_gain_slopes(at_gain: pd.DataFrame, unit: str, lr: str = "lam", gain: str = "delta_star",
                      cost: str = "delta_L", min_lrs: int = 3) -> pd.DataFrame:
    """Slope of log cost on log LR at each measured gain, per bootstrap unit.

    ``at_gain`` is :func:`cost_at_gain`'s output (one row per (unit, LR, gain)). Points with a
    non-positive or unmeasured cost are left out (no logarithm); a (unit, gain) cell with fewer than
    ``min_lrs`` learning rates left gives no slope. Columns: unit, gain, slope, n_lrs.
    """
    rows = []
    ok = at_gain[np.isfinite(at_gain[cost].to_numpy(float)) & (at_gain[cost] > 0)]
    for (u, g), sub in ok.groupby([unit, gain], sort=True):
        if sub[lr].nunique() < min_lrs:
            continue
        slope = float(np.polyfit(np.log(sub[lr].to_numpy(float)), np.log(sub[cost].to_numpy(float)), 1)[0])
        rows.append({unit: u, gain: float(g), "slope": slope, "n_lrs": int(sub[lr].nunique())})
    return pd.DataFrame(rows, columns=[unit, gain, "slope", "n_lrs"])


def fixed_gain_slope_verdict(slopes: pd.DataFrame, unit: str, tier: str, suffix: str = "", note: str = "",
                             n_boot: int = 2000, seed: int = 0, min_units: int = 3) -> Verdict:
    """``thm3.1_fixed_gain_slope``: mean over units of each unit's mean slope; CI resamples units.

    Theorem 3.1's form k1·Δ* + k2·Δ*²·λ is affine in λ at fixed Δ*, so its log-log slope lies in
    (0, 1]: paper value [0, 1]. Fewer than ``min_units`` units give no interval.
    """
    tag = f"[{suffix}]" if suffix else ""
    per_unit = slopes.groupby(unit)["slope"].mean().to_numpy(float) if len(slopes) else np.array([])
    est = float(per_unit.mean()) if len(per_unit) else float("nan")
    ci = (bootstrap_ci(per_unit, n_boot=n_boot, seed=seed) if len(per_unit) >= min_units
          else (float("nan"), float("nan")))
    return verdict(f"thm3.1_fixed_gain_slope{tag}", tier, "slope of log ΔL(P1) on log LR at fixed Δ*", est, ci,
                   PAPER_FIXED_GAIN_SLOPE, None,
                   note=(note + f" {len(slopes)} (unit, Δ*) slopes over {len(per_unit)} bootstrap units.").strip())


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
