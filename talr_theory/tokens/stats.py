"""Statistics of a per-token probability table (the output of ``scan_tokens``).

s(θ) = mean over examples of #{supervised tokens with p < θ} — the "number of hard tokens per
example" that Theorem 3.2 of the paper puts under the square root of the safe step size. The
paper does not fix θ, so we report several. Intervals are percentile bootstraps over examples
(tokens of one example are resampled together, since they are correlated).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from talr_theory.stats import bootstrap_ci

DEFAULT_THRESHOLDS = (0.05, 0.1, 0.2, 0.5)
QUANTILES = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9)


def _check(table: pd.DataFrame) -> None:
    missing = {"example_id", "p"} - set(table.columns)
    if missing:
        raise ValueError(f"token table lacks column(s) {sorted(missing)}")
    if len(table) == 0:
        raise ValueError("token table is empty: no supervised tokens were scanned")


def per_example_counts(table: pd.DataFrame, thresholds=DEFAULT_THRESHOLDS) -> pd.DataFrame:
    """One row per example: n_tokens and n_p_lt_<θ> for each threshold (example order kept)."""
    _check(table)
    keys = table["example_id"]
    out = pd.DataFrame({"n_tokens": table.groupby(keys, sort=False).size()})
    for th in thresholds:
        out[f"n_p_lt_{th:g}"] = (table["p"] < th).groupby(keys, sort=False).sum().astype(int)
    return out.reset_index()


def s_statistics(table: pd.DataFrame, thresholds=DEFAULT_THRESHOLDS, n_boot: int = 1000,
                 seed: int = 0) -> dict[float, dict]:
    """threshold -> {"mean": s(θ), "ci": (lo, hi)} with a 95 % bootstrap CI over examples."""
    counts = per_example_counts(table, thresholds)
    result = {}
    for th in thresholds:
        values = counts[f"n_p_lt_{th:g}"].to_numpy(dtype=np.float64)
        result[float(th)] = {"mean": float(values.mean()),
                             "ci": bootstrap_ci(values, n_boot=n_boot, seed=seed)}
    return result


def token_summary(table: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict:
    """Token-level description: counts, quantiles and median of p, fraction with p > 0.2 (with a CI
    from resampling examples), mean tokens per example."""
    _check(table)
    p = table["p"].to_numpy(dtype=np.float64)
    by_ex = table.groupby("example_id", sort=False)["p"]
    # fraction with p > 0.2 as a ratio of per-example sums, so the bootstrap resamples examples
    n_easy = (table["p"] > 0.2).groupby(table["example_id"], sort=False).sum()
    pairs = np.column_stack([n_easy.to_numpy(dtype=float), by_ex.size().to_numpy(dtype=float)])

    def ratio(units):
        return units[:, 0].sum() / units[:, 1].sum()

    return {
        "n_examples": int(by_ex.ngroups),
        "n_target_tokens": int(len(p)),
        "tokens_per_example": float(len(p) / by_ex.ngroups),
        "median_p": float(np.median(p)),
        "mean_p": float(p.mean()),
        "mean_nll": float(-table["logp"].mean()) if "logp" in table else float(-np.log(p).mean()),
        "quantiles_p": {f"{q:g}": float(np.quantile(p, q)) for q in QUANTILES},
        "frac_p_gt_0.2": float((p > 0.2).mean()),
        "frac_p_gt_0.2_ci": bootstrap_ci(pairs, statistic=ratio, n_boot=n_boot, seed=seed),
    }


def hardest_tokens(table: pd.DataFrame, encoded=None, tokenizer=None, k: int = 20, context: int = 12) -> pd.DataFrame:
    """The k lowest-probability tokens; with ``encoded`` and ``tokenizer`` also the preceding
    ``context`` tokens as text, so one can see *where* the hard tokens sit."""
    _check(table)
    hard = table.nsmallest(k, "p").copy()
    if encoded is not None and tokenizer is not None:
        by_id = {ex.example_id: ex for ex in encoded}
        ctx = []
        for ex_id, pos in zip(hard["example_id"], hard["position"]):
            ids = by_id[ex_id].input_ids
            ctx.append(tokenizer.decode(ids[max(0, int(pos) - context):int(pos)]))
        hard["context"] = ctx
    return hard.reset_index(drop=True)


def contrast(tables: dict[str, pd.DataFrame], thresholds=DEFAULT_THRESHOLDS, n_boot: int = 1000,
             seed: int = 0) -> pd.DataFrame:
    """Tidy comparison of several scans (e.g. {"cot": ..., "label": ...}): one row per (name, θ)."""
    rows = []
    for name, table in tables.items():
        summ = token_summary(table, n_boot=n_boot, seed=seed)
        for th, st in s_statistics(table, thresholds, n_boot=n_boot, seed=seed).items():
            rows.append({"name": name, "threshold": th, "s": st["mean"], "s_lo": st["ci"][0], "s_hi": st["ci"][1],
                         "median_p": summ["median_p"], "frac_p_gt_0.2": summ["frac_p_gt_0.2"],
                         "tokens_per_example": summ["tokens_per_example"], "n_examples": summ["n_examples"]})
    return pd.DataFrame(rows)
