"""The tier's setup and training runs: one environment (model, cached prefix, data, P1 units), resumable runs.

What is trained: the last ``n_blocks`` blocks (+ final norm) on cached activations of the frozen rest
(``training.tail.TailLM``), through the one training core (``training.core.train``; LoRA, L2-to-init and
WiSE-FT are its options, applied there). The head is computed only at the positions a loss or a
measure reads (the response tokens of the domain examples; every position of the P1 units).

A run is a resumable unit keyed by (run, lr, seed, optimizer, format): "sft+wise" is an
SFT run whose checkpoints are also read on the WiSE-FT interpolation (no second training), "easy-only" /
"hard-only" are SFT on the training set with the hard / easy tokens' loss truncated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pandas as pd
import torch

from talr_theory.tiers.llm.config import Config
from talr_theory.tiers.llm.measures import General, Measures, mask_labels

# LoRA on the blocks' projections only: the head stays frozen as in every other method ("all-linear" would
# adapt it too on a model peft does not recognise as a transformers model, such as the tail).
LORA_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
KEY = ["run", "lr", "seed", "optimizer", "format"]
KEEP = ("step", "epoch", "status", "method", "wise_alpha", "train_nll", "mean_weight", "delta_star", "accuracy",
        "dL_kl", "dL_kl_se", "dL_text", "dL_text_se", "units_kl", "units_text", "units_acc", "units_gain")


@dataclass
class Domain:
    """One supervision format of the domain: encoded train / held-out examples, answer spans, its measure."""

    name: str
    train: list
    eval: list
    spans: list
    measure: Measures | None = None
    base_s: float = float("nan")  # mean base-model hard tokens (p < hard_threshold) per training example


@dataclass
class Env:
    loaded: object
    tok: object
    pad: int
    tail: object
    general: General
    domains: dict[str, Domain]
    source: str = ""
    masked: dict[str, list] = field(default_factory=dict)
    mask_threshold: float = float("nan")

    def as_loaded(self):
        from types import SimpleNamespace

        return SimpleNamespace(model=self.tail, tokenizer=self.tok, device=next(self.tail.parameters()).device)


def load_domain(cfg: Config, fmt: str, tok) -> Domain:
    """Train / held-out examples of ``cfg.data`` in format ``fmt`` (facts: label or rationale; others: label / cot)."""
    from talr_theory.data.encode import encode_examples
    from talr_theory.data.facts import answer_spans, load_facts, parse_facts_spec
    from talr_theory.data.sft import load_sft

    n = parse_facts_spec(cfg.data)
    if n is not None:
        train, held = (load_facts(n, cfg.seed, split, response=fmt) for split in ("train", "eval"))
    else:
        kind = "label" if fmt == "label" else "cot"
        train, held = (load_sft(cfg.data, format=kind, split=split, seed=cfg.seed) for split in ("train", "eval"))
    enc_train, enc_eval = encode_examples(train, tok).examples, encode_examples(held, tok).examples
    spans = answer_spans(held, enc_eval, tok) if all("answer" in e.meta for e in held) else [None] * len(enc_eval)
    return Domain(fmt, enc_train, enc_eval, spans)


def setup(cfg: Config, formats: tuple[str, ...] = ("label", "rationale")) -> Env:
    """Model, data in each format, base-model samples and text blocks, the cached prefix and the base values."""
    from talr_theory.data.general import load_general_text
    from talr_theory.models import load_model, pad_token_id
    from talr_theory.training.samples import sample_from_model
    from talr_theory.training.tail import TailLM

    torch.manual_seed(cfg.seed)
    loaded = load_model(cfg.model)
    tok, pad = loaded.tokenizer, pad_token_id(loaded.tokenizer)
    domains = {f: load_domain(cfg, f, tok) for f in formats}
    samples = sample_from_model(loaded.model, tok, cfg.n_samples, cfg.sample_len, seed=cfg.seed + 1, pad_id=pad)
    text = load_general_text(tok, cfg.general_text, cfg.general_blocks, cfg.block_len, seed=cfg.seed)
    tail = TailLM(loaded.model, cfg.n_blocks)
    for d in domains.values():
        tail.read_positions(d.train + d.eval)
    tail.warm([e for d in domains.values() for e in d.train + d.eval] + samples.examples + text.examples)
    general = General(tail, samples, text.examples, pad, cfg.eval_batch_size)
    for d in domains.values():
        d.measure = Measures(tail, d.eval, d.spans, general, pad, cfg.eval_batch_size)
    env = Env(loaded, tok, pad, tail, general, domains, source=text.source)
    _masks_and_s(env, cfg)
    return env


def _masks_and_s(env: Env, cfg: Config) -> None:
    """Hard / easy masks of the label-format training set (base p < hard_p) and each format's base s."""
    from talr_theory.tokens.scanner import scan_tokens

    for d in env.domains.values():
        scan = scan_tokens(env.as_loaded(), d.train, batch_size=cfg.eval_batch_size, progress=False)
        d.base_s = float((scan["p"] < cfg.hard_threshold).groupby(scan["example_id"]).sum().mean())
        if d.name == "label":
            env.mask_threshold = cfg.hard_p or float(scan["p"].median())
            env.masked = {k: mask_labels(d.train, scan, env.mask_threshold, k) for k in ("hard", "easy")}
    for k, v in env.masked.items():
        if not v:
            raise ValueError(f"llm tier: no training token is {k} at base p threshold {env.mask_threshold:g}; "
                             f"choose another hard_p")


def attention_kernel(device):
    """The attention kernel of the tier's training runs: PyTorch's math kernel on CPU, the default elsewhere.

    On CPU the fused flash-attention kernel's backward costs ~12% of a training step on these ~25-token
    sequences; the math kernel makes a step 1.24× faster here (``benchmarks/bench_llm_stage.py``, column
    "new, fused attn"). Same mathematics, float rounding aside.
    """
    from contextlib import nullcontext

    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH) if device.type == "cpu" else nullcontext()


def train_run(env: Env, cfg: Config, run: str, lr: float, seed: int, optimizer: str = "adamw",
              format: str = "label") -> list[dict]:
    """One training run's checkpoint rows (every ``KEEP`` field); the model starts from the base each time."""
    from talr_theory.training.config import TrainConfig
    from talr_theory.training.core import train
    from talr_theory.training.tail import TailLM

    dom = env.domains[format]
    examples = env.masked[run.split("-")[0]] if run.endswith("-only") else dom.train
    method = {"sft+wise": "wise-ft", "easy-only": "sft", "hard-only": "sft"}.get(run, run)
    if cfg.full_model:
        import copy

        model = copy.deepcopy(env.loaded.model).requires_grad_(True)
    else:
        model = TailLM(env.loaded.model, cfg.n_blocks, cache=env.tail.cache)
        model.read_positions([], reads=env.tail.reads)
        model.compact_eval = True  # the measures read compact logits (no dense [B, T, V] zeros at checkpoints)
    steps, every = cfg.steps_for(len(dom.train))  # the same steps for the masked sets: same LR and steps
    if run.endswith("-only") or format != "label" or optimizer != "adamw":
        every = steps  # the ablation and the rationale format are read at their last checkpoint only
    tc = TrainConfig(method=method, lr=lr, optimizer=optimizer, steps=steps, batch_size=cfg.batch_size,
                     bf16_autocast=cfg.bf16,
                     eval_every=every, seed=seed, l2_coeff=cfg.l2_coeff, lora_rank=cfg.lora_rank,
                     lora_alpha=2.0 * cfg.lora_rank, lora_targets=LORA_TARGETS, wise_alphas=(1.0, cfg.wise_alpha))
    with attention_kernel(next(model.parameters()).device):
        res = train(model, examples, tc, evaluator=dom.measure, pad_id=env.pad, progress=False)
    rows = []
    for r in res.history:
        row = {k: r.get(k) for k in KEEP}
        row["method"] = _label(run, row.get("wise_alpha"))
        rows.append(row)
    return rows


def _label(run: str, alpha) -> str:
    if run == "sft+wise":
        return "sft" if alpha == 1.0 else "wise-ft"
    return run


def units(cfg: Config, env: Env | None = None) -> list[dict]:
    """Every training run of the tier as a key of the run table (duplicates removed, order kept)."""
    out = []
    wise = "wise-ft" in cfg.compare_methods

    def add(run, lr, seed, optimizer="adamw", format="label"):
        key = {"run": run, "lr": float(lr), "seed": int(seed), "optimizer": optimizer, "format": format}
        if key not in out:
            out.append(key)

    for lr in cfg.lrs:
        for s in cfg.seeds:
            for m in cfg.methods:
                paired = wise and m == "sft" and lr in cfg.compare_lrs and s in cfg.compare_seeds
                add("sft+wise" if paired else m, lr, s)
    for s in cfg.paper_extra_seeds:
        for m in cfg.methods:
            add(m, cfg.resolved_paper_lr(), s)
    for m in cfg.compare_methods:
        if m != "wise-ft":
            for lr in cfg.compare_lrs:
                for s in cfg.compare_seeds:
                    add(m, lr * (cfg.lora_lr_factor if m == "lora" else 1.0), s)
    for opt in cfg.ablation_optimizers:
        lr = cfg.resolved_ablation_lr() if opt == "adamw" else cfg.sgd_lr
        for run in ("sft", "easy-only", "hard-only"):
            for s in cfg.seeds:
                if not (opt == "adamw" and run == "sft"):  # full AdamW SFT at that LR is already a main run
                    add(run, lr, s, opt)
    for s in cfg.seeds:
        add("sft", cfg.resolved_paper_lr(), s, "adamw", "rationale")
    return out


def trajectories(env: Env, cfg: Config, out, progress: bool, keys: list[dict] | None = None) -> pd.DataFrame:
    """Every run's checkpoint rows (resumable per run under ``out``), with ``pair_lr`` (the SFT LR it pairs with).

    A run has many rows (checkpoints; WiSE-FT's α), so the stored rows are keyed by the run's key plus
    method and step; a run is either complete in the table or absent (``protocol.ensure_rows``). The runs
    not stored yet are trained ``cfg.workers`` at a time (:func:`_train_in_processes`), each stored as it ends.
    """
    from tqdm.auto import tqdm

    from talr_theory.tiers.protocol import ensure_rows, results_table, stored_rows

    keys = units(cfg) if keys is None else keys
    table = results_table(out, "llm_runs", cfg, [*KEY, "method", "step"])
    done = table.load() if table is not None else None
    todo = [k for k in keys if stored_rows(done, k) is None]
    computed = _train_in_processes(env, cfg, todo, table, progress) if _n_workers(env, cfg, len(todo)) > 1 else {}
    rows = []
    for key in tqdm(keys, desc="llm runs", disable=not progress or bool(computed), leave=False):
        got = computed.get(_key(key))
        if got is None:
            got = ensure_rows(table, done, key, lambda key=key: train_run(env, cfg, **key))
        rows += [{**r, **key} for r in got]
    traj = pd.DataFrame(rows)
    traj["pair_lr"] = [pair_lr(cfg, m, lr) for m, lr in zip(traj["method"], traj["lr"])]
    order = ["format", "optimizer", "method", "lr", "seed", "step"]
    return traj.sort_values(order, kind="stable").reset_index(drop=True)


def _key(key: dict) -> tuple:
    return tuple(sorted(key.items()))


def _n_workers(env: Env, cfg: Config, n_runs: int) -> int:
    """Processes for ``n_runs`` runs: ``cfg.workers`` on a CPU model (CUDA cannot be forked), never more than runs."""
    on_cpu = next(env.loaded.model.parameters()).device.type == "cpu"
    return max(1, min(cfg.workers, n_runs)) if on_cpu else 1


_FORKED: tuple | None = None  # (env, cfg) for the forked workers: inherited, never pickled


def _one_thread() -> None:
    torch.set_num_threads(1)


def _train_forked(key: dict) -> tuple[dict, list[dict]]:
    env, cfg = _FORKED
    return key, train_run(env, cfg, **key)


def _train_in_processes(env: Env, cfg: Config, todo: list[dict], table, progress: bool) -> dict[tuple, list[dict]]:
    """Train ``todo`` in ``cfg.workers`` forked processes of one torch thread each; {key: rows}.

    A training step's small operations (casts, fills, the optimizer, a batch of 24 short rows) do not use
    two threads of one process fully; two processes of one thread each train two runs at once (6 default
    runs on 2 cores: 77.7 s against 86.7 s, docs/llm.md). The workers inherit the environment (model, prefix cache, data) by fork,
    copy-on-write, and return rows only. Each run's rows are stored as soon as it ends, so a killed stage
    resumes without losing or duplicating a run. A run computed in one thread can differ from one computed
    with more in the last float bits (the order of a matmul's sums); ``workers`` is part of the config and
    so of the stage's fingerprint.
    """
    import multiprocessing

    from tqdm.auto import tqdm

    global _FORKED
    _FORKED = (env, cfg)
    computed = {}
    try:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(_n_workers(env, cfg, len(todo)), initializer=_one_thread) as pool, \
                tqdm(total=len(todo), desc=f"llm runs ({cfg.workers} processes)", disable=not progress,
                     leave=False) as bar:
            for key, rows in pool.imap_unordered(_train_forked, todo):
                if table is not None:
                    for r in rows:
                        table.append({**r, **key})
                computed[_key(key)] = rows
                bar.update()
    finally:
        _FORKED = None
    return computed


def pair_lr(cfg: Config, method: str, lr: float) -> float:
    """The SFT learning rate a run is compared with: its own, or for LoRA the grid LR it was scaled from."""
    if method != "lora":
        return float(lr)
    target = lr / cfg.lora_lr_factor  # the grid value itself, not its floating-point round trip
    return float(min(cfg.lrs, key=lambda x: abs(x - target)))


def format_lines(env: Env, cfg: Config) -> pd.DataFrame:
    """Per format: the line scan of one full-batch SGD step on its training set (units of both P1 kept)."""
    from talr_theory.lab.empirical import objective_gradient, step_direction
    from talr_theory.tiers.llm.probes import line_scan

    rows = []
    for name, dom in env.domains.items():
        t0 = time.perf_counter()
        grads, _ = objective_gradient(env.tail, dom.train, "sft", pad_id=env.pad, batch_size=cfg.eval_batch_size)
        d = step_direction(grads, "sgd")
        for r in line_scan(env.tail, d, env.general, min(cfg.format_epsilons), max(cfg.format_epsilons),
                           cfg.lam_start, cfg.lam_factor):
            rows.append({**r, "format": name, "base_s": dom.base_s, "seconds": time.perf_counter() - t0})
    return pd.DataFrame(rows)
