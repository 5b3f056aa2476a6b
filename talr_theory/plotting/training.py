"""Figures of the training sweeps (seaborn): trade-off, dynamics, fraction of easy tokens.

All functions take the tidy sweep table (one row per method, lr, seed, step, wise_alpha; see
``training.sweep``) and return a matplotlib Figure; ``save_sweep_figures`` writes the three of them.

- ``plot_tradeoff``: domain gain Δ* (x) against general degradation ΔL(P1) (y) at the last checkpoint,
  per method (colour) and learning rate (marker) — the analog of the paper's Fig. 1/2 and Tables 1–2.
- ``plot_dynamics``: Δ* and ΔL(P1) over training steps, one panel per method, colour = learning rate.
- ``plot_frac_easy``: fraction of target tokens with p > 0.2 over epochs (the paper's Fig. 3c analog).
- ``plot_frac_easy_by_base``: the same fraction split by base difficulty — tokens the base model
  found hard (p ≤ 0.2) vs easy — when the sweep recorded the split (``--frac-by-base``).

When the sweep scored lm-eval benchmarks, ``save_sweep_figures`` also draws the trade-off with the
benchmark score drop (``bench_drop``) as the general axis (``sweep_tradeoff_bench.png``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

# Legend and facet names in words (the sweep table's own column names need the README to be read).
METHOD, LR = "training method", "learning rate"
EPOCH = "epoch (passes over the training examples)"


def _ok(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame[frame["status"] == "ok"] if "status" in frame.columns else frame
    frame = frame.copy()
    frame["run"] = frame["method"].astype(str)
    wise = frame["method"].eq("wise-ft")
    if wise.any():
        frame.loc[wise, "run"] = [f"wise-ft α={a:g}" for a in frame.loc[wise, "wise_alpha"]]
    frame["lr_label"] = frame["lr"].map("{:g}".format)
    frame[METHOD] = frame["run"].str.upper().str.replace("WISE-FT", "WiSE-FT")
    frame[LR] = frame["lr_label"]
    return frame


def sweep_context(frame: pd.DataFrame) -> str:
    """'MODEL on DATA (FORMAT), N seed(s)': what the figure was measured on, from the rows themselves."""
    parts = []
    for col, fmt in (("model", "{}"), ("data", "on {}"), ("format", "({} format)")):
        if col in frame.columns and frame[col].notna().any():
            parts.append(fmt.format(", ".join(str(v) for v in dict.fromkeys(frame[col].dropna()))))
    n_seeds = frame["seed"].nunique() if "seed" in frame.columns else 1
    text = " ".join(parts) or frame.attrs.get("title", "sweep")
    return f"{text}, {n_seeds} seed{'s' if n_seeds != 1 else ''}"


def _seed_note(frame: pd.DataFrame, band: str = "band: 95% bootstrap interval over seeds") -> str:
    n = frame["seed"].nunique() if "seed" in frame.columns else 1
    return f"Lines: mean over {n} seeds, {band}." if n > 1 else "One seed per run."


def general_metric(frame: pd.DataFrame) -> str:
    """The ΔL(P1) column to show: KL on base-model samples when measured, else the real-text change."""
    for col in ("kl_base", "delta_L_text"):
        if col in frame.columns and frame[col].notna().any():
            return col
    raise ValueError("the sweep table has neither kl_base nor delta_L_text (no general data was measured)")


GENERAL_LABEL = {"kl_base": "ΔL(P1) = KL(q0‖qθ) on base samples [nats/sample]",
                 "delta_L_text": "ΔL(P1) on real text [nats/token]",
                 "bench_drop": "benchmark score drop (base - current, mean over lm-eval tasks)"}


def final_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The last checkpoint of every run (method, lr, seed, wise_alpha)."""
    frame = _ok(frame)
    idx = frame.groupby(["method", "lr", "seed", "wise_alpha"])["step"].idxmax()
    return frame.loc[idx].reset_index(drop=True)


def tradeoff_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per method and LR (mean over seeds) at the last checkpoint: Δ*, ΔL(P1) and the auxiliary columns."""
    last = final_rows(frame)
    cols = [c for c in ("delta_star", "delta_star_per_token", "delta_L_text", "kl_base", "kl_base_se",
                        "accuracy", "frac_p_gt_0.2", "mean_weight", "effective_lr") if c in last.columns]
    return last.groupby(["run", "lr"])[cols].mean().reset_index()


def format_tradeoff_table(rows) -> str:
    """Plain-text table of the per-(method, lr) summary (list of dicts or a DataFrame)."""
    frame = pd.DataFrame(rows)
    if "run" not in frame.columns and "method" in frame.columns:
        frame = frame.assign(run=frame["method"])
        if "wise_alpha" in frame.columns:
            wise = frame["method"].eq("wise-ft")
            if wise.any():
                frame.loc[wise, "run"] = [f"wise-ft α={a:g}" for a in frame.loc[wise, "wise_alpha"]]
    keep = [c for c in ("run", "lr", "delta_star", "delta_L_text", "kl_base", "kl_base_se", "accuracy",
                        "frac_p_gt_0.2", "mean_weight") if c in frame.columns]
    return frame[keep].sort_values(["run", "lr"]).to_string(index=False, float_format=lambda v: f"{v:.4g}")


def _tradeoff_points(frame: pd.DataFrame, general: str) -> pd.DataFrame:
    """Per method and LR: the mean over seeds of the last checkpoint, with the seeds' range."""
    last = final_rows(frame)
    agg = last.groupby([METHOD, LR, "lr"]).agg(x=("delta_star", "mean"), x_lo=("delta_star", "min"),
                                                x_hi=("delta_star", "max"), y=(general, "mean"),
                                                y_lo=(general, "min"), y_hi=(general, "max"),
                                                n=("seed", "nunique")).reset_index()
    return agg.sort_values(["lr", METHOD])


def plot_tradeoff(frame: pd.DataFrame, general: str | None = None):
    import matplotlib.pyplot as plt
    import seaborn as sns

    from talr_theory.plotting import add_caption

    general = general or general_metric(frame)
    pts = _tradeoff_points(frame, general)
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    sns.scatterplot(data=pts, x="x", y="y", hue=METHOD, style=LR, s=80, ax=ax, zorder=3)
    if int(pts["n"].max()) > 1:  # several seeds: the point is their mean, the bars their range
        ax.errorbar(pts["x"], pts["y"], xerr=[pts["x"] - pts["x_lo"], pts["x_hi"] - pts["x"]],
                    yerr=[pts["y"] - pts["y_lo"], pts["y_hi"] - pts["y"]], fmt="none", ecolor="0.6", zorder=1)
    elif general == "kl_base" and "kl_base_se" in frame.columns:
        se = final_rows(frame).groupby([METHOD, "lr"])["kl_base_se"].mean().reindex(
            list(zip(pts[METHOD], pts["lr"]))).to_numpy()
        ax.errorbar(pts["x"], pts["y"], yerr=se, fmt="none", ecolor="0.6", zorder=1)
    ax.axhline(0.0, color="0.8", lw=0.8)
    ax.set_xlabel("domain gain Δ* [nats/example] (higher = better domain fit)")
    ax.set_ylabel(GENERAL_LABEL[general] + "\n(lower = less forgetting)")
    ax.set_title(f"Domain gain vs general degradation (last checkpoint)\n{sweep_context(frame)}", fontsize=10)
    ax.legend(fontsize=7, title_fontsize=7, loc="best")
    fig.tight_layout()
    bars = ("Points: mean over seeds, bars: their range." if int(pts["n"].max()) > 1
            else "One seed per run" + ("; bars: standard error of the KL over base samples." if general == "kl_base"
                                       else "."))
    add_caption(fig, f"Each point is one training method at one learning rate after its last step. {bars} "
                "Δ* = drop of the held-out domain loss; ΔL(P1) as on the y axis.")
    return fig


def plot_dynamics(frame: pd.DataFrame, general: str | None = None):
    import seaborn as sns

    from talr_theory.plotting import add_caption

    data = _ok(frame)
    general = general or general_metric(frame)
    long = data.melt(id_vars=[METHOD, LR, "seed", "step"], value_vars=["delta_star", general],
                     var_name="metric", value_name="value")
    long["metric"] = long["metric"].map({"delta_star": "Δ* [nats/example]", general: GENERAL_LABEL[general]})
    grid = sns.relplot(data=long, x="step", y="value", hue=LR, row="metric", col=METHOD, kind="line",
                       marker="o", height=2.4, aspect=1.15, facet_kws={"sharey": "row"})
    grid.set_titles("{col_name}")
    grid.set_xlabels("optimizer step")
    for (metric, _), ax in grid.axes_dict.items():
        ax.set_ylabel(metric, fontsize=7)
    grid.figure.suptitle(f"Training dynamics: domain gain and general degradation\n{sweep_context(frame)}", y=1.04)
    add_caption(grid.figure, _seed_note(frame) + " Rows share their y axis, so methods compare across a row.")
    return grid.figure


def plot_frac_easy(frame: pd.DataFrame, threshold: float = 0.2):
    import matplotlib.pyplot as plt
    import seaborn as sns

    from talr_theory.plotting import add_caption

    data = _ok(frame)
    col = f"train_frac_p_gt_{threshold:g}" if f"train_frac_p_gt_{threshold:g}" in data.columns \
        else f"frac_p_gt_{threshold:g}"
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    sns.lineplot(data=data, x="epoch", y=col, hue=METHOD, style=LR, marker="o", ax=ax)
    ax.set_xlabel(EPOCH)
    where = "training" if col.startswith("train_") else "held-out"
    ax.set_ylabel(f"fraction of target tokens with p > {threshold:g} ({where})")
    ax.set_title(f"Easy-token fraction over training\n{sweep_context(frame)}", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    add_caption(fig, _seed_note(frame) + f" p = the model's probability of each supervised target token "
                f"({where} examples), teacher-forced.")
    return fig


def frac_by_base_column(frame: pd.DataFrame, group: str, threshold: float = 0.2) -> str | None:
    """The recorded split column for ``group`` ('hard' or 'easy'): training probe first, else held-out."""
    for prefix in ("train_", ""):
        col = f"{prefix}frac_p_gt_{threshold:g}_base_{group}"
        if col in frame.columns:
            return col
    return None


def plot_frac_easy_by_base(frame: pd.DataFrame, threshold: float = 0.2):
    """frac p > θ over epochs, one panel per base-difficulty group (started hard / started easy)."""
    import seaborn as sns

    data = _ok(frame)
    cols = {g: frac_by_base_column(data, g, threshold) for g in ("hard", "easy")}
    if None in cols.values():
        raise ValueError(f"the sweep table has no frac_p_gt_{threshold:g}_base_hard/_easy columns; "
                         f"run the sweep with --frac-by-base")
    where = "training" if cols["hard"].startswith("train_") else "held-out"
    long = data.melt(id_vars=[METHOD, LR, "seed", "epoch"], value_vars=[cols["hard"], cols["easy"]],
                     var_name="group", value_name="frac")
    long["group"] = long["group"].map({cols["hard"]: f"started hard (base p ≤ {threshold:g})",
                                       cols["easy"]: f"started easy (base p > {threshold:g})"})
    grid = sns.relplot(data=long, x="epoch", y="frac", hue=METHOD, style=LR, col="group", kind="line",
                       marker="o", height=3.4, aspect=1.1)
    grid.set(ylim=(-0.02, 1.02))
    grid.set_titles("{col_name}")
    grid.set_axis_labels(EPOCH, f"fraction with p > {threshold:g} ({where})")
    grid.figure.suptitle(f"Easy-token fraction over training, by base difficulty\n{sweep_context(frame)}", y=1.06)
    from talr_theory.plotting import add_caption

    add_caption(grid.figure, _seed_note(frame) + " Groups by the base model's probability of the same token.")
    return grid.figure


def save_sweep_figures(frame: pd.DataFrame, folder: str | Path) -> list[Path]:
    """Draw the three figures into ``folder`` (PNG); return their paths."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    figures = [("tradeoff", plot_tradeoff), ("dynamics", plot_dynamics), ("frac_easy", plot_frac_easy)]
    if frac_by_base_column(frame, "hard") is not None:
        figures.append(("frac_easy_by_base", plot_frac_easy_by_base))
    for name, fn in figures:
        fig = fn(frame)
        path = folder / f"sweep_{name}.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    if "bench_drop" in frame.columns and frame["bench_drop"].notna().any():
        # lm-eval scores were measured: the same trade-off with benchmark score as the general axis
        fig = plot_tradeoff(frame, general="bench_drop")
        path = folder / "sweep_tradeoff_bench.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths
