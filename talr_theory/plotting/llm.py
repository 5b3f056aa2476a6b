"""Figures of the real-model tier (``talr_theory.tiers.llm``); each takes the tier's frames, returns a figure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

P1_COLUMNS = (("dL_kl", "ΔL(P1=q0): KL (nats/sample)"), ("dL_text", "ΔL(P1=real text) (nats/block)"))


def envelope(traj: pd.DataFrame):
    """ΔL(P1) vs Δ* at every measured checkpoint of the SFT and TALR trajectories (one line per LR and seed)."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5), squeeze=False)
    for row, (col, label) in enumerate(P1_COLUMNS):
        for ax, method in zip(axes[row], ("sft", "talr")):
            sub = traj[traj["method"].eq(method) & traj["status"].eq("ok")]
            lrs = sorted(sub["lr"].unique())
            colors = plt.cm.viridis(np.linspace(0, 0.9, max(len(lrs), 1)))
            for c, lr in zip(colors, lrs):
                for seed, g in sub[sub["lr"].eq(lr)].groupby("seed"):
                    g = g.sort_values("step")
                    ax.plot(g["delta_star"], g[col], "o-", ms=3, color=c, alpha=0.8,
                            label=f"LR {lr:g}" if seed == g["seed"].min() and seed == sub["seed"].min() else None)
            ax.set_xlabel("Δ* (nats/example, held-out)")
            ax.set_ylabel(label)
            ax.set_title(f"{method}: every checkpoint measured")
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def lambda_max_vs_eps(lam: pd.DataFrame):
    """λ_max(ε) per probe (log-log), for both P1, coloured by intended s."""
    p1s = list(pd.unique(lam["p1"]))
    fig, axes = plt.subplots(1, len(p1s), figsize=(5 * len(p1s), 4), squeeze=False)
    for ax, p1 in zip(axes[0], p1s):
        sub = lam[lam["p1"].eq(p1) & lam["lambda_max"].notna()]
        s_vals = sorted(sub["s"].unique())
        colors = plt.cm.plasma(np.linspace(0, 0.9, max(len(s_vals), 1)))
        for c, s in zip(colors, s_vals):
            med = sub[sub["s"].eq(s)].groupby("epsilon")["lambda_max"].median()
            ax.plot(med.index, med.values, "o-", color=c, label=f"s={s}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("ε (nats)")
        ax.set_ylabel("λ_max (median over groups)")
        ax.set_title(p1)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def probe_check(check: pd.DataFrame):
    """Measured (excess) s of the probes against the intended s, every group, with the identity line."""
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.scatter(check["intended_s"], check["excess_s"], s=10, alpha=0.5, label="groups")
    m = check.groupby("intended_s")["excess_s"].mean()
    ax.plot(m.index, m.values, "o-", color="k", label="mean")
    top = max(float(check["intended_s"].max()), 1.0)
    ax.plot([0, top], [0, top], "--", color="grey", label="measured = intended")
    ax.set_xlabel("intended s (random replacements)")
    ax.set_ylabel("measured excess s (p < θ, minus s=0)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def tradeoff_at_equal_gain(comp: pd.DataFrame):
    """ΔL(method) / ΔL(SFT) at equal Δ* with its bootstrap interval, for both P1."""
    p1s = list(pd.unique(comp["p1"]))
    fig, axes = plt.subplots(1, len(p1s), figsize=(5.5 * len(p1s), 4), squeeze=False)
    for ax, p1 in zip(axes[0], p1s):
        sub = comp[comp["p1"].eq(p1)].reset_index(drop=True)
        y = np.arange(len(sub))
        est = sub["ratio_to_sft"].to_numpy(float)
        lo = np.nan_to_num(est - sub["ci_lo"].to_numpy(float))
        hi = np.nan_to_num(sub["ci_hi"].to_numpy(float) - est)
        ax.errorbar(est, y, xerr=[lo, hi], fmt="o", capsize=3)
        ax.axvline(1.0, color="grey", ls="--")
        ax.set_yticks(y, sub["method"])
        ax.set_xscale("log")
        ax.set_xlabel("ΔL(method) / ΔL(SFT) at equal Δ*")
        ax.set_title(p1)
    fig.tight_layout()
    return fig


def hard_easy(traj: pd.DataFrame):
    """Hard-token-only vs easy-token-only training (and SFT at the same LR): ΔL vs Δ*, both P1."""
    sub = traj[traj["method"].isin(["hard-only", "easy-only"]) & traj["status"].eq("ok")]
    lr = sub["lr"].iloc[0] if len(sub) else None
    ref = traj[traj["method"].eq("sft") & traj["lr"].eq(lr)]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), squeeze=False)
    for ax, (col, label) in zip(axes[0], P1_COLUMNS):
        for (method, color) in (("hard-only", "C3"), ("easy-only", "C2"), ("sft", "C0")):
            d = (ref if method == "sft" else sub[sub["method"].eq(method)])
            for i, (_seed, g) in enumerate(d.groupby("seed")):
                g = g.sort_values("step")
                ax.plot(g["delta_star"], g[col], "o-", ms=3, color=color, label=method if i == 0 else None)
        ax.set_xlabel("Δ* (nats/example)")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    fig.suptitle(f"Hard vs easy tokens only (LR {lr})")
    fig.tight_layout()
    return fig
