"""The TALR-vs-SFT map: a heatmap of equal-gain degradation ratios, marked by verdict."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

MARK = {"agrees": "wins", "disagrees": "loses", "uninformative": "?"}


def _row_label(r) -> str:
    if r["method"] == "talr":
        return f"TALR w_min={r['w_min']:g} τ={r['tau_rule']}"
    return r["method"].upper()


def ratio_heatmap(cells: pd.DataFrame, title: str = ""):
    """log2 ratio (method / SFT) per cell: rows = method settings × easy_p, columns = leakage × hard targets.

    Blue cells are below one (less degradation than SFT); each cell is annotated with the ratio and
    the verdict of its CI (wins / loses / ?).
    """
    c = cells.copy()
    c["row"] = [f"{_row_label(r)} | easy_p={r['easy_p']:g}" for r in c.to_dict("records")]
    c["col"] = [f"common={r['common']:g}\nhard={r['hard']}" for r in c.to_dict("records")]
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
    return fig
