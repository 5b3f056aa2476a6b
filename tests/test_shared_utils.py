"""Tests of the shared helpers: bootstrap intervals, power-law fits, the crash-safe results table, configs."""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing as mp
import os
import signal

import numpy as np
import pytest

from talr_theory.configs import add_dataclass_args, dataclass_from_args, to_dict
from talr_theory.results import ResultsTable
from talr_theory.stats import bootstrap_ci, fit_power_law


def test_bootstrap_ci_matches_normal_theory_and_shrinks_with_n():
    # The percentile interval of a mean is close to mean ± 1.96·sd/√n; a bug in the resampling
    # (e.g. resampling along the wrong axis, or a wrong quantile) moves it far from that.
    rng = np.random.default_rng(1)
    small = rng.normal(3.0, 1.0, size=30)
    large = rng.normal(3.0, 1.0, size=3000)
    lo_s, hi_s = bootstrap_ci(small, n_boot=2000)
    lo_l, hi_l = bootstrap_ci(large, n_boot=500)
    half = 1.96 * small.std(ddof=1) / np.sqrt(small.size)
    assert (hi_s - lo_s) == pytest.approx(2 * half, rel=0.2)
    assert (lo_s + hi_s) / 2 == pytest.approx(small.mean(), abs=0.2 * half)
    assert (hi_l - lo_l) < (hi_s - lo_s) / 5


def test_fit_power_law_recovers_known_exponents():
    rng = np.random.default_rng(0)
    eps = np.repeat(np.logspace(-4, -1, 6), 5)
    s = np.tile(np.array([1, 2, 4, 8, 16.0]), 6)
    y = 0.7 * eps**1.0 * s**-0.5 * np.exp(rng.normal(0, 0.02, size=eps.size))
    fit = fit_power_law(y, {"epsilon": eps, "s": s}, n_boot=300)
    assert fit.exponent("epsilon") == pytest.approx(1.0, abs=0.02)
    assert fit.exponent("s") == pytest.approx(-0.5, abs=0.02)
    for name, true in (("epsilon", 1.0), ("s", -0.5)):
        lo, hi = fit.ci(name)
        assert lo <= true <= hi
        assert hi - lo < 0.05
    assert fit.r2 > 0.99


def test_power_law_interval_covers_the_true_exponent_at_its_nominal_rate():
    # Coverage of the grouped bootstrap: data from a known power law with a random per-group offset
    # (correlated points inside a group) and point noise. 200 replications; the 95% interval must cover
    # the true exponent at least 88% of the time. An interval that ignores the grouping (resampling
    # points instead of groups) covers far less often, and so does a biased estimator.
    rng = np.random.default_rng(123)
    eps_levels = np.logspace(-3, -1, 4)
    n_groups, hits, reps = 10, 0, 200
    for rep in range(reps):
        eps = np.tile(eps_levels, n_groups)
        groups = np.repeat(np.arange(n_groups), eps_levels.size)
        slope_g = 0.8 + rng.normal(0, 0.08, size=n_groups)  # each group has its own slope: the unit of variation
        y = np.exp(rng.normal(0, 0.3, size=n_groups))[groups] * eps ** slope_g[groups] \
            * np.exp(rng.normal(0, 0.05, size=eps.size))
        fit = fit_power_law(y, {"epsilon": eps}, groups=groups, n_boot=200, seed=rep)
        lo, hi = fit.ci("epsilon")
        hits += lo <= 0.8 <= hi
    assert hits / reps >= 0.88, hits / reps


def test_power_law_interval_is_reported_as_computed():
    # The interval is exactly the expanded percentile interval of the grouped bootstrap (5 groups: quantile
    # Φ(√(5/4) · t_{0.025, 4})), recomputed here independently (same generator, same resampling).
    from talr_theory.stats import PowerLawFit

    rng = np.random.default_rng(7)
    eps = np.tile(np.logspace(-3, -1, 3), 5)
    groups = np.repeat(np.arange(5), 3)
    y = eps ** (0.7 + rng.normal(0, 0.2, size=5))[groups]
    fit = fit_power_law(y, {"epsilon": eps}, groups=groups, n_boot=300, seed=11)
    boot_rng = np.random.default_rng(11)
    logx, logy, boots = np.log(eps), np.log(y), []
    for _ in range(300):
        pick = boot_rng.integers(0, 5, size=5)
        idx = np.concatenate([np.flatnonzero(groups == p) for p in pick])
        boots.append(np.polyfit(logx[idx], logy[idx], 1)[0])
    from scipy import stats as sps

    a = sps.norm.cdf(np.sqrt(5 / 4) * sps.t.ppf(0.025, 4))
    assert fit.ci("epsilon") == pytest.approx(tuple(np.quantile(boots, [a, 1 - a])), rel=1e-9)
    # An estimate outside its own interval is flagged, not hidden.
    skewed = PowerLawFit(("x",), (1.0,), ((1.1, 1.4),), 0.0, 0.9, 10, 5, 300)
    assert skewed.outside("x")
    assert fit.outside("epsilon") == (not fit.ci("epsilon")[0] <= fit.exponent("epsilon") <= fit.ci("epsilon")[1])
    # Fewer than 3 groups: no interval at all.
    two = fit_power_law(y[:6], {"epsilon": eps[:6]}, groups=groups[:6], n_boot=100)
    assert np.isnan(two.ci("epsilon")).all()


def _writer(root, n):
    table = ResultsTable(root, ["run", "step"])
    for step in range(n):
        table.append({"run": "a", "step": step, "value": float(step) ** 2}, config={"lr": 1e-3})


def test_results_table_is_idempotent_and_survives_sigkill(tmp_path):
    # A writer killed mid-way leaves only whole rows; rerunning completes without duplicates.
    proc = mp.get_context("spawn").Process(target=_writer, args=(tmp_path, 10_000))
    proc.start()
    proc.join(timeout=3.0)
    if proc.is_alive():
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
    partial = ResultsTable(tmp_path, ["run", "step"]).load()
    assert len(partial) == partial["step"].nunique()
    _writer(tmp_path, 50)
    _writer(tmp_path, 50)
    frame = ResultsTable(tmp_path, ["run", "step"]).consolidate()
    steps = set(frame["step"])
    assert set(range(50)) <= steps
    assert len(frame) == len(steps)
    assert (tmp_path / "results.parquet").exists() and (tmp_path / "results.csv").exists()
    assert not list((tmp_path / "rows").glob("*.tmp"))
    assert "config_json" in frame.columns


def test_results_table_requires_key_fields(tmp_path):
    with pytest.raises(KeyError, match="step"):
        ResultsTable(tmp_path, ["run", "step"]).append({"run": "a"})


@dataclasses.dataclass
class _Demo:
    lr: float = dataclasses.field(default=1e-4, metadata={"help": "learning rate"})
    methods: tuple[str, ...] = ("sft", "talr")
    quick: bool = False
    name: str | None = None


def test_dataclass_flags_roundtrip():
    parser = argparse.ArgumentParser()
    add_dataclass_args(parser, _Demo)
    ns = parser.parse_args(["--lr", "0.5", "--methods", "sft,dft", "--quick"])
    cfg = dataclass_from_args(_Demo, ns)
    assert cfg == _Demo(lr=0.5, methods=("sft", "dft"), quick=True, name=None)
    assert to_dict(cfg)["methods"] == ["sft", "dft"]
    assert "learning rate" in parser.format_help()
