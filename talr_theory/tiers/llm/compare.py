"""Paired comparisons on the tier's trajectory frame: pure functions, known-answer tested.

A trajectory frame has one row per checkpoint of a run: format, optimizer, method, lr, pair_lr, seed,
step, status, accuracy and the per-unit lists ``units_acc`` (held-out prompts, 0/1), ``units_kl`` (base
samples) and ``units_text`` (text blocks). Comparisons pair two runs by seed (the same data order) and
by unit (the same prompt, sample or block), and their intervals come from
``stats.hierarchical_bootstrap_ci``: seeds resampled, then units within each seed.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from talr_theory.stats import hierarchical_bootstrap_ci


@dataclass(frozen=True)
class Estimate:
    """A paired statistic with its hierarchical-bootstrap interval and what stands behind it."""

    estimate: float
    ci: tuple[float, float]
    n_units: int      # independent units per seed (the smallest seed)
    n_seeds: int
    n_dropped: int = 0  # unit pairs left out because a value was missing (NaN)


NO_ESTIMATE = Estimate(math.nan, (math.nan, math.nan), 0, 0)


def final_rows(traj: pd.DataFrame) -> pd.DataFrame:
    """The last checkpoint of every run (status ok) — the paper's "after the same epochs"."""
    ok = traj[traj["status"].eq("ok")]
    keys = [k for k in ("format", "optimizer", "method", "lr", "seed") if k in ok.columns]
    return ok.loc[ok.groupby(keys, sort=False)["step"].idxmax()].reset_index(drop=True)


def select(frame: pd.DataFrame, **where) -> pd.DataFrame:
    """Rows of ``frame`` matching every ``column=value`` (columns absent from the frame are ignored)."""
    sel = np.ones(len(frame), dtype=bool)
    for k, v in where.items():
        if k in frame.columns:
            sel &= (frame[k] == v).to_numpy()
    return frame[sel]


def by_seed(rows: pd.DataFrame, column: str) -> dict[int, np.ndarray]:
    """seed -> that row's per-unit values of ``column`` (one row per seed expected)."""
    out = {}
    for r in rows.itertuples(index=False):
        seed = int(r.seed)
        if seed in out:
            raise ValueError(f"two rows for seed {seed} in a paired comparison")
        out[seed] = np.asarray(list(getattr(r, column)), dtype=float)
    return out


def pair(a: dict[int, np.ndarray], b: dict[int, np.ndarray]) -> tuple[list[np.ndarray], int]:
    """Per seed present in both, the [n_units, 2] array of (a, b) unit pairs with no NaN; and the NaN count."""
    groups, dropped = [], 0
    for seed in sorted(set(a) & set(b)):
        x, y = a[seed], b[seed]
        if len(x) != len(y):
            raise ValueError(f"seed {seed}: {len(x)} units against {len(y)}; pairs need the same units")
        ok = np.isfinite(x) & np.isfinite(y)
        dropped += int((~ok).sum())
        if ok.any():
            groups.append(np.column_stack([x[ok], y[ok]]))
    return groups, dropped


def _estimate(groups: list[np.ndarray], dropped: int, statistic, n_boot: int, seed: int) -> Estimate:
    if not groups:
        return NO_ESTIMATE
    rows = np.concatenate(groups)
    with warnings.catch_warnings():  # a statistic undefined on every resample (NaN) is an answer, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        ci = hierarchical_bootstrap_ci(groups, statistic, n_boot=n_boot, seed=seed)
    return Estimate(float(statistic(rows)), ci, min(len(g) for g in groups), len(groups), dropped)


def _difference(rows: np.ndarray) -> float:
    return float(np.mean(rows[:, 0] - rows[:, 1]))


def _ratio(rows: np.ndarray) -> float:
    den = float(np.mean(rows[:, 1]))
    return float(np.mean(rows[:, 0])) / den if den > 0 else math.nan


def paired_difference(a: dict, b: dict, n_boot: int = 1000, seed: int = 0) -> Estimate:
    """mean over seeds and units of (a − b), paired by seed and unit."""
    groups, dropped = pair(a, b)
    return _estimate(groups, dropped, _difference, n_boot, seed)


def paired_ratio_of_means(a: dict, b: dict, n_boot: int = 1000, seed: int = 0) -> Estimate:
    """mean(a) / mean(b) over the paired units (no unit is dropped for a ΔL ≤ 0; NaN when mean(b) ≤ 0)."""
    groups, dropped = pair(a, b)
    return _estimate(groups, dropped, _ratio, n_boot, seed)


def units_at_accuracy(run: pd.DataFrame, level: float, column: str, min_step: int = 1) -> np.ndarray | None:
    """Per-unit ``column`` where one run's held-out accuracy first reaches ``level``.

    Interpolated linearly in accuracy between two measured checkpoints (step ≥ ``min_step``) that bracket
    the level; None when no pair of measured checkpoints brackets it (reached before the first one, or never).
    """
    run = run[run["step"] >= min_step].sort_values("step")
    acc = run["accuracy"].to_numpy(float)
    units = [np.asarray(list(u), dtype=float) for u in run[column]]
    for i in range(len(acc)):
        if acc[i] >= level:
            if acc[i] == level:
                return units[i]
            if i == 0:
                return None
            f = (level - acc[i - 1]) / (acc[i] - acc[i - 1])
            return units[i - 1] + f * (units[i] - units[i - 1])
    return None


def frontier_point(traj: pd.DataFrame, level: float, column: str, **where) -> tuple[float, dict[int, np.ndarray]]:
    """The LR (of the runs matching ``where``) with the least mean ``column`` at accuracy ``level``.

    Only LRs at which every seed's run brackets the level compete. Returns (lr, seed -> units); (NaN, {}) if none.
    """
    rows = select(traj[traj["status"].eq("ok")], **where)
    best, best_lr, best_units = math.inf, math.nan, {}
    for lr, at_lr in rows.groupby("lr", sort=True):
        got = {int(s): units_at_accuracy(g, level, column) for s, g in at_lr.groupby("seed")}
        if not got or any(v is None for v in got.values()):
            continue
        mean = float(np.mean([np.nanmean(v) for v in got.values()]))
        if mean < best:
            best, best_lr, best_units = mean, float(lr), got
    return best_lr, best_units


def selection_rule(traj: pd.DataFrame, delta: float, column: str, **where) -> pd.DataFrame:
    """Per method: the best mean held-out accuracy over (LR, checkpoint) cells whose mean ``column`` ≤ ``delta``.

    Means are over seeds. Step 0 (the base model, ΔL = 0) is a cell, so every method has an answer.
    """
    rows = select(traj[traj["status"].eq("ok")], **where)
    cells = rows.groupby(["method", "lr", "step"], as_index=False).agg(
        accuracy=("accuracy", "mean"), cost=(column, "mean"), epoch=("epoch", "mean"), n_seeds=("seed", "nunique"))
    ok = cells[cells["cost"] <= delta]
    best = ok.loc[ok.groupby("method")["accuracy"].idxmax()] if len(ok) else ok
    return best.assign(delta=delta, p1=column).reset_index(drop=True)
