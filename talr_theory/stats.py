"""Small statistical helpers shared by every tier: bootstrap intervals and log-log power-law fits.

Everything is float64 numpy. Bootstrap intervals are percentile intervals over resampled units
(examples, instances or trajectories), with a seeded generator so results are reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


def bootstrap_ci(
    units: np.ndarray,
    statistic: Callable[[np.ndarray], float] = np.mean,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over the first axis of ``units``."""
    units = np.asarray(units, dtype=np.float64)
    if units.shape[0] == 0:
        raise ValueError("bootstrap_ci needs at least one unit")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, units.shape[0], size=(n_boot, units.shape[0]))
    stats = np.array([statistic(units[i]) for i in idx], dtype=np.float64)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


@dataclass(frozen=True)
class PowerLawFit:
    """Fit of log y = log c + Σ_k a_k log x_k by least squares, with bootstrap CIs per exponent."""

    names: tuple[str, ...]
    exponents: tuple[float, ...]
    cis: tuple[tuple[float, float], ...]
    log_prefactor: float
    r2: float
    n: int
    n_groups: int = 0
    n_boot_valid: int = 0

    def exponent(self, name: str) -> float:
        return self.exponents[self.names.index(name)]

    def ci(self, name: str) -> tuple[float, float]:
        return self.cis[self.names.index(name)]

    def outside(self, name: str) -> bool:
        """True when the estimate lies outside its own percentile interval (bootstrap bias)."""
        lo, hi = self.ci(name)
        est = self.exponent(name)
        return bool(np.isfinite(lo) and np.isfinite(hi) and not (lo <= est <= hi))


def _lstsq_loglog(logy: np.ndarray, logx: np.ndarray) -> np.ndarray:
    design = np.column_stack([np.ones_like(logy), logx])
    coef, *_ = np.linalg.lstsq(design, logy, rcond=None)
    return coef


def fit_power_law(
    y: Sequence[float],
    regressors: dict[str, Sequence[float]],
    groups: Sequence[int] | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> PowerLawFit:
    """Regress log y on log of each regressor; bootstrap over ``groups`` (default: over points).

    Resampling whole groups (e.g. all ε values of one random instance) keeps correlated points
    together so the interval is not falsely narrow. Intervals are percentile intervals reported as
    computed: an estimate outside its own interval is a sign of bias and is left visible
    (``PowerLawFit.outside``). Fewer than 3 groups give no interval (NaN): a bootstrap over one or two
    units cannot describe the spread.
    """
    y = np.asarray(y, dtype=np.float64)
    names = tuple(regressors)
    logx = np.column_stack([np.log(np.asarray(regressors[k], dtype=np.float64)) for k in names])
    if np.any(y <= 0) or not np.all(np.isfinite(logx)):
        raise ValueError("fit_power_law needs positive y and positive regressors")
    if len(y) < len(names) + 1:  # too few points to identify the exponents: say so with NaNs, not warnings
        nan = float("nan")
        return PowerLawFit(names, (nan,) * len(names), ((nan, nan),) * len(names), nan, nan, len(y))
    logy = np.log(y)
    coef = _lstsq_loglog(logy, logx)
    resid = logy - np.column_stack([np.ones_like(logy), logx]) @ coef
    ss_tot = float(np.sum((logy - logy.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid**2)) / ss_tot if ss_tot > 0 else 1.0

    groups_arr = np.arange(len(y)) if groups is None else np.asarray(groups)
    unique = np.unique(groups_arr)
    members = [np.flatnonzero(groups_arr == g) for g in unique]
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(unique), size=len(unique))
        idx = np.concatenate([members[p] for p in pick])
        sub = logx[idx]
        # A resample whose regressor does not vary cannot identify its exponent: skip it.
        if np.linalg.matrix_rank(np.column_stack([np.ones(len(idx)), sub])) < sub.shape[1] + 1:
            continue
        boots.append(_lstsq_loglog(logy[idx], sub)[1:])
    boots_arr = np.array(boots) if boots else np.full((1, len(names)), np.nan)
    alpha = (1.0 - level) / 2.0
    cis = []
    for k in range(len(names)):
        if len(unique) < 3 or len(boots) < max(20, n_boot // 2):
            cis.append((float("nan"), float("nan")))
            continue
        lo, hi = np.quantile(boots_arr[:, k], [alpha, 1.0 - alpha])
        cis.append((float(lo), float(hi)))
    return PowerLawFit(names, tuple(float(c) for c in coef[1:]), tuple(cis), float(coef[0]), r2, len(y),
                       len(unique), len(boots))


def _hierarchical_indices(sizes: np.ndarray, n_boot: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (into the stacked groups) and a validity mask for ``n_boot`` two-stage resamples.

    Each replicate draws len(sizes) groups with replacement, then, within each drawn group, as many of
    its rows with replacement. Groups of unequal size are padded to the largest; the mask marks the
    rows that were really drawn. Shapes: (n_boot, n_groups · max_size).
    """
    n, width = len(sizes), int(sizes.max())
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    picks = rng.integers(0, n, size=(n_boot, n))
    picked_sizes = sizes[picks][..., None]
    within = np.floor(rng.random((n_boot, n, width)) * picked_sizes).astype(np.int64)
    valid = np.arange(width)[None, None, :] < picked_sizes
    idx = np.where(valid, offsets[picks][..., None] + within, 0)
    return idx.reshape(n_boot, n * width), valid.reshape(n_boot, n * width)


def _replicate_stats(stacked: np.ndarray, sizes: np.ndarray, n_boot: int, rng: np.random.Generator,
                     statistic: Callable[[np.ndarray], float]) -> np.ndarray:
    """``statistic`` of ``n_boot`` two-stage resamples of the stacked groups (np.mean: all at once)."""
    idx, valid = _hierarchical_indices(sizes, n_boot, rng)
    if statistic is np.mean:
        rows = stacked[idx]  # (n_boot, slots, ...)
        mask = valid.reshape(valid.shape + (1,) * (rows.ndim - 2))
        per_row = int(np.prod(rows.shape[2:], dtype=np.int64))
        return np.where(mask, rows, 0.0).reshape(n_boot, -1).sum(axis=1) / (valid.sum(axis=1) * per_row)
    return np.array([statistic(stacked[i[v]]) for i, v in zip(idx, valid)], dtype=np.float64)


def hierarchical_bootstrap_ci(
    groups: Sequence[np.ndarray],
    statistic: Callable[[np.ndarray], float] = np.mean,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Two-stage percentile bootstrap: resample seeds (``groups``), then units within each drawn seed.

    ``groups[i]`` holds seed i's units (first axis; a unit may be a row of several columns, e.g. a
    paired (method, baseline) measurement). Each replicate draws len(groups) seeds with replacement,
    then, within each drawn seed, as many of its units with replacement, and applies ``statistic``
    to the concatenated rows. Training randomness (seeds) and evaluation randomness (units) are both
    resampled, so two runs at different seeds give intervals that can overlap. One group is an
    ordinary bootstrap over its units. ``np.mean`` (the default) is computed for all replicates at
    once; any other statistic is applied replicate by replicate.
    """
    arrs = [np.asarray(g, dtype=np.float64) for g in groups]
    arrs = [a for a in arrs if a.shape[0] > 0]
    if not arrs:
        raise ValueError("hierarchical_bootstrap_ci needs at least one non-empty group")
    if n_boot < 1:
        raise ValueError(f"hierarchical_bootstrap_ci needs n_boot >= 1, got {n_boot}")
    stacked = np.concatenate(arrs, axis=0)
    sizes = np.array([a.shape[0] for a in arrs], dtype=np.int64)
    rng = np.random.default_rng(seed)
    # Replicates are drawn in chunks so that memory stays bounded (~4M values) whatever the sizes.
    slots = len(sizes) * int(sizes.max()) * max(1, int(np.prod(stacked.shape[1:], dtype=np.int64)))
    chunk = max(1, min(n_boot, 4_000_000 // slots))
    stats = np.concatenate([_replicate_stats(stacked, sizes, min(chunk, n_boot - start), rng, statistic)
                            for start in range(0, n_boot, chunk)])
    alpha = (1.0 - level) / 2.0
    lo, hi = np.nanquantile(stats, [alpha, 1.0 - alpha])
    return float(lo), float(hi)
