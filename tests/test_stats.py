"""Bootstrap intervals: the hierarchical bootstrap covers a known mean, and reduces to the ordinary one."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from talr_theory.stats import bootstrap_ci, expanded_alpha, hierarchical_bootstrap_ci, satterthwaite_df


def _seeds_and_units(rng, mean: float, n_seeds: int = 10, n_units: int = 10, seed_sd: float = 1.0,
                     unit_sd: float = 1.0) -> list[np.ndarray]:
    """A known model: unit value = mean + seed effect + unit noise."""
    effects = rng.normal(0.0, seed_sd, size=n_seeds)
    return [mean + e + rng.normal(0.0, unit_sd, size=n_units) for e in effects]


def test_hierarchical_bootstrap_covers_the_known_mean():
    rng = np.random.default_rng(2024)
    mean, reps = 0.7, 200
    hits = 0
    for r in range(reps):
        lo, hi = hierarchical_bootstrap_ci(_seeds_and_units(rng, mean), n_boot=1000, seed=r)
        hits += lo <= mean <= hi
    assert hits / reps >= 0.88, f"coverage {hits / reps:.3f}"


def test_expanded_quantile_of_a_normal_bootstrap_is_the_t_interval():
    # A bootstrap distribution of the mean of n normal units is N(x̄, s²(n−1)/n / n) (plug-in variance): read
    # at the expanded quantile it gives x̄ ± t_{0.025, n−1} · s/√n, the exact t interval.
    for n in (3, 5, 10, 30):
        s, a = 1.7, expanded_alpha(0.95, n - 1)
        half = -sps.norm.ppf(a) * s * np.sqrt((n - 1) / n) / np.sqrt(n)
        assert half == pytest.approx(sps.t.ppf(0.975, n - 1) * s / np.sqrt(n), rel=1e-10)
    assert expanded_alpha(0.95, np.inf) == pytest.approx(0.025) and expanded_alpha(0.9, 0) == pytest.approx(0.05)


def test_expanded_interval_covers_at_ten_units_where_the_percentile_one_does_not():
    rng = np.random.default_rng(11)
    reps, hits = 800, {True: 0, False: 0}
    for r in range(reps):
        x = rng.normal(size=10)
        for expand in (True, False):
            lo, hi = bootstrap_ci(x, n_boot=1000, seed=r, expand=expand)
            hits[expand] += lo <= 0.0 <= hi
    # measured: 0.939 vs 0.889 (nominal 0.95; the plain percentile interval's known shortfall at n = 10)
    assert hits[True] / reps >= 0.925 and hits[False] / reps <= hits[True] / reps - 0.02, hits


def test_satterthwaite_degrees_of_freedom_by_hand():
    assert satterthwaite_df(0.0, 2.0, 1, 30) == pytest.approx(29)       # one seed: n − 1
    assert satterthwaite_df(3.0, 0.0, 5, 5) == pytest.approx(4)         # one unit per seed: seeds − 1
    assert satterthwaite_df(1.0, 1.0, 5, 125) == pytest.approx(4.0 / (1 / 4 + 1 / 120))
    assert satterthwaite_df(1.0, 1e-9, 5, 125) == pytest.approx(4, rel=1e-6)  # seeds dominate: ~ seeds − 1


def test_hierarchical_interval_widens_with_few_dominant_seeds_and_not_with_quiet_ones():
    # 5 seeds × 24 units. Seeds dominating: the percentile interval covers ~85%, the expanded one ≥ 90%.
    # Seeds with no effect: the expanded interval is hardly wider (its degrees of freedom count the units).
    rng = np.random.default_rng(5)
    reps, hits, widths = 300, {True: 0, False: 0}, {True: 0.0, False: 0.0}
    for r in range(reps):
        groups = _seeds_and_units(rng, 0.0, n_seeds=5, n_units=24, seed_sd=1.0)
        for expand in (True, False):
            lo, hi = hierarchical_bootstrap_ci(groups, n_boot=800, seed=r, expand=expand)
            hits[expand] += lo <= 0.0 <= hi
    assert hits[True] / reps >= 0.9 > hits[False] / reps, hits
    for r in range(40):
        groups = _seeds_and_units(rng, 0.0, n_seeds=5, n_units=24, seed_sd=0.0)
        for expand in (True, False):
            lo, hi = hierarchical_bootstrap_ci(groups, n_boot=800, seed=r, expand=expand)
            widths[expand] += hi - lo
    assert widths[True] / widths[False] < 1.2, widths


def test_resampling_units_only_would_not_cover():
    # The same data pooled (seed effect ignored) gives too narrow an interval: the test above can fail.
    rng = np.random.default_rng(7)
    mean, reps = 0.7, 100
    hits = sum(lo <= mean <= hi for lo, hi in
               (bootstrap_ci(np.concatenate(_seeds_and_units(rng, mean)), n_boot=500, seed=r) for r in range(reps)))
    assert hits / reps < 0.80


def test_one_group_is_an_ordinary_bootstrap():
    units = np.random.default_rng(3).exponential(size=200)
    lo_h, hi_h = hierarchical_bootstrap_ci([units], n_boot=6000, seed=1)
    lo_o, hi_o = bootstrap_ci(units, n_boot=6000, seed=2)
    width = hi_o - lo_o
    assert abs(lo_h - lo_o) < 0.08 * width and abs(hi_h - hi_o) < 0.08 * width


def test_vectorized_mean_equals_the_same_resamples_by_hand():
    groups = [np.array([1.0, 2.0, 3.0]), np.array([10.0]), np.array([[5.0], [7.0]]).ravel()]
    fast = hierarchical_bootstrap_ci(groups, n_boot=300, seed=5)
    slow = hierarchical_bootstrap_ci(groups, statistic=lambda a: float(np.sum(a) / a.size), n_boot=300, seed=5)
    assert fast == pytest.approx(slow, abs=1e-12)


def test_paired_rows_and_a_ratio_statistic():
    # Rows (method, baseline) with method = 0.5 · baseline exactly: every resample's ratio is 0.5.
    groups = [np.column_stack([0.5 * b, b]) for b in (np.arange(1.0, 6.0), np.arange(2.0, 9.0))]
    lo, hi = hierarchical_bootstrap_ci(groups, statistic=lambda a: a[:, 0].sum() / a[:, 1].sum(), n_boot=200)
    assert lo == pytest.approx(0.5) and hi == pytest.approx(0.5)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="non-empty group"):
        hierarchical_bootstrap_ci([np.array([])])
    with pytest.raises(ValueError, match="n_boot"):
        hierarchical_bootstrap_ci([np.ones(3)], n_boot=0)


def test_power_law_fit_recovers_known_exponents_and_says_when_it_cannot():
    from talr_theory.stats import fit_power_law

    eps = np.repeat([0.01, 0.03, 0.1, 0.3], 3)
    s = np.tile([1.0, 4.0, 16.0], 4)
    y = 2.0 * eps**1.0 * s**-0.5
    fit = fit_power_law(y, {"eps": eps, "s": s}, n_boot=200)
    assert fit.exponent("eps") == pytest.approx(1.0) and fit.exponent("s") == pytest.approx(-0.5)
    assert fit.log_prefactor == pytest.approx(np.log(2.0))
    few = fit_power_law([1.0], {"eps": [0.1]})
    assert np.isnan(few.exponent("eps")) and few.n == 1
