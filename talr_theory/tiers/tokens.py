"""The token-difficulty stage: how many hard target tokens SFT data carry, for the model being tuned.

One teacher-forced pass of the model (``tokens.scanner``) over medcalc-synth in its CoT and
label-only formats, plus MedCalc-Bench when ``medcalc_csv`` is given; s(θ) per example with
bootstrap intervals over examples (``tokens.stats.contrast``) for several thresholds θ.

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
from talr_theory.tokens.stats import DEFAULT_THRESHOLDS

NAME = "tokens"


@dataclass(frozen=True)
class Config:
    model: str = "smollm2-135m"
    medcalc_csv: str | None = None
    formats: tuple[str, ...] = ("cot", "label")
    limit: int = 48            # examples per dataset and format
    max_length: int = 1024
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
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
                                seed=cfg.seed, progress=progress)
        table = pd.DataFrame(table).assign(name=name)
        if path is not None:
            tmp = path.with_suffix(".tmp")
            table.to_parquet(tmp, index=False)
            os.replace(tmp, path)  # a scan counts as done only once it is completely on disk
        tables[name] = table
    con = contrast(tables, thresholds=cfg.thresholds, n_boot=cfg.n_boot, seed=cfg.seed)
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
        "report_tables": {"Token difficulty: s(θ) per dataset and format": "contrast"},
    }
    from talr_theory.configs import to_dict

    return TierResult(NAME, to_dict(cfg), {"contrast": con, "tokens": all_tokens}, [], info)


def figures(result: TierResult, save) -> None:
    from talr_theory.plotting import tokens as plots

    save(plots.plot_prob_distribution(result.frames["tokens"], x="name"), "tokens_prob_distribution")
    save(plots.plot_prob_ecdf(result.frames["tokens"], hue="name"), "tokens_prob_ecdf")
    save(plots.plot_s_contrast(result.frames["contrast"]), "tokens_s_contrast")
