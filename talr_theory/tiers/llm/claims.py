"""The tier's verdicts, each from ``claims.claim_verdict``: the paper's protocol first, our stricter reading labelled.

Paper protocol (Tables 1–2, Fig. 3): runs compared at the same LR and epochs, at their last checkpoint.
Stricter: each method read where it reaches the same held-out accuracy, on its best LR for that accuracy.
Every note says what was trained (``Config.proxy_note``), how many seeds and units, and what was dropped.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd

import talr_theory.tiers.llm.compare as cmp
from talr_theory.claims import claim_verdict
from talr_theory.tiers.llm.config import NAME, P1_LABEL, P1S, Config
from talr_theory.verdicts import format_ci


def _note(cfg: Config, e: cmp.Estimate, what: str, extra: str = "") -> str:
    if e.n_seeds is None:  # one computation per unit (a line scan), no training seed: a plain bootstrap over units
        return (f"{what} no training seed (one full-batch step) × {e.n_units} units, bootstrap over units; "
                f"{e.n_dropped} unit pairs dropped (missing values). {extra} {cfg.proxy_note()}").strip()
    return (f"{what} {e.n_seeds} seeds × {e.n_units} units, hierarchical bootstrap (seeds, then units); "
            f"{e.n_dropped} unit pairs dropped (missing values). {extra} {cfg.proxy_note()}").strip()


def _verdict(cid: str, protocol: str, e: cmp.Estimate, qualifier: str, note: str):
    return claim_verdict(cid, protocol, NAME, e.estimate, e.ci, n_units=e.n_units, n_seeds=e.n_seeds,
                         qualifier=qualifier, note=note)


def _final(final: pd.DataFrame, column: str, **where) -> dict[int, np.ndarray]:
    return cmp.by_seed(cmp.select(final, **where), column)


def _beside(label: str, e: cmp.Estimate) -> str:
    """A side estimate for a note: ``label: estimate [interval]`` (withheld below 10 units, as every interval)."""
    return f"{label}: {format_ci(e.estimate, *e.ci, n_units=e.n_units)}"


def _ratio_and_difference(final: pd.DataFrame, p1: str, cfg: Config, method: str, ref: str):
    """ΔL(P1) of ``method``'s runs against ``ref``'s in ``final``, paired by seed and unit: ratio of means, difference."""
    mine, theirs = _final(final, f"units_{p1}", method=method), _final(final, f"units_{p1}", method=ref)
    return (cmp.paired_ratio_of_means(mine, theirs, cfg.n_boot, cfg.seed),
            cmp.paired_difference(mine, theirs, cfg.n_boot, cfg.seed))


def method_table(final: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """Every method against SFT at the same (paired) LR and epochs: accuracy and both ΔL(P1) differences."""
    rows = []
    base = cmp.select(final, format="label", optimizer="adamw")
    for (m, lr), _ in base[base["method"].ne("sft")].groupby(["method", "pair_lr"]):
        row = {"method": m, "lr": float(lr), "sft_lr": float(lr)}
        for col, name in (("units_acc", "accuracy"), *((f"units_{p}", f"dL_{p}") for p in P1S)):
            mine = _final(base, col, method=m, pair_lr=lr)
            ref = _final(base, col, method="sft", lr=lr)
            d = cmp.paired_difference(mine, ref, cfg.n_boot, cfg.seed)
            row.update({f"{name}_minus_sft": d.estimate, f"{name}_ci_lo": d.ci[0], f"{name}_ci_hi": d.ci[1],
                        f"{name}_mean": float(np.nanmean(np.concatenate(list(mine.values())))) if mine else math.nan})
            row["n_seeds"] = d.n_seeds
        rows.append(row)
    return pd.DataFrame(rows)


def claimed_methods(runs: pd.DataFrame) -> list[str]:
    """Methods in ``runs`` with a registered claim ``<method>_vs_sft`` (TALR; EAFT and ASFT as toolkit claims)."""
    from talr_theory.claims import CLAIMS

    return [m for m in sorted(runs["method"].unique()) if f"{m}_vs_sft" in CLAIMS]


def talr_paper(final: pd.DataFrame, cfg: Config) -> list:
    """``<method>_vs_sft`` (ΔL ratio) at paper_lr, last checkpoint, per method with a claim; for TALR also
    ``talr_comparable_domain`` (accuracy difference)."""
    lr = cfg.resolved_paper_lr()
    base = cmp.select(final, format="label", optimizer="adamw", lr=lr)
    out = []
    for method in claimed_methods(base):
        acc = cmp.paired_difference(_final(base, "units_acc", method=method), _final(base, "units_acc", method="sft"),
                                    cfg.n_boot, cfg.seed)
        means = {m: cmp.select(base, method=m)["accuracy"].mean() for m in (method, "sft")}
        name = method.upper()
        out += [_comparable_domain(acc, means, lr, cfg)] if method == "talr" else []
        for p1 in P1S:
            r, d = _ratio_and_difference(base, p1, cfg, method, "sft")
            out.append(_verdict(f"{method}_vs_sft", "paper", r, f"{P1_LABEL[p1]}, LR {lr:g}",
                                _note(cfg, r, f"mean ΔL({name}) / mean ΔL(SFT) after {cfg.epochs} epochs at LR {lr:g} "
                                              "(undefined when SFT's mean ΔL ≤ 0).",
                                      f"{_beside(f'Difference ΔL({name}) − ΔL(SFT)', d)}. "
                                      f"{_beside(f'Accuracy {name} − SFT beside it', acc)} "
                                      f"(means {means[method]:.3f} vs {means['sft']:.3f}).")))
    return out


def _comparable_domain(acc: cmp.Estimate, means: dict, lr: float, cfg: Config):
    """``talr_comparable_domain``: held-out accuracy TALR − SFT after the same epochs at ``lr``."""
    what = f"Held-out accuracy TALR − SFT (teacher-forced exact match) after {cfg.epochs} epochs at LR {lr:g}."
    means_text = (f"Mean accuracy TALR {means['talr']:.3f}, SFT {means['sft']:.3f} (comparable accuracies that never "
                  "left the base say nothing about learning).")
    return _verdict("talr_comparable_domain", "paper", acc, f"LR {lr:g}", _note(cfg, acc, what, means_text))


def finding1(traj: pd.DataFrame, final: pd.DataFrame, cfg: Config) -> list:
    """Smaller LR: ΔL ratio small/large at equal epochs (paper); ΔL difference at equal accuracy (stricter)."""
    lo, hi = min(cfg.lrs), max(cfg.lrs)
    sft = cmp.select(final, format="label", optimizer="adamw", method="sft")
    acc = cmp.paired_difference(_final(sft, "units_acc", lr=lo), _final(sft, "units_acc", lr=hi), cfg.n_boot, cfg.seed)
    out = []
    for p1 in P1S:
        r = cmp.paired_ratio_of_means(_final(sft, f"units_{p1}", lr=lo), _final(sft, f"units_{p1}", lr=hi),
                                      cfg.n_boot, cfg.seed)
        out.append(_verdict("finding1_small_lr", "paper", r, P1_LABEL[p1],
                            _note(cfg, r, f"SFT mean ΔL at LR {lo:g} / at LR {hi:g}, both after {cfg.epochs} epochs.",
                                  f"Accuracy small − large LR beside it: {format_ci(acc.estimate, *acc.ci, n_units=acc.n_units)}.")))
    runs = cmp.select(traj, format="label", optimizer="adamw", method="sft")
    for level in cfg.accuracy_levels:
        for p1 in P1S:
            col = f"units_{p1}"
            a = {int(s): cmp.units_at_accuracy(g, level, col) for s, g in cmp.select(runs, lr=lo).groupby("seed")}
            b = {int(s): cmp.units_at_accuracy(g, level, col) for s, g in cmp.select(runs, lr=hi).groupby("seed")}
            missing = sum(v is None for v in (*a.values(), *b.values()))
            a, b = ({k: v for k, v in d.items() if v is not None} for d in (a, b))
            e = cmp.paired_difference(a, b, cfg.n_boot, cfg.seed)
            out.append(_verdict("finding1_small_lr", "stricter", e, f"{P1_LABEL[p1]}, accuracy {level:g}",
                                _note(cfg, e, f"SFT ΔL at LR {lo:g} − at LR {hi:g}, each read where its held-out "
                                              f"accuracy reaches {level:g};",
                                      f"{missing} runs never bracket that accuracy (left out).")))
    return out


def frontier(traj: pd.DataFrame, cfg: Config) -> tuple[list, pd.DataFrame]:
    """ΔL(P1) at equal held-out accuracy on each method's best LR; ``<method>_vs_sft`` stricter verdicts."""
    runs = cmp.select(traj, format="label", optimizer="adamw")
    rows, out = [], []
    methods = sorted(m for m in runs["method"].unique() if not m.endswith("-only"))  # ablation runs are not methods
    for level in cfg.accuracy_levels:
        for p1 in P1S:
            pts = {m: cmp.frontier_point(runs, level, f"units_{p1}", method=m) for m in methods}
            for m, (lr, units) in pts.items():
                mean = float(np.mean([np.nanmean(u) for u in units.values()])) if units else math.nan
                rows.append({"method": m, "accuracy_level": level, "p1": P1_LABEL[p1], "best_lr": lr,
                             "dL_at_accuracy": mean, "n_seeds": len(units)})
            for m in (claimed_methods(runs) if "sft" in pts else []):
                e = cmp.paired_difference(pts[m][1], pts["sft"][1], cfg.n_boot, cfg.seed)
                out.append(_verdict(f"{m}_vs_sft", "stricter", e, f"{P1_LABEL[p1]}, accuracy {level:g}",
                                    _note(cfg, e, f"ΔL({m.upper()} at LR {pts[m][0]:g}) − ΔL(SFT at LR {pts['sft'][0]:g}), "
                                                  f"each method's best LR at held-out accuracy {level:g} (LR chosen on "
                                                  f"the same runs: the interval is conditional on that choice);")))
    return out, pd.DataFrame(rows)


def ablation(final: pd.DataFrame, cfg: Config) -> tuple[list, pd.DataFrame]:
    """Fig. 3: ΔL(easy-only) / ΔL(full SFT) and hard-only / full, same LR and steps, per optimizer; accuracy beside."""
    out, rows = [], []
    for opt in cfg.ablation_optimizers:
        lr = cfg.resolved_ablation_lr() if opt == "adamw" else cfg.sgd_lr
        sub = cmp.select(final, format="label", optimizer=opt, lr=lr)
        full_acc = _final(sub, "units_acc", method="sft")
        for part in ("easy-only", "hard-only"):
            acc = cmp.paired_difference(_final(sub, "units_acc", method=part), full_acc, cfg.n_boot, cfg.seed)
            for p1 in P1S:
                r, d = _ratio_and_difference(sub, p1, cfg, part, "sft")
                rows.append({"optimizer": opt, "lr": lr, "part": part, "p1": P1_LABEL[p1], "ratio_to_full": r.estimate,
                             "ci_lo": r.ci[0], "ci_hi": r.ci[1], "dL_minus_full": d.estimate,
                             "accuracy_minus_full": acc.estimate, "n_seeds": r.n_seeds})
                if part == "easy-only":
                    out.append(_verdict("hard_tokens_drive_degradation", "paper", r, f"{opt}, {P1_LABEL[p1]}",
                                        _note(cfg, r, f"mean ΔL(easy-only: loss of tokens with base p < {cfg.hard_p:g} "
                                                      f"truncated) / mean ΔL(full SFT), {opt} at LR {lr:g}, same steps.",
                                              f"{_beside('Difference ΔL(easy-only) − ΔL(full)', d)}; "
                                              f"{_beside('accuracy easy-only − full', acc)}.")))
    return out, pd.DataFrame(rows)


def formats(lines: pd.DataFrame, final: pd.DataFrame, cfg: Config) -> tuple[list, pd.DataFrame]:
    """Label-only vs rationale. Paper: ΔL(P1) ratio of trained runs at the same LR and epochs (seeds × units),
    accuracy beside; stricter: the λ_max ratio per P1 unit of one full-batch SGD step (the theory's safe step)."""
    from talr_theory.tiers.llm.probes import unit_lambda_max

    out, rows = [], []
    lr = cfg.resolved_paper_lr()
    sft = cmp.select(final, optimizer="adamw", method="sft", lr=lr)
    acc = cmp.paired_difference(_final(sft, "units_acc", format="label"), _final(sft, "units_acc", format="rationale"),
                                cfg.n_boot, cfg.seed)
    s = lines.groupby("format")["base_s"].first()
    base_s = (f"base s (p < {cfg.hard_threshold:g}) label {s.get('label', math.nan):.2f}, rationale "
              f"{s.get('rationale', math.nan):.2f}")
    for p1 in P1S:
        mine, theirs = _final(sft, f"units_{p1}", format="label"), _final(sft, f"units_{p1}", format="rationale")
        r = cmp.paired_ratio_of_means(mine, theirs, cfg.n_boot, cfg.seed)
        d = cmp.paired_difference(mine, theirs, cfg.n_boot, cfg.seed)
        out.append(_verdict("label_only_loosens_lr", "paper", r, P1_LABEL[p1],
                            _note(cfg, r, f"mean ΔL(label-only SFT) / mean ΔL(SFT with rationale), AdamW at LR {lr:g}, "
                                          f"{cfg.epochs} epochs each;",
                                  f"{_beside('Difference ΔL(label-only) − ΔL(rationale)', d)}; "
                                  f"{_beside('accuracy label-only − rationale', acc)}; {base_s}.")))
        lam = {f: np.column_stack([np.log(unit_lambda_max(cmp.select(lines, format=f), p1, eps))
                                   for eps in cfg.format_epsilons]).mean(axis=1) for f in ("label", "rationale")}
        e = cmp.paired_ratio_of_means({0: np.exp(lam["label"] - lam["rationale"])}, {0: np.ones(len(lam["label"]))},
                                      cfg.n_boot, cfg.seed)
        e = replace(e, n_seeds=None)  # a line scan of one full-batch step: no training seed behind it
        out.append(_verdict("label_only_loosens_lr", "stricter", e, P1_LABEL[p1],
                            _note(cfg, e, f"Per P1 unit, λ_max(label-only) / λ_max(rationale) of one full-batch SGD step "
                                          f"(geometric mean over ε ∈ {list(cfg.format_epsilons)}); mean over units;",
                                  f"{base_s}.")))
        rows.append({"p1": P1_LABEL[p1], "dL_ratio": r.estimate, "dL_ratio_ci_lo": r.ci[0], "dL_ratio_ci_hi": r.ci[1],
                     "dL_label_minus_rationale": d.estimate, "dL_ci_lo": d.ci[0], "dL_ci_hi": d.ci[1],
                     "accuracy_label_minus_rationale": acc.estimate, "n_seeds": r.n_seeds,
                     "lambda_max_ratio": e.estimate, "ci_lo": e.ci[0], "ci_hi": e.ci[1],
                     "s_label": s.get("label", math.nan), "s_rationale": s.get("rationale", math.nan)})
    return out, pd.DataFrame(rows)
