"""Base vs tuned, token by token: Δ log p, s(θ) before and after with a paired bootstrap CI.

Both scans must come from the same encoding (same examples, positions and target ids); the
tables of ``scan_tokens`` are paired on (example_id, position). The change in s(θ) is bootstrapped
over examples with the per-example differences as units (a paired bootstrap: an example's before
and after counts are resampled together), so the interval reflects only what fine-tuning changed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from talr_theory.stats import bootstrap_ci
from talr_theory.tokens.stats import DEFAULT_THRESHOLDS, per_example_counts, s_statistics, token_summary

_PAIR_KEYS = ["example_id", "position"]


def paired_table(base: pd.DataFrame, tuned: pd.DataFrame) -> pd.DataFrame:
    """One row per target token with the tuned model's columns (p, logp, rank, top_ids, top_p when
    scanned), the base model's as ``p_base``, ``logp_base``, ``rank_base`` and ``dlogp`` =
    logp − logp_base (nats; positive = the tuned model finds the token easier)."""
    if len(base) != len(tuned):
        raise ValueError(f"base and tuned scans differ in size ({len(base)} vs {len(tuned)} tokens): "
                         f"they must come from the same encoding")
    b = base[_PAIR_KEYS + ["token_id", "p", "logp"] + (["rank"] if "rank" in base.columns else [])]
    b = b.rename(columns={"p": "p_base", "logp": "logp_base", "rank": "rank_base", "token_id": "token_id_base"})
    out = tuned.merge(b, on=_PAIR_KEYS, how="left", validate="one_to_one", sort=False)
    if out["p_base"].isna().any() or (out["token_id"] != out["token_id_base"]).any():
        raise ValueError("base and tuned scans do not pair up token by token (different examples, positions or "
                         "target ids): they must come from the same encoding")
    out = out.drop(columns="token_id_base")
    out["dlogp"] = out["logp"] - out["logp_base"]
    out.attrs = {}
    return out


def s_change(base: pd.DataFrame, tuned: pd.DataFrame, thresholds=DEFAULT_THRESHOLDS, n_boot: int = 1000,
             seed: int = 0) -> dict[float, dict]:
    """threshold -> {"mean", "ci_lo", "ci_hi"}: mean over examples of (tuned − base) count of tokens
    with p < θ, with a paired 95 % bootstrap CI over examples."""
    cb = per_example_counts(base, thresholds).set_index("example_id")
    ct = per_example_counts(tuned, thresholds).set_index("example_id").reindex(cb.index)
    if ct.isna().any().any():
        raise ValueError("base and tuned scans cover different examples")
    result = {}
    for th in thresholds:
        col = f"n_p_lt_{th:g}"
        diff = ct[col].to_numpy(np.float64) - cb[col].to_numpy(np.float64)
        lo, hi = bootstrap_ci(diff, n_boot=n_boot, seed=seed)
        result[float(th)] = {"mean": float(diff.mean()), "ci_lo": lo, "ci_hi": hi}
    return result


def per_example_change(paired: pd.DataFrame, thresholds=DEFAULT_THRESHOLDS) -> pd.DataFrame:
    """One row per example: n_tokens, counts below each θ before/after, mean and total Δ log p."""
    after = per_example_counts(paired, thresholds)
    before = per_example_counts(paired.assign(p=paired["p_base"]), thresholds)
    out = after[["example_id", "n_tokens"]].copy()
    for th in thresholds:
        out[f"n_p_lt_{th:g}_base"] = before[f"n_p_lt_{th:g}"].to_numpy()
        out[f"n_p_lt_{th:g}_tuned"] = after[f"n_p_lt_{th:g}"].to_numpy()
    g = paired.groupby("example_id", sort=False)["dlogp"]
    out["mean_dlogp"] = g.mean().reindex(out["example_id"]).to_numpy()
    out["sum_dlogp"] = g.sum().reindex(out["example_id"]).to_numpy()
    return out


def movers(paired: pd.DataFrame, encoded=None, tokenizer=None, k: int = 10, context: int = 12) -> dict:
    """The k tokens whose log p rose most ("easier", Δ log p > 0) and fell most ("harder", Δ log p < 0),
    with the preceding ``context`` tokens as text."""
    by_id = {ex.example_id: ex for ex in encoded} if encoded is not None else {}

    def rows(frame):
        out = []
        for r in frame.itertuples():
            row = {"example_id": r.example_id, "position": int(r.position), "token": r.token_text,
                   "p_base": float(r.p_base), "p_tuned": float(r.p), "dlogp": float(r.dlogp)}
            if tokenizer is not None and r.example_id in by_id:
                ids = by_id[r.example_id].input_ids
                row["context"] = tokenizer.decode(ids[max(0, int(r.position) - context):int(r.position)])
            out.append(row)
        return out

    return {"easier": rows(paired[paired["dlogp"] > 0].nlargest(k, "dlogp")),
            "harder": rows(paired[paired["dlogp"] < 0].nsmallest(k, "dlogp"))}


def compare_summary(base: pd.DataFrame, tuned: pd.DataFrame, thresholds=DEFAULT_THRESHOLDS, n_boot: int = 1000,
                    seed: int = 0, encoded=None, tokenizer=None, k: int = 10) -> dict:
    """Overall comparison: s(θ) before/after (each with its CI) and the paired CI of the change,
    median p and frac p > 0.2 before/after, mean Δ log p, the tokens that moved most."""
    paired = paired_table(base, tuned)
    key = lambda th: f"{th:g}"  # noqa: E731 - JSON keys as in the single-model summary
    sb = s_statistics(base, thresholds, n_boot=n_boot, seed=seed)
    sa = s_statistics(tuned, thresholds, n_boot=n_boot, seed=seed)
    sc = s_change(base, tuned, thresholds, n_boot=n_boot, seed=seed)
    tb = token_summary(base, n_boot=n_boot, seed=seed)
    ta = token_summary(tuned, n_boot=n_boot, seed=seed)
    d = paired["dlogp"].to_numpy(np.float64)
    return {
        "s_before": {key(th): {"mean": v["mean"], "ci": list(v["ci"])} for th, v in sb.items()},
        "s_after": {key(th): {"mean": v["mean"], "ci": list(v["ci"])} for th, v in sa.items()},
        "s_change": {key(th): v for th, v in sc.items()},
        "median_p_before": tb["median_p"], "median_p_after": ta["median_p"],
        "frac_p_gt_0.2_before": tb["frac_p_gt_0.2"], "frac_p_gt_0.2_after": ta["frac_p_gt_0.2"],
        "frac_p_gt_0.2_before_ci": list(tb["frac_p_gt_0.2_ci"]), "frac_p_gt_0.2_after_ci": list(ta["frac_p_gt_0.2_ci"]),
        "mean_dlogp": float(d.mean()), "max_abs_dlogp": float(np.abs(d).max()),
        "frac_tokens_easier": float((d > 0).mean()), "frac_tokens_harder": float((d < 0).mean()),
        "movers": movers(paired, encoded, tokenizer, k=k),
    }


def frac_above_by_base(base: pd.DataFrame, current: pd.DataFrame, threshold: float = 0.2) -> dict:
    """The easy-token fraction (p > θ) now, split by how the base model found each token: among the
    tokens that started hard (base p ≤ θ) and those that started easy (base p > θ). NaN for an empty
    group. Returns {"base_hard", "base_easy", "n_base_hard", "n_base_easy"}."""
    paired = paired_table(base, current)
    started_hard = (paired["p_base"] <= threshold).to_numpy()
    easy_now = (paired["p"] > threshold).to_numpy()
    n_hard, n_easy = int(started_hard.sum()), int((~started_hard).sum())
    return {"base_hard": float(easy_now[started_hard].mean()) if n_hard else float("nan"),
            "base_easy": float(easy_now[~started_hard].mean()) if n_easy else float("nan"),
            "n_base_hard": n_hard, "n_base_easy": n_easy}
