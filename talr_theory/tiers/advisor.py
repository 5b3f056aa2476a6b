"""The safe-LR advisor on held-out runs in the synthetic lab (exact ΔL(P1)).

A *case* is (scenario, seed, ε). Per (scenario, seed) the advisor runs its pilots (SFT, plain SGD,
full batch) and — when ε is not bracketed — extra pilots (``advisor.rule.advise_with_pilots``);
the pilots of one (scenario, seed) are shared by its tolerances. Independently of the advisor, a
dense grid of held-out learning rates is trained to the same domain gain; the *true* largest safe
LR for each ε is found on that grid (the largest grid LR that, with every smaller one, keeps
ΔL(P1) ≤ ε, and the chord to the next grid LR). For every certified recommendation a new run at
the recommended LR (never a pilot) is trained to the gain and its exact ΔL(P1) is compared with ε.

Reported: the fraction of cases certified, the fraction of certified cases whose observed ΔL(P1) ≤ ε,
and the median ratio recommended / true safe LR (how conservative the advisor is). These check the
advisor, not the paper, so they are plain facts (``info["notes"]``), not verdicts.

Scenarios: ``s<k>`` is the lab's domain with k hard concept tokens per example (``lab.domains``).
Each (scenario, seed) is one unit of the resumable loop (``protocol.collect_units``); its cases are
stored together as one record, so a killed run keeps every finished unit and recomputes none.
"""

from __future__ import annotations

import functools
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from talr_theory.tiers.protocol import TierResult, collect_units

NAME = "advisor"


@dataclass
class Config:
    scenarios: tuple[str, ...] = ("s1", "s2", "s3")
    n_seeds: int = 2
    eps_fracs: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
    pilot_lrs: tuple[float, ...] = (0.01, 0.03, 0.09)
    grid_lrs: tuple[float, ...] = (0.006, 0.01, 0.016, 0.025, 0.04, 0.063, 0.1, 0.16)
    extra_factor: float = 3.0
    max_extra: int = 2
    step_budget: float = 0.24   # steps = ceil(step_budget / lr): every LR travels the same nominal distance
    n_evals: int = 10
    gain_fraction: float = 0.3  # the requested gain, as a fraction of the smallest gain the pilots reach
    n_train: int = 24
    n_eval: int = 32
    seed: int = 0

    @classmethod
    def quick(cls, seed: int = 0) -> Config:
        return cls(scenarios=("s1", "s3"), n_seeds=2, grid_lrs=(0.008, 0.016, 0.03, 0.055, 0.1, 0.18),
                   n_evals=5, seed=seed)

    def validate(self) -> None:
        for sc in self.scenarios:
            parse_scenario(sc)
        if len(self.pilot_lrs) < 2 or len(self.grid_lrs) < 2:
            raise ValueError("advisor.Config: need at least two pilot LRs and two grid LRs")
        if not all(0 < f < 1 for f in self.eps_fracs):
            raise ValueError(f"advisor.Config.eps_fracs must lie in (0, 1), got {self.eps_fracs}")


def parse_scenario(name: str) -> int:
    """'s3' -> 3 (hard concept tokens per example)."""
    if not (name.startswith("s") and name[1:].isdigit()):
        raise ValueError(f"advisor scenario {name!r}: expected 's<k>' (k hard tokens per example)")
    return int(name[1:])


def _unit(cfg: Config, scenario: str, seed: int, lab) -> list[dict]:
    """All cases of one (scenario, seed): pilots, held-out grid, recommendations and their checks."""
    from talr_theory.advisor.rule import held_out_cases
    from talr_theory.lab.domains import DomainConfig, domain_nll, make_domain_examples
    from talr_theory.lab.empirical import run_trajectory

    source, model, general = lab
    dcfg = DomainConfig(s=parse_scenario(scenario))
    train_ex = make_domain_examples(source, dcfg, cfg.n_train, seed=seed * 1000 + 555)
    eval_ex = make_domain_examples(source, dcfg, cfg.n_eval, seed=seed * 1000 + 556, prefix="eval")

    @functools.cache  # deterministic: a grid LR equal to a pilot LR is trained once
    def run(lr: float) -> pd.DataFrame:
        steps = int(math.ceil(cfg.step_budget / lr))
        return run_trajectory(model, train_ex, "sft", lr, steps, max(1, steps // cfg.n_evals), general.delta_L,
                              lambda m: domain_nll(m, eval_ex), seed=seed)

    # Full-batch plain SGD is deterministic: the held-out runs differ from the pilots by their LRs.
    return held_out_cases(run, run, cfg.pilot_lrs, cfg.grid_lrs, cfg.eps_fracs, cfg.gain_fraction,
                          extra_factor=cfg.extra_factor, max_extra=cfg.max_extra, n_boot=200, seed=seed)


def summarize(cases: pd.DataFrame) -> dict:
    """n_cases, n_certified, the fraction within ε over certified cases and the conservativeness ratio."""
    cert = cases[cases["status"] == "ok"]
    within = cert["within_epsilon"].astype(bool)
    ratio = cert["ratio_to_true"].to_numpy(float)
    ratio = ratio[np.isfinite(ratio)]
    return {"n_cases": int(len(cases)), "n_certified": int(len(cert)),
            "frac_certified": float(len(cert) / len(cases)) if len(cases) else float("nan"),
            "frac_within_epsilon": float(within.mean()) if len(cert) else float("nan"),
            "n_outside_pilot_range": int((~cert["inside_pilot_range"].astype(bool)).sum()),
            "median_ratio_to_true_safe_lr": float(np.median(ratio)) if ratio.size else float("nan"),
            "n_ratio_measured": int(ratio.size),
            "n_cannot_certify": int((cases["status"] == "cannot-certify").sum())}


def _plain(o):
    """JSON for numpy scalars inside a unit's stored cases."""
    return o.item() if hasattr(o, "item") else str(o)


def collect_cases(cfg: Config, out, progress: bool, lab_factory) -> pd.DataFrame:
    """Every (scenario, seed) unit's cases through the one resumable loop; one stored record per unit.

    A unit yields one row per tolerance ε, all under the unit's key: they are packed into one JSON
    record (floats round-trip exactly) so they can neither overwrite each other nor be half-written.
    ``lab_factory()`` loads the pretrained lab only when some unit is not stored yet.
    """
    lab: list = []

    def packed(scenario: str, seed: int) -> list[dict]:
        if not lab:
            lab.append(lab_factory())
        return [{"cases_json": json.dumps(_unit(cfg, scenario, seed, lab[0]), default=_plain)}]

    units = [{"scenario": sc, "seed": cfg.seed * 1000 + k} for sc in cfg.scenarios for k in range(cfg.n_seeds)]
    stored = collect_units(out, NAME + "_units", cfg, ["scenario", "seed"], units, packed, progress=progress,
                           desc="advisor validation")
    rows = [{**case, "scenario": rec["scenario"], "seed": int(rec["seed"])}
            for rec in stored.to_dict("records") for case in json.loads(rec["cases_json"])]
    return pd.DataFrame(rows)


def run(cfg: Config, out: str | Path | None = None, progress: bool = True) -> TierResult:
    from talr_theory.lab.synthetic import ExactGeneralEvaluator, load_pretrained, torch_threads

    def lab_factory():
        source, model, _ = load_pretrained(progress=progress)
        return source, model, ExactGeneralEvaluator(source, model)

    cfg.validate()
    t0 = time.perf_counter()
    with torch_threads(1):
        cases = collect_cases(cfg, out, progress, lab_factory)
    summary = summarize(cases)
    notes = [
        f"Advisor on held-out runs ({summary['n_cases']} cases = scenarios {', '.join(cfg.scenarios)} × "
        f"{cfg.n_seeds} seeds × {len(cfg.eps_fracs)} tolerances): {summary['n_certified']} certified "
        f"({100 * summary['frac_certified']:.0f}%); among them the observed ΔL(P1) at the recommended LR was "
        f"≤ ε in {100 * summary['frac_within_epsilon']:.0f}%. Certified LRs outside the measured pilot range: "
        f"{summary['n_outside_pilot_range']}.",
        f"Conservativeness: median recommended / true largest safe LR = "
        f"{summary['median_ratio_to_true_safe_lr']:.2f} over {summary['n_ratio_measured']} certified cases whose "
        f"true safe LR lies inside the held-out grid ({len(cfg.grid_lrs)} LRs, chord between the bracketing "
        f"grid LRs).",
        f"Not certified: {summary['n_cannot_certify']} cases (ε above what the largest pilot reached, or below "
        f"the smallest pilot, after at most {cfg.max_extra} extra pilots, each ×{cfg.extra_factor:g} to ×10 "
        f"beyond the range).",
    ]
    info = {"summary": (f"Safe-LR advisor validated on held-out SFT runs in the synthetic lab (exact ΔL(P1)): "
                        f"{summary['n_cases']} (scenario, seed, ε) cases."),
            "notes": notes, "report_tables": {"Advisor cases": "cases"}, "validation": summary,
            "elapsed_s": time.perf_counter() - t0}
    return TierResult(NAME, asdict(cfg), {"cases": cases}, [], info)


def figures(result: TierResult, save) -> None:
    from talr_theory.plotting.lab import advisor_validation

    save(advisor_validation(result.frames["cases"]), "advisor_held_out")
