"""Small statistical helpers shared by every tier: bootstrap intervals and log-log power-law fits.

Everything is float64 numpy. Bootstrap intervals are *expanded* percentile intervals over resampled
units (examples, instances, seeds, trajectories), with a seeded generator so results are reproducible.

Why expanded: a plain percentile interval over n units is too narrow for small n (its spread is the
plug-in variance, biased by (n − 1)/n, and it uses normal rather than t quantiles): at n = 10 it
covers ~91% instead of 95%, and two runs at different seeds give disjoint intervals more often than
they should. The expanded percentile interval (Hesterberg, "What teachers should know about the
bootstrap", Am. Stat. 2015, §4.5) reads the bootstrap distribution at the quantiles
α' = Φ(√(n/(n−1)) · t_{α/2, n−1}) instead of α/2, which gives a t interval's width for symmetric
statistics and keeps the percentile interval's asymmetry. For n ≥ 30 it is within a few percent of the
plain one. With seeds and units (:func:`hierarchical_bootstrap_ci`) n − 1 is the Welch–Satterthwaite
degrees of freedom of the two variance components, so 5 seeds whose spread is small next to their
units' spread are not treated as 5 units, and 5 seeds that dominate are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _sps


def expanded_alpha(level: float, df: float) -> float:
    """The lower quantile at which an expanded percentile interval reads its bootstrap distribution.

    α' = Φ(√(n/(n−1)) · t_{α/2, n−1}) with n − 1 = ``df`` and α = 1 − ``level`` (Hesterberg 2015); the
    plain percentile quantile α/2 when ``df`` is infinite. ``df`` ≤ 0 (one unit) gives α/2: nothing to widen.
    """
    alpha = (1.0 - level) / 2.0
    if not np.isfinite(df) or df <= 0:
        return alpha
    n = df + 1.0
    return float(_sps.norm.cdf(np.sqrt(n / df) * _sps.t.ppf(alpha, df)))


def _interval(stats: np.ndarray, level: float, df: float, expand: bool,
              skip_nan: bool = False) -> tuple[float, float]:
    a = expanded_alpha(level, df) if expand else (1.0 - level) / 2.0
    lo, hi = (np.nanquantile if skip_nan else np.quantile)(stats, [a, 1.0 - a])
    return float(lo), float(hi)


def bootstrap_ci(
    units: np.ndarray,
    statistic: Callable[[np.ndarray], float] = np.mean,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    expand: bool = True,
) -> tuple[float, float]:
    """Expanded percentile bootstrap interval of ``statistic`` over the first axis of ``units``.

    ``expand=False`` gives the plain percentile interval (kept for comparison; it undercovers below ~30 units).
    """
    units = np.asarray(units, dtype=np.float64)
    if units.shape[0] == 0:
        raise ValueError("bootstrap_ci needs at least one unit")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, units.shape[0], size=(n_boot, units.shape[0]))
    stats = np.array([statistic(units[i]) for i in idx], dtype=np.float64)
    return _interval(stats, level, units.shape[0] - 1, expand)


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
    together so the interval is not falsely narrow. Intervals are expanded percentile intervals over the
    groups (module docstring) reported as computed: an estimate outside its own interval is a sign of bias and is left visible
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
    cis = []
    for k in range(len(names)):
        if len(unique) < 3 or len(boots) < max(20, n_boot // 2):
            cis.append((float("nan"), float("nan")))
            continue
        cis.append(_interval(boots_arr[:, k], level, len(unique) - 1, expand=True))
    return PowerLawFit(names, tuple(float(c) for c in coef[1:]), tuple(cis), float(coef[0]), r2, len(y),
                       len(unique), len(boots))


def _hierarchical_indices(sizes: np.ndarray, n_boot: int, rng: np.random.Generator, seeds: bool = True,
                          units: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (into the stacked groups) and a validity mask for ``n_boot`` two-stage resamples.

    Each replicate draws len(sizes) groups with replacement, then, within each drawn group, as many of
    its rows with replacement. ``seeds=False`` keeps every group once (units resampled within each);
    ``units=False`` keeps each drawn group's rows as they are (groups resampled). Groups of unequal
    size are padded to the largest; the mask marks the rows that were really drawn. Shapes:
    (n_boot, n_groups · max_size).
    """
    n, width = len(sizes), int(sizes.max())
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    picks = rng.integers(0, n, size=(n_boot, n)) if seeds else np.broadcast_to(np.arange(n), (n_boot, n))
    picked_sizes = sizes[picks][..., None]
    if units:
        within = np.floor(rng.random((n_boot, n, width)) * picked_sizes).astype(np.int64)
    else:
        within = np.broadcast_to(np.arange(width), (n_boot, n, width))
    valid = np.arange(width)[None, None, :] < picked_sizes
    idx = np.where(valid, offsets[picks][..., None] + within, 0)
    return idx.reshape(n_boot, n * width), valid.reshape(n_boot, n * width)


def _replicate_stats(stacked: np.ndarray, sizes: np.ndarray, n_boot: int, rng: np.random.Generator,
                     statistic: Callable[[np.ndarray], float], seeds: bool = True, units: bool = True) -> np.ndarray:
    """``statistic`` of ``n_boot`` two-stage resamples of the stacked groups (np.mean: all at once)."""
    idx, valid = _hierarchical_indices(sizes, n_boot, rng, seeds, units)
    if statistic is np.mean:
        rows = stacked[idx]  # (n_boot, slots, ...)
        mask = valid.reshape(valid.shape + (1,) * (rows.ndim - 2))
        per_row = int(np.prod(rows.shape[2:], dtype=np.int64))
        return np.where(mask, rows, 0.0).reshape(n_boot, -1).sum(axis=1) / (valid.sum(axis=1) * per_row)
    return np.array([statistic(stacked[i[v]]) for i, v in zip(idx, valid)], dtype=np.float64)


def _resample(stacked: np.ndarray, sizes: np.ndarray, n_boot: int, rng: np.random.Generator,
              statistic: Callable[[np.ndarray], float], seeds: bool = True, units: bool = True) -> np.ndarray:
    """:func:`_replicate_stats` drawn in chunks so that memory stays bounded (~4M values) whatever the sizes."""
    slots = len(sizes) * int(sizes.max()) * max(1, int(np.prod(stacked.shape[1:], dtype=np.int64)))
    chunk = max(1, min(n_boot, 4_000_000 // slots))
    return np.concatenate([_replicate_stats(stacked, sizes, min(chunk, n_boot - start), rng, statistic, seeds, units)
                           for start in range(0, n_boot, chunk)])


def satterthwaite_df(var_seeds: float, var_units: float, n_seeds: int, n_units: int) -> float:
    """Welch–Satterthwaite degrees of freedom of a variance made of a seed part and a unit part.

    ``var_seeds`` (seeds resampled, units kept) has n_seeds − 1 degrees of freedom, ``var_units`` (units
    resampled within each seed) has n_units − n_seeds; their sum is the two-stage bootstrap's variance.
    One seed gives n_units − 1; one unit per seed gives n_seeds − 1.
    """
    parts = [(v, d) for v, d in ((var_seeds, n_seeds - 1), (var_units, n_units - n_seeds)) if d > 0 and v > 0]
    if not parts:
        return float(max(n_seeds, n_units) - 1)
    return float(sum(v for v, _ in parts) ** 2 / sum(v * v / d for v, d in parts))


def hierarchical_bootstrap_ci(
    groups: Sequence[np.ndarray],
    statistic: Callable[[np.ndarray], float] = np.mean,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    expand: bool = True,
) -> tuple[float, float]:
    """Two-stage expanded percentile bootstrap: resample seeds (``groups``), then units within each drawn seed.

    ``groups[i]`` holds seed i's units (first axis; a unit may be a row of several columns, e.g. a
    paired (method, baseline) measurement). Each replicate draws len(groups) seeds with replacement,
    then, within each drawn seed, as many of its units with replacement, and applies ``statistic``
    to the concatenated rows. Training randomness (seeds) and evaluation randomness (units) are both
    resampled, so two runs at different seeds give intervals that can overlap. The interval is read at
    the expanded quantiles (module docstring) whose degrees of freedom weigh the two sources: the
    variance with seeds only resampled and with units only resampled (``n_boot`` replicates each) go
    into :func:`satterthwaite_df`. One group is an ordinary bootstrap over its units. ``np.mean``
    (the default) is computed for all replicates at once; any other statistic replicate by replicate.
    ``expand=False`` gives the plain percentile interval (for comparison).
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
    stats = _resample(stacked, sizes, n_boot, rng, statistic)
    df = float(sizes.sum() - 1)
    if expand and len(sizes) > 1:
        v_seeds = float(np.nanvar(_resample(stacked, sizes, n_boot, rng, statistic, units=False)))
        v_units = float(np.nanvar(_resample(stacked, sizes, n_boot, rng, statistic, seeds=False)))
        df = satterthwaite_df(v_seeds, v_units, len(sizes), int(sizes.sum()))
    return _interval(stats, level, df, expand, skip_nan=True)
