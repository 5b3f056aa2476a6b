"""Figures read without the README: words on every axis and legend (never a raw column name), the model, data and
protocol named, compared panels on one y axis, seeds drawn as a mean with a band, fitted slopes written."""

from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from talr_theory.plotting import figure_text  # noqa: E402

# Names our plotting code derives internally; they are as unreadable as the table's own columns.
INTERNAL = {"run", "lr_label", "panel", "value", "metric", "group", "s_used", "excess"}


def assert_readable(fig, *frames: pd.DataFrame, must_name: tuple[str, ...] = ()) -> dict:
    """No axis label, legend title or legend entry equals a column name of the drawn frames; ``must_name``
    words appear somewhere in the titles or captions. Returns the figure's words."""
    words = figure_text(fig)
    raw = set(INTERNAL).union(*(set(f.columns) for f in frames))
    # a legend entry may be a data value that happens to equal a column name elsewhere (P1 kind "exact")
    values = set().union(*(set(f[c].dropna().astype(str)) for f in frames for c in f.columns
                           if not pd.api.types.is_numeric_dtype(f[c])))
    for kind in ("axis", "legend_title", "legend"):
        leaked = [w for w in words[kind] if w.strip() in raw and not (kind == "legend" and w.strip() in values)]
        assert not leaked, f"raw column name(s) as {kind}: {leaked}"
    prose = " ".join(" ".join(words["title"] + words["text"]).split())  # captions are wrapped
    for name in must_name:
        assert name in prose, f"{name!r} is not named in the titles or captions: {prose[:300]}"
    plt.close(fig)
    return words


# --- constructed tables with known content ------------------------------------------------------------------


def sweep_table(n_seeds: int = 2) -> pd.DataFrame:
    rows = []
    for method, lr, seed, step in itertools.product(("sft", "talr"), (1e-3, 1e-2), range(n_seeds), (0, 5, 10)):
        rows.append({"method": method, "lr": lr, "seed": seed, "step": step, "wise_alpha": 1.0, "status": "ok",
                     "epoch": step / 5, "delta_star": step * lr * 100 + seed * 0.01, "kl_base": step * lr,
                     "kl_base_se": 0.001, "delta_L_text": step * lr / 2, "frac_p_gt_0.2": 0.5 + step / 100,
                     "model": "tiny-random", "data": "medcalc-synth:8", "format": "label"})
    return pd.DataFrame(rows)


def lambda_max_table(eps_exp: float = 1.0, s_exp: float = -0.5) -> pd.DataFrame:
    """λ_max = 3·ε^eps_exp·s^s_exp exactly, for two instances (the fit must return the exponents)."""
    rows = []
    for p1, method, s, eps, inst in itertools.product(("exact", "mis-modeled"), ("sft", "talr"), (1, 4, 16),
                                                      (1e-4, 1e-3, 1e-2), (0, 1, 2)):
        rows.append({"p1": p1, "method": method, "s": s, "epsilon": eps, "instance": inst, "geometry": "default",
                     "lambda_max": 3.0 * eps**eps_exp * s**s_exp})
    return pd.DataFrame(rows)


# --- sweep figures -----------------------------------------------------------------------------------------


def test_sweep_figures_name_model_and_data_and_draw_seeds_as_means():
    from talr_theory.plotting.training import plot_dynamics, plot_frac_easy, plot_tradeoff

    table = sweep_table(n_seeds=2)
    fig = plot_tradeoff(table)
    drawn = sum(len(c.get_offsets()) for c in fig.axes[0].collections if hasattr(c, "get_offsets")
                and c.get_offsets().shape[-1] == 2 and type(c).__name__ == "PathCollection")
    assert drawn == 4  # one point per (method, LR): the two seeds are averaged, not drawn twice
    words = assert_readable(fig, table, must_name=("tiny-random", "medcalc-synth:8", "2 seeds", "mean over seeds"))
    assert "training method" in words["legend"] and "learning rate" in words["legend"]
    assert_readable(plot_dynamics(table), table, must_name=("tiny-random", "mean over 2 seeds"))
    assert_readable(plot_frac_easy(table), table, must_name=("tiny-random", "mean over 2 seeds"))


def test_one_seed_is_said_so():
    from talr_theory.plotting.training import plot_dynamics

    table = sweep_table(n_seeds=1)
    assert_readable(plot_dynamics(table), table, must_name=("1 seed", "One seed per run"))


# --- exact tier --------------------------------------------------------------------------------------------


def test_lambda_max_figure_writes_the_fitted_slopes():
    from talr_theory.plotting.exact import plot_lambda_max

    frame = lambda_max_table(eps_exp=1.0, s_exp=-0.5)
    fig = plot_lambda_max(frame)
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == 4 and all("fit: ε^1.00" in t and "s^-0.50" in t for t in titles), titles
    assert fig.axes[0].get_shared_y_axes().joined(fig.axes[0], fig.axes[1])
    assert_readable(fig, frame, must_name=("Exact tier", "bisection", "Theorem 3.2"))
    # another known answer: the slopes follow the data, they are not written in
    fig = plot_lambda_max(lambda_max_table(eps_exp=0.5, s_exp=-1.0))
    assert all("fit: ε^0.50" in ax.get_title() and "s^-1.00" in ax.get_title() for ax in fig.axes)
    plt.close(fig)


def test_exact_figures_are_readable():
    from talr_theory.plotting import exact

    traj = pd.DataFrame([{"p1": p1, "method": m, "lam": lam, "delta_star": g, "delta_L": g * lam * (1 + (m == "sft"))}
                         for p1, m, lam, g in itertools.product(("exact", "mis-modeled"), ("sft", "talr"),
                                                                 (0.5, 2.0), (0.1, 0.2, 0.3))])
    fig = exact.plot_methods_at_equal_gain(traj)
    assert fig.axes[0].get_shared_y_axes().joined(fig.axes[0], fig.axes[1])
    assert_readable(fig, traj, must_name=("Exact tier",))
    pts = traj[(traj["method"] == "sft") & (traj["p1"] == "exact")]
    assert_readable(exact.plot_envelope(pts, 0.1, 1.0, 2.0, "envelope"), pts, must_name=("Exact tier", "common"))
    single = pd.DataFrame({"instance": range(6), "kind": ["exact", "mis-modeled"] * 3,
                           "lambda_max_pred_eps0.0001": [0.5, 0.6, 0.7, 0.8, 0.9, 0.95],
                           "lambda_max_exact_eps0.0001": [1.0] * 6})
    words = assert_readable(exact.plot_single_step_gaps(single), single, must_name=("Exact tier", "6 of 6 ≤ 1"))
    assert "kind of P1" in words["legend_title"]
    curves = pd.DataFrame([{"p1": "exact", "quantity": q, "lam": lam, "delta_L": lam * (i + 1)}
                           for i, q in enumerate(("exact", "jensen_lower", "hoeffding_upper", "tv_upper"))
                           for lam in (0.1, 1.0)])
    assert_readable(exact.plot_bounds_along_lambda(curves), curves, must_name=("Exact tier",))


# --- synthetic lab -----------------------------------------------------------------------------------------


def test_lab_envelope_shares_y_and_draws_two_seeds_as_one_line_with_a_band():
    from talr_theory.plotting.lab import envelope

    pts = pd.DataFrame([{"method": m, "s": 2, "lam": lam, "seed": seed, "delta_star": g,
                         "delta_L": g * lam * (3 if m == "sft" else 1) + 0.01 * seed}
                        for m, lam, seed, g in itertools.product(("sft", "talr"), (0.1, 1.0), (0, 1), (0.1, 0.2))])
    fig = envelope(pts, {}, "Synthetic lab: curves")
    a, b = fig.axes[:2]
    assert a.get_shared_y_axes().joined(a, b)
    assert len(a.get_lines()) == 2 and len(a.collections) == 2  # one mean line and one band per λ
    np.testing.assert_allclose(a.get_lines()[0].get_ydata(), [0.1 * 0.1 * 3 + 0.005, 0.2 * 0.1 * 3 + 0.005])
    assert_readable(fig, pts, must_name=("Synthetic lab", "mean over 2 seeds"))


def test_lab_figures_are_readable():
    from talr_theory.plotting import lab

    lam = lambda_max_table().rename(columns={"instance": "seed"}).drop(columns=["p1", "geometry"])
    lam = lam.assign(optimizer="sgd", measured_s=lam["s"], effective_s=lam["s"] / 2).drop_duplicates(
        ["method", "s", "epsilon", "seed"])
    fig = lab.lambda_max_vs_eps(lam, "Synthetic lab: λ_max")
    assert all("fit: ε^1.00" in ax.get_title() for ax in fig.axes)
    assert_readable(fig, lam, must_name=("Synthetic lab",))
    assert_readable(lab.lambda_max_vs_s(lam, title="x"), lam, must_name=("Synthetic lab",))
    pts = pd.DataFrame([{"method": m, "lam": lr, "delta_star": g, "delta_L": g * lr}
                        for m, lr, g in itertools.product(("sft", "talr"), (0.1, 1.0), (0.1, 0.2))])
    assert_readable(lab.dl_vs_lr(pts, "x"), pts, must_name=("Synthetic lab",))
    traj = pd.DataFrame([{"method": m, "lr": lr, "step": st, "delta_L": st * lr, "delta_star": st}
                         for m, lr, st in itertools.product(("sft", "talr"), (0.1, 1.0), (0, 1))])
    assert_readable(lab.tradeoff(traj), traj)
    cases = pd.DataFrame({"scenario": ["s1", "s2", "s2"], "status": ["ok", "ok", "cannot-certify"],
                          "epsilon": [0.1, 0.2, 0.2], "observed_delta_L": [0.08, 0.15, np.nan],
                          "ratio_to_true": [0.9, 0.8, np.nan]})
    assert_readable(lab.advisor_validation(cases), cases, must_name=("synthetic lab",))


# --- the TALR map ------------------------------------------------------------------------------------------


def test_talr_map_explains_its_marks_and_column_codes():
    from talr_theory.plotting.talr_map import ratio_heatmap

    cells = pd.DataFrame([{"method": m, "w_min": 0.01, "tau_rule": "median", "easy_p": 0.95, "common": c, "hard": h,
                           "ratio": r, "verdict": v}
                          for (m, c, h), (r, v) in zip(itertools.product(("talr", "dft"), (0.0, 0.1), ("domain", "general")),
                                                       itertools.cycle([(0.5, "agrees"), (2.0, "disagrees"),
                                                                        (1.0, "uninformative")]))])
    fig = ratio_heatmap(cells, title="map")
    words = figure_text(fig)
    prose = " ".join(" ".join(words["text"]).split())
    for explained in ("'wins'", "'loses'", "'?'", "leakage", "hard targets", "fewer than 10 seeds"):
        assert explained in prose
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert all("leakage" in t and "hard targets" in t for t in ticks) and not any("common=" in t for t in ticks)
    assert_readable(fig, cells)


def test_other_map_figures_are_readable():
    from talr_theory.plotting import talr_map

    cases = pd.DataFrame({"status": ["ok"] * 4, "epsilon": [0.1, 0.2, 0.1, 0.2], "observed_delta_L": [0.05, 0.1, 0.08, 0.2],
                          "scenario": ["a", "a", "b", "b"], "ratio_to_true": [0.5, 0.8, 0.9, 1.0]})
    from talr_theory.plotting import lab

    # the one advisor-case figure, drawn for the synthetic lab and the real-model tier alike
    assert_readable(lab.advisor_validation(cases, setting="x"), cases, must_name=("held-out",))
    syn = pd.DataFrame({"method": ["talr", "dft"], "w_min": [0.01, np.nan], "easy": ["source", "source"],
                        "diff_mean": [-0.1, 0.2], "diff_ci_lo": [-0.2, 0.1], "diff_ci_hi": [0.0, 0.3]})
    assert_readable(talr_map.synthetic_ratios(syn), syn, must_name=("Synthetic lab",))
    cond = pd.DataFrame([{"regime": reg, "method": "talr", "w_min": 0.01, "tau_rule": "median", "p1": p1,
                          "predicted_ratio": pr, "ratio": pr * 1.1, "ci_lo": pr, "ci_hi": pr * 1.2}
                         for reg, p1, pr in itertools.product(("near_flow", "equal_lr"), ("exact", "mis-modeled"),
                                                              (0.5, 2.0))])
    assert_readable(talr_map.condition_check(cond), cond, must_name=("Exact tier",))


@pytest.mark.slow  # runs the quick exact, synthetic, TALR-map and advisor stages (minutes on 2 cores)
def test_every_quick_stage_figure_is_readable(tmp_path):
    from talr_theory import tiers

    for name in ("exact", "synthetic", "talr_map", "advisor"):
        mod = tiers.module(name)
        result = mod.run(mod.Config.quick(seed=0), str(tmp_path / name), progress=False)
        drawn = []
        frames = list(result.frames.values())
        mod.figures(result, lambda fig, fname, drawn=drawn, frames=frames: drawn.append(assert_readable(fig, *frames)))
        assert drawn, name
