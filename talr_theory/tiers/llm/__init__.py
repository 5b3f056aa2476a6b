"""The real-model tier: the paper's claims measured on a pretrained LLM (default SmolLM2-135M), at its protocol.

Modules: ``config`` (every grid), ``measures`` (accuracy, Δ*, ΔL(P1) per unit), ``runs`` (setup and the
resumable training runs), ``compare`` (paired differences, equal-accuracy frontier, selection rule),
``claims`` (the verdicts), ``theorems`` (Theorems 3.1/3.2), ``probes`` (controlled-s probes, the line
scan), ``advisor`` (the safe-LR advisor on held-out runs). docs/llm.md describes the design.

What is trained: the last ``n_blocks`` blocks of the model on cached activations of the frozen rest; every
verdict's note says so. Accuracy is teacher-forced exact match of the answer tokens on held-out
paraphrased prompts (``measures``), the one accuracy definition of the tier.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from talr_theory.tiers.llm.config import NAME, P1_LABEL, P1S, Config, check
from talr_theory.tiers.protocol import TierResult

__all__ = ["NAME", "P1S", "P1_LABEL", "Config", "run", "figures", "advisor_figures", "run_advisor", "advisor_part", "advisor_enabled",
           "mask_labels", "lambda_max_from_grid", "line_scan", "probe_group"]

# Imported on first use (PEP 562): these modules import torch, which reading a stored result never needs.
_LAZY = {"run_advisor": "advisor", "advisor_part": "advisor", "advisor_enabled": "advisor", "mask_labels": "measures",
         "lambda_max_from_grid": "probes", "line_scan": "probes", "probe_group": "probes"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _timed(timings: dict, name: str, fn):
    t0 = time.perf_counter()
    value = fn()
    timings[name] = time.perf_counter() - t0
    return value


def run(cfg: Config, out: str | Path | None = None, progress: bool = True) -> TierResult:
    from talr_theory.tiers.llm import runs
    from talr_theory.tiers.llm.advisor import advisor_enabled, advisor_part
    from talr_theory.tiers.llm.probes import probes_and_lines

    check(cfg)
    timings: dict[str, float] = {}
    env = _timed(timings, "setup", lambda: runs.setup(cfg))
    traj = _timed(timings, "training_runs", lambda: runs.trajectories(env, cfg, out, progress))
    flines = _timed(timings, "format_line_scans", lambda: runs.format_lines(env, cfg))
    lines, checks = _timed(timings, "theorem_3_2_lines", lambda: probes_and_lines(env, cfg, out, progress))
    frames, verdicts, info = _timed(timings, "analysis", lambda: _analyse(cfg, env, traj, flines, lines, checks))
    t0 = time.perf_counter()
    if advisor_enabled(cfg):
        adv_frames, adv_info = advisor_part(env, cfg, traj, out, progress)
        frames.update(adv_frames)
        info["advisor_validation"] = adv_info["advisor_validation"]
        info["notes"] += adv_info["notes"]
        info["report_tables"].update(adv_info["report_tables"])
    else:
        info["notes"].append("[llm] Safe-LR advisor on held-out runs: not run (needs advisor_grid_lrs and an "
                             "advisor_held_out_seed that is not a pilot seed).")
    timings["advisor"] = time.perf_counter() - t0
    info["timings"] = timings
    return TierResult(NAME, asdict(cfg), frames, verdicts, info)


def _analyse(cfg: Config, env, traj: pd.DataFrame, flines: pd.DataFrame, lines: pd.DataFrame, checks: pd.DataFrame):
    from talr_theory.tiers.llm import claims, compare, theorems

    final = compare.final_rows(traj)
    verdicts = claims.talr_paper(final, cfg)
    verdicts += claims.finding1(traj, final, cfg)
    frontier_v, frontier = claims.frontier(traj, cfg)
    ablation_v, ablation = claims.ablation(final, cfg)
    format_v, formats = claims.formats(flines, final, cfg)
    thm31_v, thm31 = theorems.theorem_3_1(traj, cfg)
    lam = theorems.lambda_table(lines, cfg)
    thm32_v, fits = theorems.theorem_3_2(lam, cfg)
    verdicts += frontier_v + ablation_v + format_v + thm31_v + thm32_v
    label = compare.select(traj[traj["status"].eq("ok")], format="label", optimizer="adamw")
    label = label[~label["method"].str.endswith("-only")]  # the ablation's runs are not methods
    selection = pd.concat([compare.selection_rule(label, d, f"dL_{p1}") for d in cfg.deltas for p1 in P1S],
                          ignore_index=True)
    info = _info(cfg, env, traj, final, fits, checks)
    info["theorem_3_1"] = thm31
    frames = {"trajectories": traj.drop(columns=[c for c in traj.columns if c.startswith("units_")]),
              "methods": claims.method_table(final, cfg), "frontier": frontier, "selection_rule": selection,
              "ablation": ablation, "formats": formats,
              "format_lines": flines.drop(columns=[c for c in flines.columns if c.startswith("units_")]),
              "lambda_max": lam, "probe_check": checks, "lines": lines}
    return frames, verdicts, info


def _info(cfg: Config, env, traj: pd.DataFrame, final: pd.DataFrame, fits: dict, checks: pd.DataFrame) -> dict:
    label = final[final["format"].eq("label") & final["optimizer"].eq("adamw")]
    label = label[~label["method"].str.endswith("-only")]  # the best *method*: the ablation's runs are not methods
    acc = label.groupby(["method", "lr"])["accuracy"].mean()
    dom = env.domains["label"]
    steps, every = cfg.steps_for(len(dom.train))
    info = {"accuracy": {"base": float(dom.measure.base_row["accuracy"]), "best": float(acc.max()),
                         "best_run": dict(zip(("method", "lr"), acc.idxmax())),
                         "definition": "teacher-forced exact match of the answer tokens, held-out prompts"},
            "n_eval_prompts": len(dom.eval), "n_train_examples": len(dom.train), "steps": steps,
            "eval_every": every, "mask_threshold": env.mask_threshold, "theorem_3_2": fits,
            "base_s": {name: d.base_s for name, d in env.domains.items()},
            "probe_check": checks.groupby("intended_s")[["measured_s", "excess_s"]].mean().reset_index()
            .to_dict("records")}
    info["summary"] = (f"{cfg.model}, last {cfg.n_blocks} blocks fine-tuned (minibatches of {cfg.batch_size} of "
                       f"{len(dom.train)} training examples, {cfg.epochs} epochs = {steps} steps, checkpoints every "
                       f"{every} steps) on {cfg.data} ({len(dom.eval)} held-out prompts); methods {list(cfg.methods)} "
                       f"at LRs {list(cfg.lrs)} × seeds {list(cfg.seeds)}"
                       + (f" (and seeds {list(cfg.paper_extra_seeds)} at LR {cfg.resolved_paper_lr():g})"
                          if cfg.paper_extra_seeds else "") + f"; ΔL(P1) as exact KL on {cfg.n_samples} base "
                       f"samples (nats/sample) and NLL change on {len(env.general.text)} blocks of {env.source} "
                       f"(nats/block).")
    info["notes"] = [f"[llm] Accuracy base {info['accuracy']['base']:.2f}, best {info['accuracy']['best']:.2f} "
                     f"({info['accuracy']['definition']}, {len(dom.eval)} prompts; mean over seeds).",
                     f"[llm] {cfg.proxy_note()}"]
    info["report_tables"] = {"Methods vs SFT at the same LR and epochs (llm)": "methods",
                             "ΔL(P1) at equal held-out accuracy, best LR per method (llm)": "frontier",
                             "Hard-token ablation (llm)": "ablation", "Label-only vs rationale (llm)": "formats"}
    return info


def figures(result: TierResult, save) -> None:
    from talr_theory.plotting import llm as plots

    f, about = result.frames, plots.about(result.config)
    save(plots.frontier(f["trajectories"], about), "llm_frontier")
    save(plots.envelope(f["trajectories"], about), "llm_envelope_measured")
    save(plots.lambda_max_vs_eps(f["lambda_max"], about), "llm_lambda_max_vs_eps")
    save(plots.probe_check(f["probe_check"], about), "llm_probe_check")
    save(plots.ablation(f["ablation"], about), "llm_hard_vs_easy")
    for name, fig in advisor_figures(result).items():
        save(fig, name)


def advisor_figures(result: TierResult) -> dict:
    """The safe-LR advisor's held-out figure by name ({} when the stage ran no advisor check)."""
    f = result.frames
    if "advisor_cases" not in f or not len(f["advisor_cases"]):
        return {}
    from talr_theory.plotting.lab import advisor_validation

    c = result.config
    return {"llm_advisor_held_out": advisor_validation(
        f["advisor_cases"], setting=f"{c['model']}, last {c['n_blocks']} blocks trained; {c['data']}; SFT pilots on "
        f"seeds {list(c['seeds'])}, held-out seed {c['advisor_held_out_seed']}; ΔL(P1) = KL on base-model samples")}
