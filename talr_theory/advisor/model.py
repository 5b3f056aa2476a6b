"""The advisor on a real model: measured s, pilot trajectories (training core, AdamW), the certified LR.

ΔL(P1) is KL(q0 || qθ) on base-model samples (nats per sample); the gain is in nats per held-out
domain example. With ``pilot_seeds`` = k > 1 every pilot LR is trained with seeds seed..seed+k−1
(other minibatch orders) and ε is bracketed by the largest ΔL over them (``rule.points_at_gain``):
a single-seed pilot does not see the run-to-run spread, which on a real model can exceed the
chord's margin. Theorem 3.2 enters through s: the measured s of the domain data (the token
scanner's count) is reported next to the answer; the constant of λ_max ∝ ε/√s is unknown, so the
recommendation itself always comes from the pilot.
"""

from __future__ import annotations

import copy

import pandas as pd

from talr_theory.advisor.config import AdviseConfig
from talr_theory.advisor.rule import advise_with_pilots

N_BOOT = 1000  # resamples of the (information-only) power-law band


def context_length(loaded, fallback: int = 2048) -> int:
    """The model's context window (``max_position_embeddings`` or ``n_positions``), else ``fallback``."""
    cfg = getattr(loaded.model, "config", None)
    for attr in ("max_position_embeddings", "n_positions", "max_seq_len"):
        value = getattr(cfg, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return fallback


def encode_for_advice(examples, tokenizer, max_length: int, split: str, data: str):
    """Encode SFT examples; a clear error naming counts, lengths and the flag when any is dropped for length."""
    from talr_theory.data.encode import encode_examples, encode_pair

    if not examples:
        raise ValueError(f"data {data!r}: the {split} split is empty")
    enc = encode_examples(examples, tokenizer, max_length=max_length)
    if enc.dropped_ids:
        dropped = set(enc.dropped_ids)
        lengths = sorted(len(encode_pair(e.prompt, e.response, tokenizer)[0]) for e in examples
                         if e.example_id in dropped)
        raise ValueError(
            f"data {data!r}: {len(dropped)} of {len(examples)} {split} examples were dropped because their prompt "
            f"alone is at least --max-length {max_length} tokens (prompt lengths {lengths[0]}..{lengths[-1]}, "
            f"so no response token is left to train on); rerun with --max-length {lengths[-1] + 64} or more "
            f"(up to the model's context)")
    return enc


def _inputs(cfg: AdviseConfig, loaded):
    """(loaded model, max_length, context, train encoding, eval encoding); the data is read before the model."""
    from talr_theory.data.sft import load_sft
    from talr_theory.models import load_model

    train_ex = load_sft(cfg.data, format=cfg.format, split="train", limit=cfg.n_train, seed=cfg.seed)
    eval_ex = load_sft(cfg.data, format=cfg.format, split="eval", limit=cfg.n_eval, seed=cfg.seed)
    loaded = loaded or load_model(cfg.model_spec)
    context = context_length(loaded)
    max_length = context if cfg.max_length is None else int(cfg.max_length)
    if not 0 < max_length <= context:
        raise ValueError(f"--max-length must be in [1, {context}] (the model's context), got {max_length}")
    train_enc = encode_for_advice(train_ex, loaded.tokenizer, max_length, "train", cfg.data)
    eval_enc = encode_for_advice(eval_ex, loaded.tokenizer, max_length, "eval", cfg.data)
    return loaded, max_length, context, train_enc, eval_enc


def _pilot_runner(cfg: AdviseConfig, loaded, train_enc, eval_enc, bar):
    """``run_pilot(lr)``: every pilot seed at ``lr``, one trajectory frame (step, delta_star, delta_L, seed)."""
    from talr_theory.lab.probes import SampleKL
    from talr_theory.models import pad_token_id
    from talr_theory.training.core import TrainConfig, train
    from talr_theory.training.evaluation import CheckpointEvaluator

    pad = pad_token_id(loaded.tokenizer)
    kl = SampleKL(loaded, cfg.n_samples, cfg.sample_len, seed=cfg.seed + 1)
    ce = CheckpointEvaluator(eval_enc.examples, pad_id=pad, batch_size=8)
    ce.set_baseline(loaded.model)
    first = set(cfg.pilot_lrs)

    def run_one(lr: float, run_seed: int) -> pd.DataFrame:
        work = copy.deepcopy(loaded.model)
        tcfg = TrainConfig(method=cfg.method, lr=float(lr), optimizer="adamw", steps=cfg.pilot_steps,
                           batch_size=cfg.batch_size, eval_every=1, seed=run_seed)
        res = train(work, train_enc.examples, tcfg, pad_id=pad, progress=False,
                    evaluator=lambda m, step: {"delta_star": ce(m, step)["delta_star"], "delta_L": kl(m)})
        bar.update()
        frame = pd.DataFrame([{"step": r["step"], "delta_star": r.get("delta_star"), "delta_L": r.get("delta_L"),
                               "status": r.get("status"), "seed": run_seed} for r in res.history])
        return frame[frame["status"].eq("ok")].dropna(subset=["delta_star", "delta_L"])

    def run_pilot(lr: float) -> pd.DataFrame:
        if lr not in first:  # an extra pilot: the bar's total grows by its runs, so it never runs past it
            bar.total += cfg.pilot_seeds
            bar.set_description("advisor: extra pilot runs")
            bar.refresh()
        return pd.concat([run_one(lr, cfg.seed + k) for k in range(cfg.pilot_seeds)], ignore_index=True)

    return run_pilot


def advise_model(cfg: AdviseConfig, loaded=None, progress: bool = True) -> dict:
    """Full advice on a real model (see the module docstring): the advice dict plus ``s`` and ``pilot`` rows."""
    from tqdm.auto import tqdm

    from talr_theory.tokens.scanner import scan_tokens
    from talr_theory.tokens.stats import s_statistics

    if cfg.epsilon is None:
        raise ValueError("--epsilon is required (a tolerance > 0 on ΔL(P1), nats per sample)")
    loaded, max_length, context, train_enc, eval_enc = _inputs(cfg, loaded)
    table = scan_tokens(loaded, train_enc.examples, progress=progress)
    s_stats = {f"{k:g}": v for k, v in s_statistics(table, n_boot=300, seed=cfg.seed).items()}
    cache: dict[float, pd.DataFrame] = {}
    with tqdm(desc="advisor: pilot runs", disable=not progress, total=len(cfg.pilot_lrs) * cfg.pilot_seeds) as bar:
        run_pilot = _pilot_runner(cfg, loaded, train_enc, eval_enc, bar)
        advice = advise_with_pilots(run_pilot, cfg.pilot_lrs, cfg.epsilon, gain=cfg.gain, factor=cfg.extra_factor,
                                    max_extra=cfg.max_extra_pilots, cache=cache, n_boot=N_BOOT, seed=cfg.seed)
    pilot = pd.concat([cache[lr] for lr in sorted(cache)], ignore_index=True)
    s02 = s_stats.get("0.2", {}).get("mean")
    advice.update({"model": loaded.spec, "data": cfg.data, "format": cfg.format, "method": cfg.method, "s": s_stats,
                   "pilot_seeds": list(range(cfg.seed, cfg.seed + cfg.pilot_seeds)),
                   "max_length": max_length, "context_length": context,
                   "n_truncated": {"train": train_enc.n_truncated, "eval": eval_enc.n_truncated},
                   "units": {"delta_L": "KL(q0||qθ) nats per base-model sample",
                             "gain": "nats per held-out domain example"},
                   "theorem_3_2_note": (f"measured s(0.2) = {s02:.2f} hard tokens per example; by the paper's "
                                        "λ_max ∝ ε/√s, data with 4x as many hard tokens would halve the safe LR"
                                        if s02 is not None else None),
                   "pilot": pilot.to_dict("records")})
    return advice
