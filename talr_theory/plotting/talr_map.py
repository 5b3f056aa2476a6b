"""The TALR-vs-SFT map: a heatmap of equal-gain degradation ratios, marked by verdict."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from talr_theory.plotting import add_caption

MARK = {"agrees": "wins", "disagrees": "loses", "uninformative": "?"}
HARD_WORDS = {"domain": "domain-only tokens", "general": "general tokens"}
MAP_CAPTION = (
    "Exact tier: closed-form token models; SFT, TALR and DFT trained at the same step size λ on the same scenario "
    "until the domain gain reaches the target; ΔL(P1) read at common gains. Cell number: ratio ΔL(P1) method / SFT "
    "at equal domain gain (geometric mean over seeds and gains); colour: log2 of it (blue: less degradation than "
    "SFT). Mark: 'wins' = the 95% bootstrap interval over seeds lies below 1, 'loses' = above 1, '?' = "
    "uninformative (the interval covers 1, or fewer than 10 seeds). Columns: leakage = how strongly the domain "
    "step leaks into the tokens shared with general text (the scenario's 'common' strength); hard targets = "
    "whether the hard tokens are domain-only or general tokens. Rows: the method's setting and the easy-token "
    "confidence p of the domain data.")


def _row_label(r) -> str:
    if r["method"] == "talr":
        return f"TALR w_min={r['w_min']:g} τ={r['tau_rule']}"
    return r["method"].upper()


def ratio_heatmap(cells: pd.DataFrame, title: str = "", caption: str | None = None):
    """log2 ratio (method / SFT) per cell: rows = method settings × easy_p, columns = leakage × hard targets.

    Blue cells are below one (less degradation than SFT); each cell is annotated with the ratio and
    the verdict of its CI (wins / loses / ?).
    """
    c = cells.copy()
    c["row"] = [f"{_row_label(r)}; easy-token p={r['easy_p']:g}" for r in c.to_dict("records")]
    c["col"] = [f"leakage {r['common']:g}\nhard targets:\n{HARD_WORDS.get(r['hard'], r['hard'])}"
                for r in c.to_dict("records")]
    val = c.pivot_table(index="row", columns="col", values="ratio", aggfunc="first")
    lab = c.assign(text=[f"{r['ratio']:.2g}\n{MARK.get(r['verdict'], '')}" for r in c.to_dict("records")])
    text = lab.pivot_table(index="row", columns="col", values="text", aggfunc="first").reindex_like(val)
    logv = np.log2(val.astype(float))
    lim = float(np.nanmax(np.abs(logv.to_numpy()))) if np.isfinite(logv.to_numpy()).any() else 1.0
    fig, ax = plt.subplots(figsize=(2.0 + 1.6 * val.shape[1], 1.0 + 0.42 * val.shape[0]))
    sns.heatmap(logv, cmap="RdBu_r", center=0.0, vmin=-lim, vmax=lim, annot=text.fillna("").to_numpy(), fmt="",
                annot_kws={"fontsize": 7}, cbar_kws={"label": "log2 ratio (<0: less degradation than SFT)"}, ax=ax)
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.set_title(title)
    add_caption(fig, caption or MAP_CAPTION, width_chars=90)
    return fig


def synthetic_ratios(cells: pd.DataFrame, title: str = "Synthetic lab: extra ΔL(P1) over SFT at equal domain gain"):
    """ΔL(P1)_method − ΔL(P1)_SFT at common gains (mean over seeds, bootstrap interval over seeds), one
    panel per domain variant. The ratio is often undefined here (SFT's ΔL ≤ 0 or no common gain), so
    the difference is drawn; settings with no common gain are marked "not compared"."""
    c = cells.copy()
    c["setting"] = [r["method"].upper() + (f" w_min={r['w_min']:g}" if r["method"] == "talr" else "")
                    for r in c.to_dict("records")]
    variants = sorted(c["easy"].unique())
    fig, axes = plt.subplots(1, len(variants), figsize=(4.6 * len(variants), 3.4), squeeze=False, sharey=True)
    colors = dict(zip(sorted(c["setting"].unique()), sns.color_palette("deep")))
    for ax, easy in zip(axes[0], variants):
        sub = c[c["easy"] == easy].reset_index(drop=True)
        for i, r in sub.iterrows():
            if np.isfinite(r["diff_mean"]):
                ax.plot([i], [r["diff_mean"]], "o", color=colors[r["setting"]])
                if np.isfinite(r["diff_ci_lo"]):
                    ax.vlines(i, r["diff_ci_lo"], r["diff_ci_hi"], color=colors[r["setting"]])
            else:
                ax.annotate("not compared", (i, 0), ha="center", va="bottom", fontsize=8, color="grey")
        ax.axhline(0.0, color="grey", ls="--")
        ax.set_xticks(range(len(sub)), sub["setting"], rotation=15)
        ax.set_xlim(-0.6, len(sub) - 0.4)
        ax.set_ylabel("ΔL(P1) minus SFT's (nats/sequence)")
        ax.set_title("easy targets: " + ("P1 transitions" if easy == "source" else "domain tokens"), fontsize=10)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    add_caption(fig, "Synthetic lab: a tiny transformer pretrained on a known Markov source (exact ΔL(P1)); SFT, "
                "TALR and DFT trained full-batch with SGD on fresh domain examples per seed. Point: mean over seeds "
                "of ΔL(P1) minus SFT's at the same domain gain; bar: 95% bootstrap interval over seeds (below 0: "
                "less degradation than SFT).")
    return fig


def condition_check(cells: pd.DataFrame, title: str = "Linearised condition vs measured ratio (exact tier)",
                    flow_min_steps: int | None = None):
    """Measured equal-gain ratio (with its CI) against the condition's predicted ratio, one panel per regime.

    Points in the lower-left and upper-right quadrants are sign agreements; grey bars are bootstrap
    intervals over seeds. The condition describes directions, so the near-flow panel is its test.
    """
    regimes = [r for r in ("near_flow", "equal_lr") if r in set(cells["regime"])]
    fig, axes = plt.subplots(1, len(regimes), figsize=(5.2 * len(regimes), 4.4), squeeze=False, sharey=True)
    c = cells[np.isfinite(cells["predicted_ratio"].astype(float)) & np.isfinite(cells["ratio"].astype(float))]
    c = c.assign(setting=[_row_label(r) for r in c.to_dict("records")], P1=c["p1"])
    for ax, regime in zip(axes[0], regimes):
        sub = c[c["regime"] == regime]
        err = sub[np.isfinite(sub["ci_lo"].astype(float))]
        ax.vlines(err["predicted_ratio"], err["ci_lo"], err["ci_hi"], color="lightgrey", lw=1, zorder=1)
        sns.scatterplot(data=sub, x="predicted_ratio", y="ratio", hue="setting", style="P1", s=36, ax=ax, zorder=2,
                        legend=ax is axes[0][-1])
        ax.axhline(1.0, color="grey", ls="--")
        ax.axvline(1.0, color="grey", ls="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("predicted ratio C_w(D)/C_SFT(D) (weights at θ0)")
        ax.set_ylabel("measured ratio TALR-or-DFT / SFT")
        n = f"≥ {flow_min_steps}" if flow_min_steps else "many"
        ax.set_title(f"near-flow (every run {n} steps)" if regime == "near_flow" else "equal step size λ")
    if axes[0][-1].get_legend() is not None:
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.02, 1), fontsize=7, title=None)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    add_caption(fig, "Exact tier, closed-form token models. x: the ratio the linearised condition predicts from the "
                "token weights at θ0; y: the measured equal-gain ratio with its 95% bootstrap interval over seeds "
                "(grey). Lower-left and upper-right quadrants: the predicted direction was right.")
    return fig
