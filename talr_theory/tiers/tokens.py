"""The token-difficulty stage: how many hard target tokens SFT data carry, for the model being tuned.

One teacher-forced pass of the model (``tokens.scanner``) over medcalc-synth in its CoT and
label-only formats, plus MedCalc-Bench when ``medcalc_csv`` is given; s(θ) per example with
bootstrap intervals over examples (``tokens.stats.contrast``) for several thresholds θ.

The scan also records each token's predictive entropy (full vocabulary and EAFT's top-K, normalized
by ln K) and counts "confident conflicts" (p < ``conflict_p`` and top-K entropy / ln K <
``conflict_entropy``) per example, with bootstrap intervals over examples, per dataset and format,
and CoT − label-only paired by case where both formats were scanned.

No verdict: the paper states no value for s and only argues qualitatively that label-only
supervision has few hard tokens; the stage reports the measured table and the token-probability
figures. Each scan is persisted under ``OUT/results/tokens-<fingerprint>/`` as soon as it is done,
so a killed run rescans only the missing datasets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from talr_theory.tiers.protocol import TierResult, fingerprint
from talr_theory.tokens.stats import CONFLICT_ENTROPY, CONFLICT_P, DEFAULT_THRESHOLDS
from talr_theory.training.config import EAFT_TOP_K

NAME = "tokens"


@dataclass(frozen=True)
class Config:
    model: str = "smollm2-135m"
    medcalc_csv: str | None = None
    formats: tuple[str, ...] = ("cot", "label")
    limit: int = 48            # examples per dataset and format
    max_length: int = 1024
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    entropy_k: int = EAFT_TOP_K
    conflict_p: float = CONFLICT_P
    conflict_entropy: float = CONFLICT_ENTROPY
    n_boot: int = 1000
    seed: int = 0

    @classmethod
    def quick(cls, seed: int = 0) -> Config:
        return cls(limit=6, max_length=384, n_boot=300, seed=seed)


def _scans(cfg: Config) -> list[tuple[str, str, str]]:
    """(name, data spec, format) of every scan this config asks for."""
    out = [(f"medcalc-synth/{fmt}", "medcalc-synth", fmt) for fmt in cfg.formats]
    if cfg.medcalc_csv:
        out += [(f"medcalc-bench/{fmt}", str(cfg.medcalc_csv), fmt) for fmt in cfg.formats]
    return out


def run(cfg: Config, out: str | Path | None = None, progress: bool = True) -> TierResult:
    from talr_theory.models import load_model
    from talr_theory.tokens.analysis import scan_dataset
    from talr_theory.tokens.stats import contrast

    folder = Path(out) / "results" / f"{NAME}-{fingerprint(cfg)}" if out is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    loaded = None
    tables: dict[str, pd.DataFrame] = {}
    for name, data, fmt in _scans(cfg):
        path = folder / (name.replace("/", "__") + ".parquet") if folder is not None else None
        if path is not None and path.exists():
            tables[name] = pd.read_parquet(path)
            continue
        if loaded is None:
            loaded = load_model(cfg.model)
        table, _ = scan_dataset(loaded, data, format=fmt, limit=cfg.limit, max_length=cfg.max_length,
                                seed=cfg.seed, progress=progress, with_entropy=True, entropy_k=cfg.entropy_k)
        table = pd.DataFrame(table).assign(name=name)
        if path is not None:
            tmp = path.with_suffix(".tmp")
            table.to_parquet(tmp, index=False)
            os.replace(tmp, path)  # a scan counts as done only once it is completely on disk
        tables[name] = table
    con = contrast(tables, thresholds=cfg.thresholds, n_boot=cfg.n_boot, seed=cfg.seed)
    conflicts = conflict_frame(tables, cfg)
    all_tokens = pd.concat(tables.values(), ignore_index=True)
    by = all_tokens.groupby("name", sort=False)
    notes = [f"{name}: {int(g['example_id'].nunique())} examples, {len(g)} supervised tokens, median p "
             f"{g['p'].median():.3f}, share of tokens with p > 0.2: {100 * (g['p'] > 0.2).mean():.1f}%."
             for name, g in by]
    info = {
        "summary": (f"Teacher-forced token probabilities of {cfg.model} on {', '.join(tables)} "
                    f"(up to {cfg.limit} examples each, responses truncated at {cfg.max_length} tokens); "
                    "s(θ) = hard targets (p < θ) per example with 95% bootstrap intervals over examples."),
        "notes": notes,
        "report_tables": {"Token difficulty: s(θ) per dataset and format": "contrast",
                          f"Confident conflicts per example (p < {cfg.conflict_p:g}, top-{cfg.entropy_k} entropy / "
                          f"ln K < {cfg.conflict_entropy:g})": "conflicts"},
    }
    from talr_theory.configs import to_dict

    return TierResult(NAME, to_dict(cfg), {"contrast": con, "tokens": all_tokens, "conflicts": conflicts}, [], info)


def conflict_frame(tables: dict[str, pd.DataFrame], cfg: Config) -> pd.DataFrame:
    """One row per scan (confident conflicts per example with a CI) plus, for each dataset scanned in
    both CoT and label-only formats, the CoT − label difference paired by case (CI over cases)."""
    import numpy as np

    from talr_theory.stats import bootstrap_ci
    from talr_theory.tokens.stats import confident_conflicts, per_example_conflicts

    rows = []
    for name, table in tables.items():
        cc = confident_conflicts(table, cfg.conflict_p, cfg.conflict_entropy, n_boot=cfg.n_boot, seed=cfg.seed)
        rows.append({"name": name, "per_example": cc["per_example"], "ci_lo": cc["per_example_ci"][0],
                     "ci_hi": cc["per_example_ci"][1], "frac_tokens": cc["frac_tokens"],
                     "frac_of_hard": cc["frac_of_hard"], "n_examples": cc["n_examples"],
                     "p_below": cc["p_below"], "topk_entropy_below": cc["topk_entropy_below"]})
    for dataset in dict.fromkeys(n.split("/")[0] for n in tables):
        cot, label = tables.get(f"{dataset}/cot"), tables.get(f"{dataset}/label")
        if cot is None or label is None:
            continue
        a = per_example_conflicts(cot, cfg.conflict_p, cfg.conflict_entropy)
        b = per_example_conflicts(label, cfg.conflict_p, cfg.conflict_entropy)
        common = [k for k in a.index if k in b.index]  # the same case in both formats; others are counted
        if not common:
            continue
        diff = a.loc[common].to_numpy(np.float64) - b.loc[common].to_numpy(np.float64)
        lo, hi = bootstrap_ci(diff, n_boot=cfg.n_boot, seed=cfg.seed)
        rows.append({"name": f"{dataset}: CoT − label (paired)", "per_example": float(diff.mean()), "ci_lo": lo,
                     "ci_hi": hi, "frac_tokens": np.nan, "frac_of_hard": np.nan, "n_examples": len(common),
                     "p_below": cfg.conflict_p, "topk_entropy_below": cfg.conflict_entropy,
                     "n_unpaired": len(a) + len(b) - 2 * len(common)})
    return pd.DataFrame(rows)


def figures(result: TierResult, save) -> None:
    from talr_theory.plotting import tokens as plots

    save(plots.plot_prob_distribution(result.frames["tokens"], x="name"), "tokens_prob_distribution")
    save(plots.plot_prob_ecdf(result.frames["tokens"], hue="name"), "tokens_prob_ecdf")
    save(plots.plot_s_contrast(result.frames["contrast"]), "tokens_s_contrast")
    conflicts = result.frames.get("conflicts")
    if conflicts is not None and len(conflicts) and "entropy_topk" in result.frames["tokens"].columns:
        scans = conflicts[conflicts["name"].isin(result.frames["tokens"]["name"].unique())]
        save(plots.plot_entropy_vs_p(result.frames["tokens"], scans, model=result.config.get("model", "")),
             "tokens_entropy_vs_p")
