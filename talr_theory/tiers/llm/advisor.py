"""The safe-LR advisor validated on held-out runs of the real model (behind the tier's stage protocol).

Exported for the CLI (``advise --validate --on llm``): :func:`run_advisor` (the advisor part alone),
:func:`advisor_part` (used by the full tier run) and :func:`advisor_enabled`.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from talr_theory.tiers.llm.config import NAME, Config, check
from talr_theory.tiers.llm.runs import setup, train_run, trajectories
from talr_theory.tiers.protocol import TierResult, ensure_rows, results_table


def advisor_enabled(cfg: Config) -> bool:
    return bool(cfg.advisor_grid_lrs) and cfg.advisor_held_out_seed not in cfg.seeds


def advisor_part(env, cfg: Config, traj: pd.DataFrame, out, progress: bool) -> tuple[dict, dict]:
    """Advisor cases: the SFT trajectories at ``lrs`` × ``seeds`` are the pilots; held-out runs use a new seed.

    New runs (held-out grid LRs, checks at recommended LRs, extra pilots) are persisted per (lr, seed)
    in their own table, so a killed run resumes them. ΔL(P1) = ``dL_kl`` (exact KL to the base model).
    """
    from talr_theory.advisor.rule import held_out_cases
    from talr_theory.tiers.advisor import summarize

    pilot_seeds, held_seed = [int(x) for x in cfg.seeds], int(cfg.advisor_held_out_seed)
    sft = traj[traj["method"].eq("sft") & traj["status"].eq("ok") & traj["optimizer"].eq("adamw")
               & traj["format"].eq("label")]
    existing = {(float(lr), int(seed)): g for (lr, seed), g in sft.groupby(["lr", "seed"])}
    missing = [(lr, s) for lr in cfg.lrs for s in pilot_seeds if (float(lr), s) not in existing]
    if missing:
        raise ValueError(f"llm advisor: no SFT trajectory at (lr, seed) {missing}")
    table = results_table(out, NAME + "_advisor_runs", cfg, ["lr", "seed", "step"])
    done = table.load() if table is not None else None
    keep = ("step", "status", "delta_star", "accuracy", "dL_kl", "dL_kl_se", "dL_text", "dL_text_se")
    new_runs: list[dict] = []

    def trajectory(lr: float, seed: int) -> pd.DataFrame:
        lr = float(lr)
        if (lr, seed) in existing:
            g = existing[(lr, seed)]
        else:
            def compute():
                return [{k: r.get(k) for k in keep} for r in train_run(env, cfg, "sft", lr, seed)]

            got = ensure_rows(table, done, {"lr": lr, "seed": seed}, compute)
            new_runs.extend({**r, "lr": lr, "seed": seed} for r in got)
            g = pd.DataFrame(got)
            g = g[g["status"].eq("ok")]
            existing[(lr, seed)] = g
        return g[["step", "delta_star", "dL_kl"]].rename(columns={"dL_kl": "delta_L"}).sort_values("step")

    grid = sorted({*map(float, cfg.lrs), *map(float, cfg.advisor_grid_lrs)})
    def pilots(lr: float) -> pd.DataFrame:  # replicate runs, one per pilot seed
        return pd.concat([trajectory(lr, s).assign(seed=s) for s in pilot_seeds], ignore_index=True)

    rows = held_out_cases(pilots, lambda lr: trajectory(lr, held_seed),
                          cfg.lrs, grid, cfg.advisor_eps_fracs, cfg.advisor_gain_fraction,
                          extra_factor=cfg.advisor_extra_factor, max_extra=cfg.advisor_max_extra,
                          n_boot=min(cfg.n_boot, 200), seed=cfg.seed)
    cases = pd.DataFrame(rows).assign(scenario=cfg.data, pilot_seeds=",".join(map(str, pilot_seeds)),
                                      held_out_seed=held_seed)
    summary = summarize(cases)
    runs = pd.DataFrame(new_runs, columns=["lr", "seed", *keep])
    notes = [_note(env, cfg, cases, summary, grid)]
    return ({"advisor_cases": cases, "advisor_runs": runs},
            {"advisor_validation": summary, "notes": notes,
             "report_tables": {"Safe-LR advisor on held-out SFT runs (llm)": "advisor_cases"}})


def _note(env, cfg: Config, cases: pd.DataFrame, summary: dict, grid: list) -> str:
    pilot_seeds, held_seed = [int(x) for x in cfg.seeds], int(cfg.advisor_held_out_seed)
    order = ("full batch: the same examples at every step as the pilots" if not cfg.batch_size
             or cfg.batch_size >= len(env.domains["label"].train) else "another minibatch order")
    return (f"[llm] Safe-LR advisor on held-out runs ({cfg.model}, {cfg.data}; ΔL(P1) = KL to the base model, nats/"
            f"sample; gain {cases['gain'].iloc[0]:.3g} nats/example = {cfg.advisor_gain_fraction:g} × the smallest "
            f"gain of the pilots): pilots = SFT at LRs {list(cfg.lrs)} with seeds {pilot_seeds} (ε bracketed by the "
            f"largest ΔL over the seeds at each LR); held-out grid = SFT at {len(grid)} LRs with seed {held_seed} "
            f"({order}); {summary['n_cases']} tolerances ε between the grid's ΔL at the gain. "
            f"{summary['n_certified']} certified; the observed ΔL(P1) of a new seed-{held_seed} run at the recommended "
            f"LR was ≤ ε in {summary['frac_within_epsilon']:.0%} of them; median recommended / true largest safe LR = "
            f"{summary['median_ratio_to_true_safe_lr']:.2f} over {summary['n_ratio_measured']} cases (true LR: chord "
            f"between the bracketing grid LRs); {summary['n_cannot_certify']} not certified (at most "
            f"{cfg.advisor_max_extra} extra pilot(s) per direction).")


def run_advisor(cfg: Config, out: str | Path | None = None, progress: bool = True) -> TierResult:
    """Only the tier's advisor part: setup, the SFT trajectories it reuses (``lrs`` × ``seeds``) and its new runs.

    The trajectories go to the tier's own trajectory table, so with the same ``out`` and config they
    are shared with a full run of the tier (either reads what the other computed).
    """
    check(cfg)
    if not advisor_enabled(cfg):
        raise ValueError(f"llm advisor: needs advisor_grid_lrs and an advisor_held_out_seed outside seeds, got "
                         f"advisor_grid_lrs={list(cfg.advisor_grid_lrs)}, seeds={list(cfg.seeds)}, "
                         f"advisor_held_out_seed={cfg.advisor_held_out_seed}")
    t0 = time.perf_counter()
    env = setup(cfg, formats=("label",))
    timings = {"setup": time.perf_counter() - t0}
    t0 = time.perf_counter()
    keys = [{"run": "sft", "lr": float(lr), "seed": int(s), "optimizer": "adamw", "format": "label"}
            for lr in cfg.lrs for s in cfg.seeds]
    traj = trajectories(env, cfg, out, progress, keys)
    timings["trajectories"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    frames, info = advisor_part(env, cfg, traj, out, progress)
    timings["advisor"] = time.perf_counter() - t0
    info["timings"] = timings
    info["summary"] = f"Safe-LR advisor validated on held-out SFT runs of {cfg.model} ({cfg.data})."
    return TierResult(NAME, asdict(cfg), frames, [], info)
