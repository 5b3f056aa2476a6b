"""Statistics of a per-token probability table (the output of ``scan_tokens``).

s(θ) = mean over examples of #{supervised tokens with p < θ} — the "number of hard tokens per
example" that Theorem 3.2 of the paper puts under the square root of the safe step size. The
paper does not fix θ, so we report several. Intervals are (expanded) percentile bootstraps over examples (``stats.bootstrap_ci``)
(tokens of one example are resampled together, since they are correlated).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from talr_theory.stats import bootstrap_ci

DEFAULT_THRESHOLDS = (0.05, 0.1, 0.2, 0.5)
QUANTILES = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9)
# A "confident conflict" (EAFT, arXiv 2601.02151): a target the model finds unlikely (p below the
# paper's hard-token threshold) while it is confident about something else (EAFT's normalized top-K
# entropy below half its maximum). The EAFT paper gives no numeric cut-offs; these are ours.
CONFLICT_P = 0.2
CONFLICT_ENTROPY = 0.5


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


def _require_entropy(table: pd.DataFrame) -> None:
    _check(table)
    missing = {"entropy", "entropy_topk"} - set(table.columns)
    if missing:
        raise ValueError(f"token table lacks column(s) {sorted(missing)}: scan with with_entropy=True")


def entropy_summary(table: pd.DataFrame) -> dict:
    """Quantiles of the full-vocabulary entropy (nats) and of EAFT's normalized top-K entropy ([0, 1])."""
    _require_entropy(table)
    out = {}
    for col, key in (("entropy", "full_nats"), ("entropy_topk", "topk_normalized")):
        v = table[col].to_numpy(dtype=np.float64)
        out[key] = {"mean": float(v.mean()), "quantiles": {f"{q:g}": float(np.quantile(v, q)) for q in QUANTILES}}
    return out


def conflict_mask(table: pd.DataFrame, p_max: float = CONFLICT_P, entropy_max: float = CONFLICT_ENTROPY) -> pd.Series:
    """True for the confident conflicts: ``p < p_max`` and normalized top-K entropy ``< entropy_max``."""
    _require_entropy(table)
    for name, v in (("p_max", p_max), ("entropy_max", entropy_max)):
        if not 0.0 < float(v) <= 1.0:
            raise ValueError(f"confident-conflict threshold {name}={v} must be in (0, 1]")
    return (table["p"] < p_max) & (table["entropy_topk"] < entropy_max)


def confident_conflicts(table: pd.DataFrame, p_max: float = CONFLICT_P, entropy_max: float = CONFLICT_ENTROPY,
                        n_boot: int = 1000, seed: int = 0) -> dict:
    """Confident conflicts per example (mean with a 95% bootstrap CI over examples) and their share of tokens.

    The share is a ratio of per-example sums, so its interval also resamples whole examples; the
    share among hard tokens (p < p_max) says how many of the hard tokens EAFT would down-weight.
    """
    mask = conflict_mask(table, p_max, entropy_max)
    keys = table["example_id"]
    per_ex = pd.DataFrame({"n": mask.groupby(keys, sort=False).sum().astype(float),
                           "tokens": keys.groupby(keys, sort=False).size().astype(float),
                           "hard": (table["p"] < p_max).groupby(keys, sort=False).sum().astype(float)})
    units = per_ex[["n", "tokens", "hard"]].to_numpy()

    def share(col):
        return lambda u: u[:, 0].sum() / u[:, col].sum() if u[:, col].sum() > 0 else float("nan")

    n_hard = float(units[:, 2].sum())
    return {"p_below": float(p_max), "topk_entropy_below": float(entropy_max),
            "n_examples": int(len(per_ex)), "total": int(units[:, 0].sum()),
            "per_example": float(units[:, 0].mean()),
            "per_example_ci": list(bootstrap_ci(units[:, 0], n_boot=n_boot, seed=seed)),
            "frac_tokens": float(units[:, 0].sum() / units[:, 1].sum()),
            "frac_tokens_ci": list(bootstrap_ci(units, statistic=share(1), n_boot=n_boot, seed=seed)),
            "frac_of_hard": float(units[:, 0].sum() / n_hard) if n_hard else float("nan")}


def per_example_conflicts(table: pd.DataFrame, p_max: float = CONFLICT_P,
                          entropy_max: float = CONFLICT_ENTROPY) -> pd.Series:
    """Confident conflicts per example id (example order kept)."""
    return conflict_mask(table, p_max, entropy_max).groupby(table["example_id"], sort=False).sum().astype(int)


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
