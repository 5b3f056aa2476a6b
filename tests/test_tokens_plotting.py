"""The token figures draw what they are given (one curve/bar group per hue level)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from talr_theory.plotting.tokens import (
    plot_prob_by_position,
    plot_prob_distribution,
    plot_prob_ecdf,
    plot_s_contrast,
)
from talr_theory.tokens.stats import contrast


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(0)
    rows = []
    for fmt, a in (("cot", 3.0), ("label", 0.7)):
        for e in range(12):
            for t in range(20 if fmt == "cot" else 5):
                rows.append({"example_id": f"{fmt}{e}", "response_index": t, "format": fmt, "p": float(rng.beta(a, 1.0))})
    return pd.DataFrame(rows)


def test_ecdf_has_one_curve_per_group_and_threshold_lines(table):
    fig = plot_prob_ecdf(table, hue="format", thresholds=(0.1, 0.2))
    ax = fig.axes[0]
    vertical = [ln for ln in ax.lines if len(set(ln.get_xdata())) == 1]
    assert len(vertical) == 2
    assert len(ax.lines) - len(vertical) == 2  # cot and label


def test_s_contrast_bars_match_the_frame(table):
    frame = contrast({"cot": table[table.format == "cot"], "label": table[table.format == "label"]},
                     thresholds=(0.2, 0.5), n_boot=50)
    fig = plot_s_contrast(frame)
    heights = sorted(round(p.get_height(), 9) for p in fig.axes[0].patches)
    assert heights == sorted(round(v, 9) for v in frame["s"])


def test_distribution_and_position_plots_draw(table):
    for kind in ("box", "violin"):
        assert plot_prob_distribution(table, x="format", kind=kind).axes[0].get_ylim()[1] == pytest.approx(1.02)
    with pytest.raises(ValueError, match="kind"):
        plot_prob_distribution(table, kind="pie")
    assert plot_prob_by_position(table).axes[0].get_xlabel().startswith("index")
