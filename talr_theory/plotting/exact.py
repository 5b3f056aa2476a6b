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

from talr_theory.plotting import add_caption, bootstrap_band

# Legend titles in words (a legend titled with a column name needs the README to be read).
LAM, METHOD, S_LABEL = "step size λ", "training method", "hard tokens s"

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


EXACT_MODEL = ("Exact tier: closed-form token models with a known P1, so every ΔL(P1) is computed exactly, "
               "not sampled.")


def plot_bounds_along_lambda(curves: pd.DataFrame, caption: str | None = None):
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
        ax.legend(fontsize=8, title="curve")
    fig.tight_layout()
    add_caption(fig, caption or EXACT_MODEL + " One SGD step of size λ on the domain loss; the exact ΔL(P1) "
                "and the bounds of the Theorem 3.1 proof at each λ.")
    return fig


def plot_envelope(points: pd.DataFrame, k1: float, k2: float, beta: float = 2.0, title: str | None = None,
                  caption: str | None = None):
    """``points``: columns lam, delta_star, delta_L (common-Δ* readings of the trajectories).

    Left: ΔL(P1) against Δ* per step size λ with the envelope per λ (dashed). Right: the
    λ-dependent part, ΔL minus the smallest-λ curve at the same Δ* (log-log where positive), with
    the envelope's own λ-term k2·Δ*^β·(λ − λ_min) dashed — the part Theorem 3.1 is about.
    """
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    data = points.copy()
    data[LAM] = data["lam"].map("{:g}".format)
    palette = sns.color_palette("viridis", data[LAM].nunique())
    sns.lineplot(data=data, x="delta_star", y="delta_L", hue=LAM, marker="o", palette=palette, ax=ax)
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
    sns.lineplot(data=excess, x="delta_star", y="excess", hue=LAM, marker="o", palette=palette[1:], ax=ax2,
                 legend=False)
    for color, (lam, _) in zip(palette[1:], excess.groupby("lam", sort=True)):
        ax2.plot(grid[1:], k2 * grid[1:] ** beta * (lam - lam_min), ls="--", color=color, lw=1)
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("domain gain Δ* [nats/token]")
    ax2.set_ylabel(f"ΔL(P1) − ΔL(P1) at λ={lam_min:g}")
    ax2.set_title("the λ-dependent part (dashed: k2·Δ*^β·(λ − λ_min))", fontsize=10)
    fig.tight_layout()
    add_caption(fig, caption or EXACT_MODEL + " SFT trajectories at each step size λ; ΔL(P1) read at common "
                "domain gains Δ* (interpolated along each trajectory); dashed: the envelope k1·Δ* + k2·Δ*^β·λ "
                "fitted to these points. Several instances: line = mean, band = 95% bootstrap interval.")
    return fig


def lambda_max_fit(sub: pd.DataFrame, n_boot: int = 300):
    """Joint power-law fit λ_max ∝ ε^a · s^b of one panel (``stats.fit_power_law``, bootstrap over
    instances when an ``instance`` column exists); None when there are too few points."""
    from talr_theory.stats import fit_power_law

    pos = sub[(sub["lambda_max"] > 0) & (sub["epsilon"] > 0) & (sub["s"].astype(float) > 0)]
    if len(pos) < 3 or pos["epsilon"].nunique() < 2:
        return None
    regressors = {"epsilon": pos["epsilon"].to_numpy(float)}
    if pos["s"].nunique() >= 2:
        regressors["s"] = pos["s"].astype(float).to_numpy()
    groups = pd.factorize(pos["instance"])[0] if "instance" in pos.columns else None
    fit = fit_power_law(pos["lambda_max"].to_numpy(float), regressors, groups=groups, n_boot=n_boot)
    return {"eps_exponent": fit.exponent("epsilon"), "eps_ci": fit.cis[0],
            "s_exponent": fit.exponent("s") if "s" in regressors else None,
            "s_ci": fit.cis[1] if "s" in regressors else None, "log_prefactor": fit.log_prefactor}


def fits_from_table(table: pd.DataFrame) -> dict[str, dict]:
    """The fits a stage stored in its ``lambda_max_fits`` table (the report's table), by ``variant``.

    A figure reads these instead of bootstrapping the fit again: its titles then show the report's
    exponents and intervals.
    """
    def interval(value):
        if value is None or str(value) in ("", "None", "nan"):
            return None
        if isinstance(value, str):
            return tuple(float(v) for v in value.strip("[]() ").split(","))
        return tuple(float(v) for v in value)

    def number(value):
        return None if value is None or pd.isna(value) else float(value)

    return {row["variant"]: {"eps_exponent": number(row["a (ε exponent)"]), "eps_ci": interval(row["a CI"]),
                             "s_exponent": number(row["b (s exponent)"]), "s_ci": interval(row["b CI"])}
            for _, row in table.iterrows()}


def _slope_text(value: float, ci) -> str:
    if ci is None or not all(np.isfinite(ci)):
        return f"{value:.2f}"
    return f"{value:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"


def plot_lambda_max(frame: pd.DataFrame, fits: dict | None = None, geometry: str = "default",
                    caption: str | None = None):
    """``frame``: rows of ``lambda_max_experiment``; ``fits[(p1, method)]`` = fit_lambda_max_scaling output
    or a stage's stored fit (``fits_from_table``); computed here with ``lambda_max_fit`` when not given, so
    the slopes are always written on the figure. A given fit without ``log_prefactor`` takes the dashed
    line's prefactor from the least-squares fit of the panel (no resampling).

    When the frame has a ``geometry`` column (exact tier: default / independent leakage), only rows
    of ``geometry`` are drawn. Panels share their y axis so methods compare at a glance.
    """
    if "geometry" in frame.columns:
        frame = frame[frame["geometry"] == geometry]
    data = frame[np.isfinite(frame["lambda_max"])].copy()
    data[S_LABEL] = data["s"].astype(int).astype(str)
    p1s = list(dict.fromkeys(data["p1"]))
    methods = list(dict.fromkeys(data["method"]))
    fig, axes = plt.subplots(len(p1s), len(methods), figsize=(5 * len(methods), 4.2 * len(p1s)), squeeze=False,
                             sharex=True, sharey=True)
    palette = dict(zip(sorted(data[S_LABEL].unique(), key=int), sns.color_palette("rocket_r", data["s"].nunique())))
    for i, p1 in enumerate(p1s):
        for j, method in enumerate(methods):
            ax = axes[i][j]
            sub = data[(data["p1"] == p1) & (data["method"] == method)]
            sns.lineplot(data=sub, x="epsilon", y="lambda_max", hue=S_LABEL, palette=palette, marker="o",
                         estimator="median", errorbar=("pi", 50), ax=ax, legend=(i == 0 and j == 0))
            fit = (fits or {}).get((p1, method))
            if not fit:
                fit = lambda_max_fit(sub)
            elif fit.get("log_prefactor") is None:
                fit = {**(lambda_max_fit(sub, n_boot=0) or {}), **fit}
            _draw_fit(ax, sub, fit, palette)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("tolerance ε [nats/token]")
            ax.set_ylabel("exact λ_max")
            ax.set_title(_fit_title(f"{method.upper()}, P1 {p1}", fit), fontsize=9)
    fig.tight_layout()
    add_caption(fig, caption or EXACT_MODEL + " λ_max = the largest single-step size whose exact ΔL(P1) stays "
                "≤ ε (bisection). Lines: median over instances, band: interquartile range; dashed: the joint "
                "fit λ_max ∝ ε^a·s^b (log-log least squares, 95% bootstrap interval over instances). "
                "Paper (Theorem 3.2): a = 1, b = −1/2.")
    return fig


def _fit_title(head: str, fit: dict | None) -> str:
    if not fit:
        return head + "\n(too few points for a fit)"
    s_exp = fit.get("s_exponent")
    s_ci = fit.get("s_ci", fit.get("s_exponent_ci"))  # a fit_lambda_max_scaling output names them *_exponent_ci
    eps_ci = fit.get("eps_ci", fit.get("eps_exponent_ci"))
    s_text = "" if s_exp is None else f", s^{_slope_text(s_exp, s_ci)}"
    return (head + f"\nfit: ε^{_slope_text(fit['eps_exponent'], eps_ci)}{s_text}"
            "\n(paper: ε^1, s^−0.5)")


def _draw_fit(ax, sub: pd.DataFrame, fit: dict | None, palette: dict) -> None:
    """The fitted power law per s (dashed), where the fit carries its prefactor."""
    if not fit or fit.get("log_prefactor") is None or not len(sub):
        return
    eps = np.geomspace(sub["epsilon"].min(), sub["epsilon"].max(), 20)
    for s_label, color in palette.items():
        if s_label not in set(sub[S_LABEL]):
            continue
        s_term = float(s_label) ** fit["s_exponent"] if fit.get("s_exponent") is not None else 1.0
        ax.plot(eps, np.exp(fit["log_prefactor"]) * eps ** fit["eps_exponent"] * s_term, "--", color=color,
                lw=0.9, alpha=0.8)


def plot_single_step_gaps(single: pd.DataFrame, eps: float = 1e-4, caption: str | None = None):
    """Distribution of λ_pred/λ_exact (≤ 1 means the predicted step is safe) by kind of P1."""
    first = single.groupby("instance", sort=True).first()
    ratio = first[f"lambda_max_pred_eps{eps:g}"] / first[f"lambda_max_exact_eps{eps:g}"]
    data = pd.DataFrame({"ratio": ratio, "kind of P1": first["kind"]})
    data = data[np.isfinite(data["ratio"]) & (data["ratio"] > 0)]
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.histplot(data=data, x="ratio", hue="kind of P1", log_scale=True, element="step", ax=ax)
    ax.axvline(1.0, color="k", lw=1)
    ax.set_xlabel(f"λ_pred / λ_exact at ε={eps:g} (quadratic TV bound vs exact)")
    ax.set_ylabel("random instances")
    ax.set_title(f"Predicted vs exact safe single step ({data['ratio'].le(1.0).sum()} of {len(data)} ≤ 1)")
    fig.tight_layout()
    add_caption(fig, caption or EXACT_MODEL + " For each random instance: the step size the quadratic TV bound "
                "Aλ + Bλ²/8 predicts safe at ε, divided by the exact largest safe step (≤ 1: the prediction is safe).")
    return fig


def plot_methods_at_equal_gain(frame: pd.DataFrame, caption: str | None = None):
    """ΔL(P1) against the domain gain Δ* for SFT / TALR / DFT trajectories (one panel per P1, shared y)."""
    panels = list(dict.fromkeys(frame["p1"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False, sharey=True)
    data = frame.copy()
    data[LAM] = data["lam"].map("{:g}".format)
    data[METHOD] = data["method"].str.upper()
    for ax, p1 in zip(axes[0], panels):
        sns.lineplot(data=data[data["p1"] == p1], x="delta_star", y="delta_L", hue=METHOD, style=LAM,
                     marker="o", errorbar=bootstrap_band(), ax=ax)
        ax.set_xlabel("domain gain Δ* [nats/token]")
        ax.set_ylabel("general degradation ΔL(P1) [nats/token]")
        ax.set_title(f"methods at equal domain gain, P1 {p1}", fontsize=10)
    fig.tight_layout()
    add_caption(fig, caption or EXACT_MODEL + " SFT, TALR and DFT trajectories at each step size λ from the "
                "same start; ΔL(P1) against the domain gain Δ* reached (several instances: mean and 95% band).")
    return fig
