"""Figures of token difficulty (seaborn): where the supervised tokens' probabilities sit.

Inputs are the tidy per-token tables of ``scan_tokens`` (concatenated, with a column naming the
dataset/format/model) and the ``tokens.stats.contrast`` frame. Each function returns a Figure.

- ``plot_prob_distribution``: box + strip or violin of p per group — the paper's Fig. 3 analog
  (medians near 1, a sparse tail of hard tokens).
- ``plot_prob_ecdf``: empirical CDF of p per group, with the θ thresholds of s(θ) marked.
- ``plot_s_contrast``: s(θ) with bootstrap CIs per group and threshold (label-only vs CoT).
- ``plot_prob_by_position``: median p against the token's index within the response.
- ``plot_entropy_vs_p``: EAFT's normalized top-K entropy against p per group, the confident-conflict
  quadrant (low p, low entropy) shaded and its count per example (with a 95% CI) in each title.
"""

from __future__ import annotations

import pandas as pd


def _sns():
    import matplotlib

    matplotlib.use(matplotlib.get_backend())  # keep the caller's backend (Agg in tests/notebooks)
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    return sns


def plot_prob_distribution(table: pd.DataFrame, x: str = "format", hue: str | None = None, kind: str = "box"):
    """Distribution of p per ``x`` (and ``hue``): ``kind`` 'box' (with quartiles) or 'violin'."""
    sns = _sns()
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    if kind == "violin":
        sns.violinplot(data=table, x=x, y="p", hue=hue, cut=0, inner="quartile", density_norm="width", ax=ax)
    elif kind == "box":
        sns.boxplot(data=table, x=x, y="p", hue=hue, showfliers=False, ax=ax)
        sns.stripplot(data=table.sample(min(len(table), 3000), random_state=0), x=x, y="p", hue=hue,
                      dodge=hue is not None, size=1.5, alpha=0.3, color="k" if hue is None else None,
                      legend=False, ax=ax)
    else:
        raise ValueError(f"kind must be 'box' or 'violin', got {kind!r}")
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("p(target token | prompt, prefix)")
    ax.set_title("Teacher-forced probability of supervised tokens")
    fig.tight_layout()
    return fig


def plot_prob_ecdf(table: pd.DataFrame, hue: str = "format", thresholds=(0.05, 0.1, 0.2, 0.5), log: bool = True):
    """ECDF of p per ``hue``; the vertical lines are the s(θ) thresholds. The height of a curve at θ is
    the fraction of tokens with p < θ."""
    sns = _sns()
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    sns.ecdfplot(data=table, x="p", hue=hue, log_scale=log, ax=ax)
    for th in thresholds:
        ax.axvline(th, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("p(target token)" + (" (log scale)" if log else ""))
    ax.set_ylabel("fraction of tokens with probability ≤ p")
    ax.set_title("ECDF of token probabilities (dashed: thresholds θ of s(θ))")
    fig.tight_layout()
    return fig


def plot_s_contrast(frame: pd.DataFrame, x: str = "threshold", hue: str = "name"):
    """s(θ) = mean number of tokens with p < θ per example, with 95 % bootstrap CIs (error bars)."""
    _sns()
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4.2))
    groups = list(dict.fromkeys(frame[hue]))
    xs = list(dict.fromkeys(frame[x]))
    width = 0.8 / max(1, len(groups))
    for k, g in enumerate(groups):
        sub = frame[frame[hue] == g].set_index(x).reindex(xs)
        pos = np.arange(len(xs)) + (k - (len(groups) - 1) / 2) * width
        err = np.vstack([sub["s"] - sub["s_lo"], sub["s_hi"] - sub["s"]])
        ax.bar(pos, sub["s"], width=width, yerr=err, capsize=3, label=str(g))
    ax.set_xticks(np.arange(len(xs)), [f"θ={v:g}" for v in xs])
    ax.set_ylabel("s(θ): hard tokens per example")
    ax.set_title("Estimated s with 95% bootstrap CIs over examples")
    ax.legend(title=hue)
    fig.tight_layout()
    return fig


def plot_prob_by_position(table: pd.DataFrame, hue: str = "format", max_index: int = 200):
    """Median and inter-quartile band of p against the index of the token within the response."""
    sns = _sns()
    import matplotlib.pyplot as plt

    sub = table[table["response_index"] < max_index]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    sns.lineplot(data=sub, x="response_index", y="p", hue=hue, estimator="median",
                 errorbar=("pi", 50), ax=ax)
    ax.set_xlabel("index of the token in the response")
    ax.set_ylabel("median p (band: interquartile range)")
    ax.set_title("Token probability along the response")
    fig.tight_layout()
    return fig


def plot_entropy_vs_p(table: pd.DataFrame, conflicts: pd.DataFrame, group: str = "name", model: str = "",
                      max_points: int = 4000):
    """One panel per ``group``: each supervised token at (p, top-K entropy / ln K), the quadrant
    p < p_max and entropy < entropy_max shaded; ``conflicts`` (one row per group: per_example, ci_lo,
    ci_hi, p_below, topk_entropy_below, n_examples) gives the count per example written in the title."""
    _sns()
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys(table[group]))
    fig, axes = plt.subplots(1, len(groups), figsize=(4.6 * len(groups), 4.2), sharex=True, sharey=True,
                             squeeze=False)
    info = conflicts.set_index(group)
    positive = table["p"][table["p"] > 0]
    left = float(positive.min()) if len(positive) else 1e-6  # one shaded region for every panel
    for ax, g in zip(axes[0], groups):
        sub = table[table[group] == g]
        sub = sub.sample(min(len(sub), max_points), random_state=0)
        row = info.loc[g]
        p_max, h_max = float(row["p_below"]), float(row["topk_entropy_below"])
        ax.axvspan(left, p_max, ymax=h_max, color="C3", alpha=0.12, lw=0)
        ax.scatter(sub["p"], sub["entropy_topk"], s=3, alpha=0.35, color="C0")
        ax.axvline(p_max, color="C3", lw=0.8, ls="--")
        ax.axhline(h_max, color="C3", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{g}\nconfident conflicts per example: {row['per_example']:.2f} "
                     f"[{row['ci_lo']:.2f}, {row['ci_hi']:.2f}] (n={int(row['n_examples'])})", fontsize=10)
        ax.set_xlabel("p(target token), log scale")
    axes[0][0].set_ylabel("top-K predictive entropy / ln K")
    p_max, h_max = float(conflicts["p_below"].iloc[0]), float(conflicts["topk_entropy_below"].iloc[0])
    fig.suptitle(f"Confident conflicts under {model or 'the model'} (shaded: p < {p_max:g} and top-K entropy / ln K "
                 f"< {h_max:g}); 95% bootstrap CIs over examples", fontsize=11)
    fig.tight_layout()
    return fig
