"""Figures of the synthetic lab and the real-LLM tier (Theorems 3.1/3.2, the advisor, the trade-off).

Every function takes the tidy frames produced by ``talr_theory.lab`` and returns a matplotlib
figure; ``save(fig, name)`` writes it as PNG to ``paths.figures_dir()`` (or a given folder).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from talr_theory.plotting import add_caption


def save(fig, name: str, folder: str | Path | None = None) -> Path:
    """Write ``fig`` through the one helper ``plotting.save_figure``."""
    from talr_theory.plotting import save_figure

    return save_figure(fig, name, folder)


SYNTHETIC_MODEL = ("Synthetic lab: a tiny transformer pretrained on a known Markov source (P1), fine-tuned "
                   "on a synthetic domain; ΔL(P1) is exact (the source's own distribution).")
# Legend titles in words
LAM, GAIN, METHOD, S_LABEL, EPS = "learning rate λ", "domain gain Δ*", "training method", "hard tokens s", "tolerance ε"


def _mean_band(d: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Mean of ``y`` per ``x`` over seeds, with the seeds' range (lo, hi) and their count."""
    return d.groupby(x, sort=True)[y].agg(mean="mean", lo="min", hi="max", n="count").reset_index()


def envelope(points: pd.DataFrame, blocks: dict, title: str = "", caption: str | None = None):
    """Theorem 3.1: ΔL(P1) vs Δ* at each learning rate, with the fitted envelope k1Δ* + k2Δ*²λ (dashed).

    Methods share the y axis; several seeds are drawn as their mean with a band (their range).
    """
    methods = sorted(points["method"].unique())
    fig, axes = plt.subplots(1, len(methods), figsize=(5.2 * len(methods), 4), squeeze=False, sharey=True)
    n_seeds = points["seed"].nunique() if "seed" in points.columns else 1
    for ax, method in zip(axes[0], methods):
        sub = points[points["method"] == method]
        s_values = sorted(sub["s"].unique()) if "s" in sub.columns else [None]
        s_mid = s_values[len(s_values) // 2]
        sub = sub if s_mid is None else sub[sub["s"] == s_mid]
        lams = sorted(sub["lam"].unique())
        palette = sns.color_palette("viridis", len(lams))
        block = blocks.get(method) or {}
        for color, lam in zip(palette, lams):
            d = _mean_band(sub[sub["lam"] == lam], "delta_star", "delta_L")
            ax.plot(d["delta_star"], d["mean"], "o-", color=color, label=f"λ={lam:g}")
            if n_seeds > 1:
                ax.fill_between(d["delta_star"], d["lo"], d["hi"], color=color, alpha=0.2, lw=0)
            if "k1" in block and np.isfinite(block.get("k1", np.nan)):
                grid = np.linspace(0, d["delta_star"].max(), 50)
                ax.plot(grid, block["k1"] * grid + block["k2"] * grid**2 * lam, "--", color=color, alpha=0.7)
        ax.set_xlabel("domain gain Δ* (nats/example)")
        ax.set_ylabel("ΔL(P1) (nats)")
        head = method.upper() + ("" if s_mid is None else f", s={s_mid:g}")
        if "k1" in block:
            head += f": envelope β=2 (dashed), best β={block.get('beta_best', float('nan')):.1f}"
        ax.set_title(head, fontsize=10)
        ax.legend(fontsize=7, title=LAM, title_fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    seeds = f"mean over {n_seeds} seeds, band: their range" if n_seeds > 1 else "one seed"
    add_caption(fig, caption or f"{SYNTHETIC_MODEL} ΔL(P1) read at common domain gains along each run ({seeds}).")
    return fig


def dl_vs_lr(points: pd.DataFrame, title: str = "", caption: str | None = None):
    """ΔL(P1) vs learning rate at fixed domain gains (log-log): the slope is Theorem 3.1's λ-dependence."""
    pos = points[points["delta_L"] > 0].copy()
    pos[GAIN] = pos["delta_star"].round(3)
    pos[METHOD] = pos["method"].str.upper()
    g = sns.relplot(data=pos, x="lam", y="delta_L", hue=GAIN, col=METHOD, kind="line", marker="o",
                    palette="rocket_r", height=3.6, facet_kws={"sharey": True})
    g.set(xscale="log", yscale="log", xlabel="learning rate λ", ylabel="ΔL(P1) at fixed Δ* (nats)")
    g.set_titles("{col_name}")
    g.figure.suptitle(title, y=1.03)
    add_caption(g.figure, caption or f"{SYNTHETIC_MODEL} Only points with ΔL(P1) > 0 are drawn (log axis); "
                "several seeds: line = mean, band = 95% bootstrap interval.")
    return g.figure


def lambda_max_vs_eps(lam_df: pd.DataFrame, title: str = "", caption: str | None = None,
                      fits: dict | None = None):
    """Theorem 3.2: λ_max(ε) after one step, per s, method and optimizer (log-log; dotted: slope 1 and 1/2).

    Each panel's fitted slopes are written in its title: ``fits[(method, optimizer)]`` when given (a stage's
    stored fit, ``plotting.exact.fits_from_table``), else ``plotting.exact.lambda_max_fit``, the one log-log fit.
    """
    from talr_theory.plotting.exact import _fit_title, lambda_max_fit

    d = lam_df[np.isfinite(lam_df["lambda_max"]) & (lam_df["lambda_max"] > 0)].copy()
    d["panel"] = d["method"].str.upper() + " / " + d["optimizer"]
    d[S_LABEL] = d["s"]
    g = sns.relplot(data=d, x="epsilon", y="lambda_max", hue=S_LABEL, col="panel", kind="line", marker="o",
                    palette="mako", height=3.6, aspect=1.3, errorbar=None, facet_kws={"sharey": True})
    keys = dict(zip(d["panel"], zip(d["method"], d["optimizer"])))
    for panel, ax in g.axes_dict.items():
        fit = (fits or {}).get(keys[panel]) or lambda_max_fit(d[d["panel"] == panel], n_boot=200)
        ax.set_title(_fit_title(panel, fit), fontsize=8)
    for ax in g.axes.flat:
        ax.set_xscale("log")
        ax.set_yscale("log")
        lo, hi = d["epsilon"].min(), d["epsilon"].max()
        ymid = np.exp(np.log(ax.get_ylim()).mean())
        for slope, style in ((1.0, ":"), (0.5, "-.")):
            xs = np.array([lo, hi])
            ax.plot(xs, ymid * (xs / np.sqrt(lo * hi)) ** slope, style, color="grey", lw=1)
    g.set(xlabel="tolerance ε (nats)", ylabel="λ_max")
    g.figure.suptitle(title + "  (grey: slope 1 dotted, slope ½ dash-dot)", y=1.12)
    add_caption(g.figure, caption or f"{SYNTHETIC_MODEL} λ_max = the largest single-step learning rate whose exact "
                "ΔL(P1) stays ≤ ε; line: mean over seeds. Titles: joint fit λ_max ∝ ε^a·s^b with its 95% bootstrap "
                "interval (paper: a = 1, b = −1/2).")
    return g.figure


def lambda_max_vs_s(lam_df: pd.DataFrame, s_column: str = "measured_s", title: str = "", caption: str | None = None):
    """λ_max vs s at each ε (log-log), SFT and TALR (TALR plotted against its effective s)."""
    d = lam_df[np.isfinite(lam_df["lambda_max"]) & (lam_df["lambda_max"] > 0) & lam_df["optimizer"].eq("sgd")].copy()
    d["s_used"] = np.where(d["method"].eq("talr"), d["effective_s"], d[s_column])
    d = d[d["s_used"] > 0]
    d[EPS] = d["epsilon"]
    d[METHOD] = d["method"].str.upper()
    g = sns.relplot(data=d, x="s_used", y="lambda_max", hue=EPS, style=METHOD, kind="scatter",
                    palette="flare", height=3.8, aspect=1.3, hue_norm=matplotlib.colors.LogNorm())
    ax = g.ax
    ax.set_xscale("log")
    ax.set_yscale("log")
    xs = np.array([d["s_used"].min(), d["s_used"].max()])
    ymid = np.exp(np.log(d["lambda_max"]).mean())
    ax.plot(xs, ymid * (xs / np.sqrt(xs[0] * xs[1])) ** -0.5, "--", color="grey", lw=1, label="paper: slope −½")
    ax.set_xlabel("s (SFT: measured hard tokens; TALR: effective s = Σw(1−p))")
    ax.set_ylabel("λ_max (one step)")
    g.figure.suptitle(title, y=1.03)
    add_caption(g.figure, caption or f"{SYNTHETIC_MODEL} One SGD step; every point is one seed at one ε.")
    return g.figure


ADVISOR_SETTING = ("synthetic lab: tiny Llama pretrained on a Markov source, exact ΔL(P1); "
                   "SFT, full-batch SGD; s = hard tokens per example")


def _domain_label(scenario) -> str:
    """'s3' (the synthetic lab's domain with 3 hard tokens per example) -> 's = 3'; other names as they are."""
    text = str(scenario)
    return f"s = {text[1:]}" if text[:1] == "s" and text[1:].isdigit() else text


def advisor_validation(cases: pd.DataFrame, setting: str = ADVISOR_SETTING):
    """The advisor on held-out runs (the ``advisor`` stage's cases): is the promise ΔL(P1) ≤ ε kept, how conservative?

    Left: observed ΔL(P1) of a new run at the recommended LR against the requested ε, certified cases
    only (on or below the dashed y = x line: kept). Right: recommended / true largest safe LR (below one:
    conservative). ``setting`` names the model, data and protocol in the title (the default: the
    synthetic lab's; a real-model caller names its model, data and seeds).
    """
    cert = cases[cases["status"] == "ok"].copy()
    cert["domain"] = [_domain_label(sc) for sc in cert["scenario"]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
    order = sorted(cert["domain"].unique())
    sns.scatterplot(data=cert, x="epsilon", y="observed_delta_L", hue="domain", style="domain", hue_order=order,
                    style_order=order, s=60, ax=axes[0])
    vals = cert[["epsilon", "observed_delta_L"]].to_numpy(float)
    vals = vals[np.isfinite(vals) & (vals > 0)]
    if vals.size:
        lim = [vals.min() * 0.8, vals.max() * 1.2]
        axes[0].plot(lim, lim, "--", color="grey", label="ΔL(P1) = ε")
        axes[0].set_xscale("log")
        axes[0].set_yscale("log")
    axes[0].set_xlabel("requested tolerance ε (nats)")
    axes[0].set_ylabel("observed ΔL(P1) at the recommended LR (nats)")
    if axes[0].get_legend() is not None:
        axes[0].legend(title="domain", fontsize=8)
    ratio = cert[np.isfinite(cert["ratio_to_true"].astype(float))]
    sns.stripplot(data=ratio, x="domain", y="ratio_to_true", order=[d for d in order if d in set(ratio["domain"])],
                  ax=axes[1])
    axes[1].axhline(1.0, color="grey", ls="--")
    axes[1].set_xlabel("domain")
    axes[1].set_ylabel("recommended / true largest safe LR")
    fig.suptitle(f"Safe-LR advisor on held-out runs: {len(cert)} of {len(cases)} cases certified\n({setting})",
                 fontsize=10)
    fig.tight_layout()
    return fig


GENERAL_WORDS = {"delta_L": "ΔL(P1)", "kl_base": "KL(q0‖qθ) on base samples", "delta_L_text": "ΔL(P1) on real text"}


def tradeoff(traj: pd.DataFrame, general_col: str = "delta_L", title: str = ""):
    """Domain gain vs general degradation at the last checkpoint, per method and learning rate."""
    last = traj.loc[traj.groupby(["method", "lr"])["step"].idxmax()]
    last = last.assign(**{METHOD: last["method"].str.upper(), "learning rate": last["lr"]})
    fig, ax = plt.subplots(figsize=(5.2, 4))
    sns.scatterplot(data=last, x=general_col, y="delta_star", hue=METHOD, size="learning rate", sizes=(40, 200),
                    ax=ax)
    for r in last.itertuples():
        ax.annotate(f"{r.lr:g}", (getattr(r, general_col), r.delta_star), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    ax.set_xlabel(f"general degradation {GENERAL_WORDS.get(general_col, general_col)} (nats)")
    ax.set_ylabel("domain gain Δ* (nats/example)")
    ax.set_title(title or "Trade-off per method and LR (last checkpoint)")
    fig.tight_layout()
    return fig


def probe_check(check: pd.DataFrame, title: str = "Controlled-s probes: measured vs intended s"):
    fig, ax = plt.subplots(figsize=(4.4, 4))
    sns.pointplot(data=check, x="intended_s", y="measured_s", ax=ax, errorbar=None)
    xs = sorted(check["intended_s"].unique())
    ax.plot(range(len(xs)), xs, "--", color="grey", label="measured = intended")
    ax.set_xlabel("intended s (random tokens per example)")
    ax.set_ylabel("measured s (targets with p < 0.2)")
    ax.legend()
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
