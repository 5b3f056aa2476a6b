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


def test_bootstrap_ci_contains_mean_and_shrinks_with_n():
    rng = np.random.default_rng(1)
    small = rng.normal(3.0, 1.0, size=30)
    large = rng.normal(3.0, 1.0, size=3000)
    lo_s, hi_s = bootstrap_ci(small, n_boot=500)
    lo_l, hi_l = bootstrap_ci(large, n_boot=500)
    assert lo_s <= small.mean() <= hi_s
    assert lo_l <= large.mean() <= hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s) / 3


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
        assert lo - 0.01 <= true <= hi + 0.01 and hi - lo < 0.05  # covers the generating exponent, narrowly
    assert fit.r2 > 0.99


def test_fit_power_law_rejects_nonpositive():
    with pytest.raises(ValueError):
        fit_power_law([1.0, -1.0], {"x": [1.0, 2.0]})


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
