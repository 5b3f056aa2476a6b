"""Figures of the exact tier (seaborn): bounds along λ, the Theorem 3.1 envelope, λ_max vs ε.

Each function takes the tidy tables of the stage ``talr_theory.tiers.exact`` and returns a matplotlib
Figure; ``save_figure`` writes it under ``talr_theory.paths.figures_dir()``.

- ``plot_bounds_along_lambda``: exact ΔL(P1) of one gradient step and its Jensen / Hoeffding / TV
  bounds across λ (symmetric-log y axis, since ΔL can be negative when P1 is mis-modeled).
- ``plot_envelope``: ΔL(P1) at common Δ* for every step size λ, with the fitted envelope
  k1·Δ* + k2·Δ*^β·λ drawn per λ (dashed).
- ``plot_lambda_max``: λ_max against ε on log-log axes, one line per s, one panel per method (and
  per P1 scenario), with the fitted exponents in the panel titles.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

QUANTITY_LABELS = {
    "exact": "exact ΔL(P1)",
    "jensen_lower": "Jensen lower bound",
    "hoeffding_upper": "Hoeffding upper bound",
    "tv_upper": "TV upper bound (= Aλ + Bλ²/8)",
    "quadratic_upper": "Aλ + Bλ²/8",
}


def save_figure(fig, name: str, directory: str | Path | None = None) -> Path:
    """Save ``fig`` as ``<figures>/<name>.png`` through the one helper ``plotting.save_figure``."""
    from talr_theory.plotting import save_figure as save

    return save(fig, name, directory)


def plot_bounds_along_lambda(curves: pd.DataFrame):
    """``curves``: rows of ``theory.scenario.scenario_step_curve`` (one panel per ``p1`` value)."""
    data = curves[curves["quantity"] != "quadratic_upper"].copy()
    data["bound"] = data["quantity"].map(QUANTITY_LABELS)
    panels = list(dict.fromkeys(data["p1"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, p1 in zip(axes[0], panels):
        sub = data[data["p1"] == p1]
        negative = bool((sub["delta_L"] < 0).any())
        shown = sub if negative else sub[sub["delta_L"] > 0]
        order = [QUANTITY_LABELS[q] for q in ("exact", "jensen_lower", "hoeffding_upper", "tv_upper")]
        colors = dict(zip(order, sns.color_palette("tab10", len(order))))
        present = [b for b in order if b in set(shown["bound"])]
        sns.lineplot(data=shown, x="lam", y="delta_L", hue="bound", style="bound", hue_order=present,
                     style_order=present, palette={b: colors[b] for b in present}, ax=ax, markers=False)
        ax.set_xscale("log")
        if negative:  # ΔL can be negative (mis-modeled P1): symmetric log keeps both signs visible
            small = float(np.nanmin(np.abs(sub["delta_L"][sub["delta_L"] != 0])))
            ax.set_yscale("symlog", linthresh=max(small, 1e-12))
        else:
            ax.set_yscale("log")
            dropped = sorted(set(sub["bound"]) - set(shown["bound"]))
            if dropped:
                ax.text(0.02, 0.02, "identically 0 (not drawn on log axis): " + ", ".join(dropped),
                        transform=ax.transAxes, fontsize=8)
        ax.set_xlabel("step size λ")
        ax.set_ylabel("ΔL(P1) [nats/token]")
        ax.set_title(f"one gradient step, P1 {p1}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_envelope(points: pd.DataFrame, k1: float, k2: float, beta: float = 2.0, title: str | None = None):
    """``points``: columns lam, delta_star, delta_L (common-Δ* readings of the trajectories).

    Left: ΔL(P1) against Δ* per step size λ with the envelope per λ (dashed). Right: the
    λ-dependent part, ΔL minus the smallest-λ curve at the same Δ* (log-log where positive), with
    the envelope's own λ-term k2·Δ*^β·(λ − λ_min) dashed — the part Theorem 3.1 is about.
    """
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    data = points.copy()
    data["λ"] = data["lam"].map("{:g}".format)
    palette = sns.color_palette("viridis", data["λ"].nunique())
    sns.lineplot(data=data, x="delta_star", y="delta_L", hue="λ", marker="o", palette=palette, ax=ax)
    grid = np.linspace(0, float(data["delta_star"].max()), 100)
    for color, (lam, _) in zip(palette, data.groupby("lam", sort=True)):
        ax.plot(grid, k1 * grid + k2 * grid**beta * lam, ls="--", color=color, lw=1)
    ax.set_xlabel("domain gain Δ* [nats/token]")
    ax.set_ylabel("general degradation ΔL(P1) [nats/token]")
    ax.set_title(title or f"envelope k1·Δ* + k2·Δ*^β·λ: k1={k1:.3g}, k2={k2:.3g}, β={beta:g}", fontsize=10)

    lam_min = float(data["lam"].min())
    base = data[data["lam"] == lam_min].set_index("delta_star")["delta_L"]
    data["excess"] = data["delta_L"] - data["delta_star"].map(base)
    excess = data[(data["lam"] > lam_min) & (data["excess"] > 0)]
    sns.lineplot(data=excess, x="delta_star", y="excess", hue="λ", marker="o", palette=palette[1:], ax=ax2,
                 legend=False)
    for color, (lam, _) in zip(palette[1:], excess.groupby("lam", sort=True)):
        ax2.plot(grid[1:], k2 * grid[1:] ** beta * (lam - lam_min), ls="--", color=color, lw=1)
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("domain gain Δ* [nats/token]")
    ax2.set_ylabel(f"ΔL(P1) − ΔL(P1) at λ={lam_min:g}")
    ax2.set_title("the λ-dependent part (dashed: k2·Δ*^β·(λ − λ_min))", fontsize=10)
    fig.tight_layout()
    return fig


def plot_lambda_max(frame: pd.DataFrame, fits: dict | None = None, geometry: str = "default"):
    """``frame``: rows of ``lambda_max_experiment``; ``fits[(p1, method)]`` = fit_lambda_max_scaling output.

    When the frame has a ``geometry`` column (exact tier: default / independent leakage), only rows
    of ``geometry`` are drawn.
    """
    if "geometry" in frame.columns:
        frame = frame[frame["geometry"] == geometry]
    data = frame[np.isfinite(frame["lambda_max"])].copy()
    data["s"] = data["s"].astype(int).astype(str)
    p1s = list(dict.fromkeys(data["p1"]))
    methods = list(dict.fromkeys(data["method"]))
    fig, axes = plt.subplots(len(p1s), len(methods), figsize=(5 * len(methods), 4 * len(p1s)), squeeze=False)
    palette = sns.color_palette("rocket_r", data["s"].nunique())
    for i, p1 in enumerate(p1s):
        for j, method in enumerate(methods):
            ax = axes[i][j]
            sub = data[(data["p1"] == p1) & (data["method"] == method)]
            sns.lineplot(data=sub, x="epsilon", y="lambda_max", hue="s", palette=palette, marker="o",
                         estimator="median", errorbar=("pi", 50), ax=ax)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("tolerance ε [nats/token]")
            ax.set_ylabel("exact λ_max")
            title = f"{method.upper()}, P1 {p1}"
            fit = (fits or {}).get((p1, method))
            if fit:
                s_text = "" if fit.get("s_exponent") is None else f", s^{fit['s_exponent']:.2f}"
                title += f"\nfit: ε^{fit['eps_exponent']:.2f}{s_text} (paper ε^1, s^-0.5)"
            ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_single_step_gaps(single: pd.DataFrame, eps: float = 1e-4):
    """Distribution of λ_pred/λ_exact (≤ 1 means the predicted step is safe) by kind of P1."""
    first = single.groupby("instance", sort=True).first()
    ratio = first[f"lambda_max_pred_eps{eps:g}"] / first[f"lambda_max_exact_eps{eps:g}"]
    data = pd.DataFrame({"ratio": ratio, "P1": first["kind"]})
    data = data[np.isfinite(data["ratio"]) & (data["ratio"] > 0)]
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.histplot(data=data, x="ratio", hue="P1", log_scale=True, element="step", ax=ax)
    ax.axvline(1.0, color="k", lw=1)
    ax.set_xlabel(f"λ_pred / λ_exact at ε={eps:g} (quadratic TV bound vs exact)")
    ax.set_title("predicted safe step is always ≤ the exact one")
    fig.tight_layout()
    return fig


def plot_methods_at_equal_gain(frame: pd.DataFrame):
    """ΔL(P1) against the domain gain Δ* for SFT / TALR / DFT trajectories (one panel per P1)."""
    panels = list(dict.fromkeys(frame["p1"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    data = frame.copy()
    data["λ"] = data["lam"].map("{:g}".format)
    for ax, p1 in zip(axes[0], panels):
        sns.lineplot(data=data[data["p1"] == p1], x="delta_star", y="delta_L", hue="method", style="λ",
                     marker="o", ax=ax)
        ax.set_xlabel("domain gain Δ* [nats/token]")
        ax.set_ylabel("general degradation ΔL(P1) [nats/token]")
        ax.set_title(f"methods at equal domain gain, P1 {p1}", fontsize=10)
    fig.tight_layout()
    return fig
