"""Figures of the real-model tier (``talr_theory.tiers.llm``); each takes the tier's frames, returns a figure.

Every figure names the model, the data and the protocol (``about``); seeds are drawn as a mean with a band
(± one standard deviation over seeds); panels meant to be compared share their y axis.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

P1_COLUMNS = (("dL_kl", "general degradation\nKL to the base model on its samples (nats/sample)"),
              ("dL_text", "general degradation\nNLL change on real text (nats/block)"))


def about(config: dict) -> str:
    """Model, data and protocol of a run, from its config."""
    return (f"{config['model']} (last {config['n_blocks']} blocks trained), {config['data']}; "
            f"{config['epochs']} epochs, seeds {list(config['seeds'])}")


def _main(traj: pd.DataFrame) -> pd.DataFrame:
    ok = traj[traj["status"].eq("ok")]
    if "format" in ok.columns:
        ok = ok[ok["format"].eq("label") & ok["optimizer"].eq("adamw")]
    return ok


def frontier(traj: pd.DataFrame, about_text: str = ""):
    """Held-out accuracy vs ΔL(P1) after the same epochs: one curve per method, one point per LR, seed spread as bars."""
    ok = _main(traj)
    ok = ok[~ok["method"].str.endswith("-only")]  # the ablation's partial-loss runs are not methods
    last = ok.loc[ok.groupby(["method", "lr", "seed"])["step"].idxmax()]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), squeeze=False)
    for ax, (col, label) in zip(axes[0], P1_COLUMNS):
        for i, (method, g) in enumerate(last.groupby("method", sort=True)):
            s = g.groupby("lr").agg(acc=("accuracy", "mean"), acc_sd=("accuracy", "std"), dl=(col, "mean"),
                                    dl_sd=(col, "std")).reset_index().sort_values("lr")
            ax.errorbar(s["dl"], s["acc"], xerr=s["dl_sd"].fillna(0), yerr=s["acc_sd"].fillna(0), fmt="o-", ms=4,
                        capsize=2, color=f"C{i}", label=method)
            for r in s.itertuples():
                ax.annotate(f"{r.lr:g}", (r.dl, r.acc), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(label.replace("\n", ": "))
        ax.set_ylabel("held-out accuracy (teacher-forced exact match)")
        ax.legend(fontsize=7, title="method (points: learning rates)", title_fontsize=7)
    fig.suptitle(f"Accuracy vs general degradation after the same epochs (paper protocol)\n{about_text}", fontsize=9)
    fig.tight_layout()
    return fig


def envelope(traj: pd.DataFrame, about_text: str = ""):
    """ΔL(P1) vs Δ* over training, SFT and TALR side by side (shared y), one mean line + band per LR."""
    ok = _main(traj)
    methods = [m for m in ("sft", "talr") if m in set(ok["method"])] or ["sft"]
    fig, axes = plt.subplots(2, len(methods), figsize=(5 * len(methods), 7.5), squeeze=False, sharey="row")
    for row, (col, label) in enumerate(P1_COLUMNS):
        for ax, method in zip(axes[row], methods):
            sub = ok[ok["method"].eq(method)]
            lrs = sorted(sub["lr"].unique())
            for c, lr in zip(plt.cm.viridis(np.linspace(0, 0.9, max(len(lrs), 1))), lrs):
                s = sub[sub["lr"].eq(lr)].groupby("step").agg(x=("delta_star", "mean"), y=(col, "mean"),
                                                              sd=(col, "std")).reset_index()
                ax.plot(s["x"], s["y"], "o-", ms=3, color=c, label=f"LR {lr:g}")
                ax.fill_between(s["x"], s["y"] - s["sd"].fillna(0), s["y"] + s["sd"].fillna(0), color=c, alpha=0.2)
            ax.set_xlabel("domain gain Δ* on held-out prompts (nats/example)")
            ax.set_ylabel(label, fontsize=8)
            ax.set_title(f"{method}: mean over seeds ± 1 sd", fontsize=9)
            ax.legend(fontsize=7, title="learning rate", title_fontsize=7)
    fig.suptitle(f"General degradation along training\n{about_text}", fontsize=9)
    fig.tight_layout()
    return fig


def lambda_max_vs_eps(lam: pd.DataFrame, about_text: str = ""):
    """λ_max(ε) per intended s (median over probe groups, log-log), both P1 on a shared y axis."""
    p1s = list(pd.unique(lam["p1"]))
    fig, axes = plt.subplots(1, max(len(p1s), 1), figsize=(5 * max(len(p1s), 1), 4), squeeze=False, sharey=True)
    for ax, p1 in zip(axes[0], p1s):
        sub = lam[lam["p1"].eq(p1) & lam["lambda_max"].notna()]
        s_vals = sorted(sub["s"].unique())
        for c, s in zip(plt.cm.plasma(np.linspace(0, 0.9, max(len(s_vals), 1))), s_vals):
            med = sub[sub["s"].eq(s)].groupby("epsilon")["lambda_max"].median()
            ax.plot(med.index, med.values, "o-", color=c, label=f"s = {s}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("tolerance ε (nats)")
        ax.set_ylabel("largest safe step λ_max (median over probe groups)")
        ax.set_title(p1)
        ax.legend(fontsize=7, title="hard tokens inserted", title_fontsize=7)
    fig.suptitle(f"Theorem 3.2 probes: one SGD step\n{about_text}", fontsize=9)
    fig.tight_layout()
    return fig


def probe_check(check: pd.DataFrame, about_text: str = ""):
    """Measured (excess) s of the probes against the intended s, every group, with the identity line."""
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.scatter(check["intended_s"], check["excess_s"], s=10, alpha=0.5, label="probe groups")
    m = check.groupby("intended_s")["excess_s"].mean()
    ax.plot(m.index, m.values, "o-", color="k", label="mean")
    top = max(float(check["intended_s"].max()), 1.0)
    ax.plot([0, top], [0, top], "--", color="grey", label="measured = intended")
    ax.set_xlabel("intended s (random replacements)")
    ax.set_ylabel("measured excess s (hard tokens, minus s = 0)")
    ax.set_title(about_text, fontsize=7)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def ablation(table: pd.DataFrame, about_text: str = ""):
    """ΔL(P1) of easy-only and hard-only training over full SFT (same LR and steps), per optimizer, with intervals."""
    p1s = list(pd.unique(table["p1"])) if len(table) else []
    fig, axes = plt.subplots(1, max(len(p1s), 1), figsize=(5.5 * max(len(p1s), 1), 3.8), squeeze=False, sharex=True)
    for ax, p1 in zip(axes[0], p1s):
        sub = table[table["p1"].eq(p1)].reset_index(drop=True)
        y = np.arange(len(sub))
        est = sub["ratio_to_full"].to_numpy(float)
        err = [np.nan_to_num(est - sub["ci_lo"].to_numpy(float)), np.nan_to_num(sub["ci_hi"].to_numpy(float) - est)]
        ax.errorbar(est, y, xerr=err, fmt="o", capsize=3)
        ax.axvline(1.0, color="grey", ls="--")
        if not np.isfinite(est).any():
            ax.text(0.5, 0.5, "ratio undefined: full SFT's mean ΔL ≤ 0\n(see the differences in the ablation table)",
                    ha="center", va="center", transform=ax.transAxes, fontsize=8)
        ax.set_yticks(y, [f"{r.part} ({r.optimizer}, acc {r.accuracy_minus_full:+.2f})" for r in sub.itertuples()])
        ax.set_xlabel("ΔL(P1) over ΔL(full SFT), same LR and steps")
        ax.set_title(p1)
    fig.suptitle(f"Hard-token ablation (paper Fig. 3 protocol), 95% intervals over seeds and units\n{about_text}",
                 fontsize=9)
    fig.tight_layout()
    return fig
