"""The real-model tier: the paper's claims measured on a pretrained LLM (default SmolLM2-135M).

What is trained. The last ``n_blocks`` transformer blocks (+ final norm) of the model, on cached
activations of the frozen rest (``training.tail.TailLM``; the embeddings and the tied output head stay
frozen). This is what makes dense trajectories fit a 2-core CPU; every number below is about this
partial fine-tuning, and the report says so.

Domain. A data spec (default ``facts``: fictitious facts, held-out paraphrased prompts). Δ* is the
code-length gain on held-out examples (nats per example); accuracy is teacher-forced exact match of
the answer tokens (the scanner's ``is_argmax``), one forward pass, no generation.

General degradation ΔL(P1), two ways, on the same checkpoints:
- ``kl``   P1 = q0: exact KL(q0 || qθ) over the vocabulary at every position of fixed base-model
           samples (``training.evaluation.exact_kl``), nats per sample, SE over samples;
- ``text`` P1 = real text (WikiText-2 from ../shared, else the built-in passage): change of the NLL
           per block (nats per block of ``block_len`` tokens), SE over blocks.
Both are kept per unit (sample / block), so method comparisons are paired on the same units.

Theorem 3.1: SFT trajectories at several LRs and seeds (TALR and the baselines at one LR), checkpoints every
``eval_every`` steps; costs are
read at common Δ* only inside brackets of measured checkpoints (``protocol.cost_at_gain``).
Theorem 3.2: controlled-s probes (the second copy of a repeated passage, supervised on tokens the
base model predicts with p > 0.9 plus s nested random replacements and their successors), one SGD
step direction each, ΔL along the line θ0 - λd on a geometric λ grid, λ_max(ε) interpolated in
log-log between bracketing grid points; fitted within groups against the measured excess s.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch

from talr_theory.tiers.protocol import (
    TierResult,
    cost_at_gain,
    ensure_rows,
    exponent_verdicts,
    paired_ratio,
    ratio_verdict,
    results_table,
)

NAME = "llm"
P1S = ("kl", "text")
P1_LABEL = {"kl": "P1=q0", "text": "P1=real text"}


@dataclass
class Config:
    """Every grid of the real-model tier."""

    model: str = "smollm2-135m"
    data: str = "facts:24"
    n_blocks: int = 4                  # trained transformer blocks (the rest and the head are frozen)
    lrs: tuple[float, ...] = (1e-4, 2e-4, 4e-4)  # AdamW; 4e-4 reaches ~85 % held-out accuracy in 14 steps
    seeds: tuple[int, ...] = (0, 1)     # SFT at every LR, and TALR at compare_lr, run with every seed
    compare_seeds: tuple[int, ...] = (0,)  # the other methods and the hard/easy ablation (budget: 2 cores)
    steps: int = 10
    eval_every: int = 2
    batch_size: int = 24               # 0: full batch (48 training examples at facts:24)
    compare_methods: tuple[str, ...] = ("dft", "flow", "l2", "wise-ft", "lora")
    compare_lr: float = 2e-4
    l2_coeff: float = 30.0             # strong enough to differ from SFT (weights move ~1e-3 per step)
    lora_rank: int = 8
    wise_alpha: float = 0.5
    mask_threshold: float = 0.5        # hard = base p < θ, easy = base p ≥ θ (0: the median base p)
    n_gain_grid: int = 6
    n_samples: int = 16                # base-model samples for KL(q0 || qθ)
    sample_len: int = 24
    general_blocks: int = 16
    block_len: int = 24
    general_text: str = "auto"
    s_values: tuple[int, ...] = (1, 4, 16)  # nested; (1, 2, 4, 8, 16, 32) × 16 groups is ~20 min here
    n_groups: int = 6
    passage_text: str = "tinyshakespeare"  # probe passages (base-model samples when absent)
    passage_len: int = 128             # s up to max(s_values) needs that many non-adjacent easy sites in the copy
    p_easy: float = 0.9
    hard_threshold: float = 0.2        # s(θ) threshold of the measured s
    epsilons: tuple[float, ...] = (0.01, 0.03, 0.1)
    lam_factor: float = 3.0
    lam_start: float = 0.1             # first λ of the line scan, as the norm of the parameter change λ‖d‖
    fisher_step: float = 0.05          # ‖Δθ‖ of the central difference for dᵀFd
    eval_batch_size: int = 32
    n_boot: int = 1000
    seed: int = 0
    # The safe-LR advisor on held-out runs: pilots = SFT at ``lrs`` with each of ``seeds`` (replicates: the
    # advisor brackets ε with their upper envelope, covering the seed-to-seed spread it measured); the
    # held-out grid = new SFT runs with ``advisor_held_out_seed`` (a minibatch order no pilot used) at ``lrs``
    # and ``advisor_grid_lrs``; () skips this part.
    advisor_held_out_seed: int = 2
    advisor_grid_lrs: tuple[float, ...] = (7e-5, 1.4e-4, 2.8e-4, 5.6e-4)
    advisor_eps_fracs: tuple[float, ...] = (0.2, 0.35, 0.5, 0.65, 0.8)
    advisor_gain_fraction: float = 0.25  # requested gain, as a fraction of the smallest gain the pilots reach
    advisor_extra_factor: float = 3.0
    advisor_max_extra: int = 1           # extra pilots (every pilot seed) per direction when ε is not bracketed

    @classmethod
    def quick(cls, seed: int = 0) -> Config:
        return cls(model="tiny-random", data="facts:6", n_blocks=1, lrs=(3e-3, 1e-2, 3e-2), seeds=(0, 1), steps=4,
                   compare_seeds=(0, 1), eval_every=1, batch_size=0,
                   compare_methods=("dft", "l2"), compare_lr=1e-2, n_samples=4, sample_len=8, general_blocks=4,
                   block_len=12, s_values=(1, 2, 4), n_groups=4, passage_len=24, p_easy=0.0, mask_threshold=0.0,
                   epsilons=(1e-3, 1e-2), n_boot=200, seed=seed, advisor_grid_lrs=(5e-3, 2e-2),
                   advisor_eps_fracs=(0.2, 0.45, 0.7))


# ---------------------------------------------------------------------------------------------
# Measurements at a checkpoint


def _as_loaded(model, tokenizer):
    return SimpleNamespace(model=model, tokenizer=tokenizer, device=next(model.parameters()).device)


class Measures:
    """Δ*, accuracy and both ΔL(P1) of a model against the cached base-model values (one forward per set)."""

    def __init__(self, base, tokenizer, pad: int, domain_eval: list, spans: list, samples, text_blocks: list,
                 batch_size: int = 32):
        from talr_theory.training.evaluation import next_token_log_probs

        self.tok, self.pad, self.bs = tokenizer, pad, batch_size
        self.domain_eval, self.spans, self.samples, self.text = domain_eval, spans, samples, text_blocks
        self.base_logq = next_token_log_probs(base, samples.examples, pad, batch_size)
        self.base_dom = self._domain(base)
        self.base_text = self._text(base)

    def _scan(self, model, examples, argmax=False):
        from talr_theory.tokens.scanner import scan_tokens

        return scan_tokens(_as_loaded(model, self.tok), examples, batch_size=self.bs, progress=False,
                           with_argmax=argmax)

    def _domain(self, model) -> dict:
        t = self._scan(model, self.domain_eval, argmax=True)
        code = (-t.groupby("example_id", sort=False)["logp"].sum()).reindex([e.example_id for e in self.domain_eval])
        correct = []
        top = t.set_index(["example_id", "position"])["is_argmax"]
        for ex, span in zip(self.domain_eval, self.spans):
            if span is not None:
                correct.append(all(bool(top[(ex.example_id, p)]) for p in range(span[0], span[1])))
        return {"code": code.to_numpy(float), "accuracy": float(np.mean(correct)) if correct else math.nan}

    def _text(self, model) -> np.ndarray:
        t = self._scan(model, self.text)
        return (-t.groupby("example_id", sort=False)["logp"].sum()).reindex([e.example_id for e in self.text]).to_numpy(float)

    def general(self, model) -> dict[str, np.ndarray]:
        from talr_theory.training.evaluation import exact_kl

        return {"kl": exact_kl(model, self.samples.examples, self.base_logq, self.pad, self.bs),
                "text": self._text(model) - self.base_text}

    def __call__(self, model, step: int = 0) -> dict:
        dom = self._domain(model)
        gen = self.general(model)
        row = {"delta_star": float(np.mean(self.base_dom["code"] - dom["code"])), "accuracy": dom["accuracy"]}
        for p1, v in gen.items():
            row[f"dL_{p1}"] = float(v.mean())
            row[f"dL_{p1}_se"] = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else math.nan
            row[f"units_{p1}"] = [float(x) for x in v]
        return row


# ---------------------------------------------------------------------------------------------
# Hard / easy token masks (base-model p) and controlled-s probes


def mask_labels(examples: list, token_p: pd.DataFrame, threshold: float, keep: str) -> list:
    """Copies of ``examples`` supervising only tokens with base p < threshold (``keep='hard'``) or ≥ it ('easy').

    ``token_p`` is a scan of the base model on ``examples`` (columns example_id, position, p).
    Examples left with no supervised token are dropped (their count is ``len(examples) - len(result)``).
    """
    from talr_theory.data.encode import IGNORE, EncodedExample

    if keep not in ("hard", "easy"):
        raise ValueError(f"keep must be 'hard' or 'easy', got {keep!r}")
    p = token_p.set_index(["example_id", "position"])["p"]
    out = []
    for ex in examples:
        labels = list(ex.labels)
        for pos, lab in enumerate(ex.labels):
            if lab == IGNORE:
                continue
            hard = float(p[(ex.example_id, pos)]) < threshold
            if hard != (keep == "hard"):
                labels[pos] = IGNORE
        if any(lab != IGNORE for lab in labels):
            out.append(EncodedExample(f"{ex.example_id}-{keep}", list(ex.input_ids), labels))
    return out


def probe_group(passage: list[int], bos: int | None, base_p: np.ndarray, s_values, vocab: np.ndarray,
                rng: np.random.Generator, p_easy: float, group: int) -> dict[int, object]:
    """Probes for one group: s -> EncodedExample on BOS + A + A with s nested random replacements in the copy.

    ``base_p[j]`` is the base model's p of the j-th token of the second copy in the unmodified text.
    Replacement sites are non-adjacent positions of the copy (not its last token) whose token and
    successor have p > ``p_easy``; the sites of s are the first s of one random order (nested). The
    supervised tokens are the easy tokens (p > p_easy) plus each site and its successor. s = 0 is
    always included (the unmodified text, same supervision rule).
    """
    from talr_theory.data.encode import IGNORE, EncodedExample

    m = len(passage)
    head = [bos] if bos is not None else []
    start = len(head) + m  # index of the copy's first token in input_ids
    ids0 = head + list(passage) + list(passage)
    easy = base_p > p_easy
    cand = [j for j in range(m - 1) if easy[j] and easy[j + 1]]
    rng.shuffle(cand)
    sites: list[int] = []
    for j in cand:
        if all(abs(j - k) > 1 for k in sites):
            sites.append(j)
        if len(sites) == max(s_values):
            break
    if len(sites) < max(s_values):
        raise ValueError(f"probe group {group}: only {len(sites)} non-adjacent easy sites in a copy of {m} tokens "
                         f"(need {max(s_values)}); use a longer passage_len or a lower p_easy")
    out = {}
    for s in sorted({0, *s_values}):
        ids = list(ids0)
        sup = set(np.flatnonzero(easy).tolist())
        for j in sites[:s]:
            orig = ids[start + j]
            new = orig
            while new == orig:
                new = int(vocab[rng.integers(len(vocab))])
            ids[start + j] = new
            sup |= {j, j + 1}
        labels = [IGNORE] * len(ids)
        for j in sup:
            labels[start + j] = ids[start + j]
        out[s] = EncodedExample(f"probe-g{group}-s{s}", ids, labels)
    return out


# ---------------------------------------------------------------------------------------------
# One-step line: ΔL(P1) along θ0 - λ·d and λ_max(ε)


def lambda_max_from_grid(lams: np.ndarray, dl: np.ndarray, eps: float) -> float:
    """Smallest λ with ΔL(λ) = ε, interpolated between the first bracketing grid points (log-log when both > 0).

    NaN when no grid point exceeds ε, or when the first grid point already does (the bracket would need
    the origin).
    """
    above = np.flatnonzero(dl > eps)
    if not len(above) or above[0] == 0:
        return math.nan
    i = above[0]
    l0, l1, d0, d1 = lams[i - 1], lams[i], dl[i - 1], dl[i]
    if d0 > 0:
        f = (math.log(eps) - math.log(d0)) / (math.log(d1) - math.log(d0))
    else:
        f = (eps - d0) / (d1 - d0)
    return float(math.exp(math.log(l0) + f * (math.log(l1) - math.log(l0))))


def _norm(d: list[torch.Tensor]) -> float:
    return math.sqrt(sum(float((x.double() ** 2).sum()) for x in d)) or 1.0


def line_scan(tail, direction: list[torch.Tensor], measure, eps_min: float, eps_max: float, lam_start: float,
              factor: float, max_evals: int = 16) -> list[dict]:
    """ΔL of both P1 at λ = (lam_start/‖d‖)·factor^k (k moving down first if needed) until both exceed ``eps_max``."""
    params = [p for p in tail.parameters() if p.requires_grad]
    theta0 = [p.detach().clone() for p in params]
    evals: dict[float, dict] = {}
    lam_start = lam_start / _norm(direction)

    def at(lam):
        if lam not in evals:
            with torch.no_grad():
                torch._foreach_copy_(params, theta0)
                torch._foreach_add_(params, direction, alpha=-lam)
            g = measure.general(tail)
            evals[lam] = {p1: float(v.mean()) for p1, v in g.items()}
        return evals[lam]

    lam = lam_start
    while len(evals) < max_evals and max(at(lam).values()) >= eps_min and lam > 1e-12:
        lam /= factor * factor
    lam = min(evals)
    while len(evals) < max_evals and min(at(lam).values()) <= eps_max:
        lam *= factor
    with torch.no_grad():
        torch._foreach_copy_(params, theta0)
    return [{"lam": k, **{f"dL_{p}": v[p] for p in v}} for k, v in sorted(evals.items())]


# ---------------------------------------------------------------------------------------------
# The tier


def _setup(cfg: Config):
    from talr_theory.data.encode import encode_examples
    from talr_theory.data.facts import answer_spans
    from talr_theory.data.general import load_general_text
    from talr_theory.data.sft import load_sft
    from talr_theory.models import load_model, pad_token_id
    from talr_theory.training.samples import sample_from_model
    from talr_theory.training.tail import TailLM

    loaded = load_model(cfg.model)
    tok, pad = loaded.tokenizer, pad_token_id(loaded.tokenizer)
    train_sft = load_sft(cfg.data, format="label", split="train", seed=cfg.seed)
    eval_sft = load_sft(cfg.data, format="label", split="eval", seed=cfg.seed)
    enc_train = encode_examples(train_sft, tok).examples
    enc_eval = encode_examples(eval_sft, tok).examples
    spans = answer_spans(eval_sft, enc_eval, tok) if all("answer" in e.meta for e in eval_sft) else [None] * len(enc_eval)
    samples = sample_from_model(loaded.model, tok, cfg.n_samples, cfg.sample_len, seed=cfg.seed + 1, pad_id=pad)
    general = load_general_text(tok, cfg.general_text, cfg.general_blocks, cfg.block_len, seed=cfg.seed)
    tail = TailLM(loaded.model, cfg.n_blocks)
    tail.warm(enc_train + enc_eval + samples.examples + general.examples)
    measure = Measures(tail, tok, pad, enc_eval, spans, samples, general.examples, cfg.eval_batch_size)
    return SimpleNamespace(loaded=loaded, tok=tok, pad=pad, train=enc_train, eval=enc_eval, spans=spans,
                           samples=samples, general=general, tail=tail, measure=measure)


def _train_run(env, cfg: Config, method: str, lr: float, seed: int, examples=None, label=None) -> list[dict]:
    from talr_theory.training.config import TrainConfig
    from talr_theory.training.core import train
    from talr_theory.training.tail import TailLM

    examples = examples if examples is not None else env.train
    model = TailLM(env.loaded.model, cfg.n_blocks, cache=env.tail.cache)
    core_method = method
    if method == "lora":
        from talr_theory.training.params import apply_lora

        model.inner = apply_lora(model.inner, cfg.lora_rank, 2.0 * cfg.lora_rank)
        core_method = "sft"
    tc = TrainConfig(method=core_method, lr=lr, optimizer="adamw", steps=cfg.steps,
                     batch_size=cfg.batch_size or len(examples), eval_every=cfg.eval_every, seed=seed,
                     l2_coeff=cfg.l2_coeff, wise_alphas=(cfg.wise_alpha,))
    res = train(model, examples, tc, evaluator=env.measure, pad_id=env.pad, progress=False)
    keep = ("step", "status", "train_nll", "mean_weight", "wise_alpha", "delta_star", "accuracy",
            "dL_kl", "dL_kl_se", "dL_text", "dL_text_se", "units_kl", "units_text")
    return [{**{k: r.get(k) for k in keep}, "method": label or method} for r in res.history]


def _trajectories(env, cfg: Config, units: list[tuple[str, float, int]], out, progress: bool,
                  masked: dict | None = None) -> pd.DataFrame:
    """Training trajectories of ``units`` (method, lr, seed), persisted per unit in the tier's trajectory table."""
    from tqdm.auto import tqdm

    table = results_table(out, NAME + "_trajectories", cfg, ["method", "lr", "seed", "step", "wise_alpha"])
    done = table.load() if table is not None else None
    rows = []
    for method, lr, seed in tqdm(units, desc="llm trajectories", disable=not progress):
        def compute(method=method, lr=lr, seed=seed):
            if method.endswith("-only"):
                return _train_run(env, cfg, "sft", lr, seed, masked[method.split("-")[0]], label=method)
            return _train_run(env, cfg, method, lr, seed)

        for r in ensure_rows(table, done, {"method": method, "lr": float(lr), "seed": int(seed)}, compute):
            rows.append({**r, "method": method, "lr": float(lr), "seed": int(seed)})
    traj = pd.DataFrame(rows).sort_values(["method", "lr", "seed", "step", "wise_alpha"], kind="stable")
    return traj.reset_index(drop=True)


def _check_config(cfg: Config) -> None:
    if cfg.compare_lr not in cfg.lrs:
        raise ValueError(f"llm tier config: compare_lr={cfg.compare_lr:g} must be one of lrs={list(cfg.lrs)} "
                         f"(the other methods are compared with SFT and TALR at that LR)")
    if len(cfg.lrs) < 2 or len(cfg.seeds) < 1:
        raise ValueError(f"llm tier config: needs at least 2 lrs and 1 seed, got lrs={list(cfg.lrs)}, seeds={list(cfg.seeds)}")


def _advisor_enabled(cfg: Config) -> bool:
    return bool(cfg.advisor_grid_lrs) and cfg.advisor_held_out_seed not in cfg.seeds


def _start(cfg: Config) -> tuple[SimpleNamespace, dict[str, float]]:
    """Seeded setup of the tier (model, data, cached activations, measures) and its timing record."""
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    env = _setup(cfg)
    return env, {"setup": time.perf_counter() - t0}


def run(cfg: Config, out: str | Path | None = None, progress: bool = True) -> TierResult:
    _check_config(cfg)
    env, timings = _start(cfg)

    # --- trajectories: SFT/TALR over LRs × seeds, other methods at one LR, hard/easy masks --------
    t0 = time.perf_counter()
    from talr_theory.tokens.scanner import scan_tokens

    base_train = scan_tokens(_as_loaded(env.tail, env.tok), env.train, batch_size=cfg.eval_batch_size, progress=False)
    theta = cfg.mask_threshold or float(base_train["p"].median())
    masked = {k: mask_labels(env.train, base_train, theta, k) for k in ("hard", "easy")}
    for k, v in masked.items():
        if not v:
            raise ValueError(f"no training token is {k} at base p threshold {theta:g}; choose another mask_threshold")
    units = [("sft", lr, s) for lr in cfg.lrs for s in cfg.seeds]
    units += [("talr", cfg.compare_lr, s) for s in cfg.seeds]
    units += [(m, cfg.compare_lr, s) for m in cfg.compare_methods for s in cfg.compare_seeds]
    units += [(f"{k}-only", cfg.compare_lr, s) for k in ("hard", "easy") for s in cfg.compare_seeds]
    traj = _trajectories(env, cfg, units, out, progress, masked)
    timings["trajectories"] = time.perf_counter() - t0

    # --- probes and one-step lines -------------------------------------------------------------
    t0 = time.perf_counter()
    lines, checks = _probes_and_lines(env, cfg, out, progress)
    timings["theorem_3_2_lines"] = time.perf_counter() - t0

    frames, verdicts, info = _analyse(cfg, env, traj, lines, checks, masked)
    info["mask_threshold"] = theta

    # --- the safe-LR advisor on held-out runs (reuses the SFT trajectories above) ----------------
    t0 = time.perf_counter()
    if _advisor_enabled(cfg):
        adv_frames, adv_info = _advisor_part(env, cfg, traj, out, progress)
        frames.update(adv_frames)
        info["advisor_validation"] = adv_info["advisor_validation"]
        info["notes"] = [*info["notes"], *adv_info["notes"]]
        info["report_tables"] = {**info["report_tables"], **adv_info["report_tables"]}
    else:
        info["notes"] = [*info["notes"], "[llm] Safe-LR advisor on held-out runs: not run (needs advisor_grid_lrs "
                                          "and an advisor_held_out_seed that is not a pilot seed)."]
    timings["advisor"] = time.perf_counter() - t0
    info["timings"] = timings
    return TierResult(NAME, asdict(cfg), frames, verdicts, info)


# ---------------------------------------------------------------------------------------------
# The safe-LR advisor on held-out runs


def _advisor_part(env, cfg: Config, traj: pd.DataFrame, out, progress: bool) -> tuple[dict, dict]:
    """Advisor cases: the SFT trajectories at ``lrs`` × ``seeds`` are the pilots; held-out runs use a new seed.

    New runs (held-out grid LRs, checks at recommended LRs, extra pilots) are persisted per (lr, seed)
    in their own table, so a killed run resumes them. ΔL(P1) = ``dL_kl`` (exact KL to the base model).
    """
    from talr_theory.lab.advisor import held_out_cases
    from talr_theory.tiers.advisor import summarize

    pilot_seeds, held_seed = [int(x) for x in cfg.seeds], int(cfg.advisor_held_out_seed)
    sft = traj[traj["method"].eq("sft") & traj["status"].eq("ok")]
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
                return [{k: r.get(k) for k in keep} for r in _train_run(env, cfg, "sft", lr, seed)]

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
    order = ("full batch: the same examples at every step as the pilots" if not cfg.batch_size
             or cfg.batch_size >= len(env.train) else "another minibatch order")
    notes = [
        f"[llm] Safe-LR advisor on held-out runs ({cfg.model}, {cfg.data}; ΔL(P1) = KL to the base model, nats/"
        f"sample; gain {cases['gain'].iloc[0]:.3g} nats/example = {cfg.advisor_gain_fraction:g} × the smallest gain "
        f"of the pilots): pilots = SFT at LRs {list(cfg.lrs)} with seeds {pilot_seeds} (ε bracketed by the "
        f"largest ΔL over the seeds at each LR); held-out grid = SFT at "
        f"{len(grid)} LRs with seed {held_seed} ({order}); {summary['n_cases']} tolerances ε between "
        f"the grid's ΔL at the gain. {summary['n_certified']} certified; the observed ΔL(P1) of a new seed-"
        f"{held_seed} run at the recommended LR was ≤ ε in {summary['frac_within_epsilon']:.0%} of them; median "
        f"recommended / true largest safe LR = {summary['median_ratio_to_true_safe_lr']:.2f} over "
        f"{summary['n_ratio_measured']} cases (true LR: chord between the bracketing grid LRs); "
        f"{summary['n_cannot_certify']} not certified (at most {cfg.advisor_max_extra} extra pilot(s) per direction)."]
    return ({"advisor_cases": cases, "advisor_runs": runs},
            {"advisor_validation": summary, "notes": notes,
             "report_tables": {"Safe-LR advisor on held-out SFT runs (llm)": "advisor_cases"}})


def run_advisor(cfg: Config, out: str | Path | None = None, progress: bool = True) -> TierResult:
    """Only the tier's advisor part: setup, the SFT trajectories it reuses (``lrs`` × ``seeds``) and its new runs.

    The trajectories go to the tier's own trajectory table, so with the same ``out`` and config they
    are shared with a full run of the tier (either reads what the other computed).
    """
    _check_config(cfg)
    if not _advisor_enabled(cfg):
        raise ValueError(f"llm advisor: needs advisor_grid_lrs and an advisor_held_out_seed outside seeds, got "
                         f"advisor_grid_lrs={list(cfg.advisor_grid_lrs)}, seeds={list(cfg.seeds)}, "
                         f"advisor_held_out_seed={cfg.advisor_held_out_seed}")
    env, timings = _start(cfg)
    t0 = time.perf_counter()
    traj = _trajectories(env, cfg, [("sft", lr, s) for lr in cfg.lrs for s in cfg.seeds], out, progress)
    timings["trajectories"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    frames, info = _advisor_part(env, cfg, traj, out, progress)
    timings["advisor"] = time.perf_counter() - t0
    info["timings"] = timings
    info["summary"] = f"Safe-LR advisor validated on held-out SFT runs of {cfg.model} ({cfg.data})."
    return TierResult(NAME, asdict(cfg), frames, [], info)


def _probes_and_lines(env, cfg: Config, out, progress: bool):
    from tqdm.auto import tqdm

    from talr_theory.data.general import load_general_text
    from talr_theory.lab.empirical import objective_gradient, step_direction
    from talr_theory.tokens.scanner import scan_tokens
    from talr_theory.tokens.stats import per_example_counts

    tok = env.tok
    bos = getattr(tok, "bos_token_id", None)
    bos = bos if isinstance(bos, int) else None
    # Passages come from another source than P1's real text, so the probes' own linear effect on
    # that text (training on WikiText-like tokens lowers WikiText's NLL) does not confound ΔL(P1=text).
    try:
        passages = load_general_text(tok, cfg.passage_text, cfg.n_groups, cfg.passage_len, seed=cfg.seed + 7).examples
    except FileNotFoundError:
        from talr_theory.training.samples import sample_from_model

        passages = sample_from_model(env.loaded.model, tok, cfg.n_groups, cfg.passage_len, seed=cfg.seed + 7,
                                     pad_id=env.pad).examples
    special = set(getattr(tok, "all_special_ids", []) or [])
    vocab_n = env.loaded.model.get_output_embeddings().weight.shape[0]
    vocab = np.array([i for i in range(vocab_n) if i not in special])
    table = results_table(out, NAME + "_lines", cfg, ["group", "s", "lam"])
    done = table.load() if table is not None else None
    lines, checks = [], []
    for g, block in enumerate(tqdm(passages, desc="llm probes", disable=not progress)):
        passage = [t for t in block.input_ids if t != bos][: cfg.passage_len]
        head = [bos] if bos is not None else []
        from talr_theory.data.encode import IGNORE, EncodedExample

        m = len(passage)
        plain = EncodedExample(f"plain-{g}", head + passage + passage, [IGNORE] * (len(head) + m) + passage)
        base_p = scan_tokens(_as_loaded(env.tail, tok), [plain], progress=False)["p"].to_numpy()
        rng = np.random.default_rng([cfg.seed, g])
        probes = probe_group(passage, bos, base_p, cfg.s_values, vocab, rng, cfg.p_easy, g)
        env.tail.warm(list(probes.values()))
        scan = scan_tokens(_as_loaded(env.tail, tok), list(probes.values()), progress=False)
        counts = per_example_counts(scan, (cfg.hard_threshold,)).set_index("example_id")
        col = f"n_p_lt_{cfg.hard_threshold:g}"
        meas = {s: int(counts.loc[ex.example_id, col]) for s, ex in probes.items()}
        for s, ex in probes.items():
            checks.append({"group": g, "intended_s": s, "measured_s": meas[s], "excess_s": meas[s] - meas[0],
                           "n_supervised": ex.n_target})
        for s in cfg.s_values:
            def compute(s=s, ex=probes[s]):
                grads, _ = objective_gradient(env.tail, [ex], "sft", pad_id=env.pad)
                d = step_direction(grads, "sgd")
                fisher = {p1: v for p1, v in _fisher_quadratic(env, d, cfg.fisher_step).items()}
                pts = line_scan(env.tail, d, env.measure, min(cfg.epsilons), max(cfg.epsilons), cfg.lam_start,
                                 cfg.lam_factor)
                return [{**p, **{f"dFd_{k}": v for k, v in fisher.items()}} for p in pts]

            for r in ensure_rows(table, done, {"group": g, "s": s}, compute):
                lines.append({**r, "group": g, "s": s, "excess_s": meas[s] - meas[0], "measured_s": meas[s]})
    lines = pd.DataFrame(lines).sort_values(["group", "s", "lam"], kind="stable").reset_index(drop=True)
    return lines, pd.DataFrame(checks)


def _fisher_quadratic(env, d: list[torch.Tensor], step: float) -> dict[str, float]:
    """dᵀ F d for the Fisher of each P1, by the second derivative of ΔL along the line at λ = 0 (2·ΔL(h)/h²).

    For P1 = q0, ΔL = KL(q0 || q_{θ0-hd}) = ½ h² dᵀF d + O(h³); for real text the same finite difference
    gives the curvature of the NLL change (its Hessian along d, which includes the first-order term's
    correction), with central differences to remove the linear term.
    """
    params = [p for p in env.tail.parameters() if p.requires_grad]
    theta0 = [p.detach().clone() for p in params]
    h = step / _norm(d)
    vals = {}
    for sign in (1.0, -1.0):
        with torch.no_grad():
            torch._foreach_copy_(params, theta0)
            torch._foreach_add_(params, d, alpha=-sign * h)
        vals[sign] = {k: float(v.mean()) for k, v in env.measure.general(env.tail).items()}
    with torch.no_grad():
        torch._foreach_copy_(params, theta0)
    return {p1: (vals[1.0][p1] + vals[-1.0][p1]) / (h * h) for p1 in vals[1.0]}


def _envelope_holdout(at: pd.DataFrame, cfg: Config) -> dict:
    """Theorem 3.1's envelope k1Δ* + k2Δ*²λ fitted on measured (Δ*, ΔL) points of SFT, tested on a held-out LR.

    interpolation: fit on the smallest and largest LR, test on the ones between; extrapolation: fit on
    all but the largest, test on the largest. ΔL is the mean over units at each (LR, seed, Δ*) point.
    """
    from talr_theory.theory.envelope import holdout_validity

    pts = (at[at["method"].eq("sft") & at["measured"]].groupby(["lr", "seed", "delta_star"])["delta_L"].mean()
           .reset_index().rename(columns={"lr": "lam"}))
    lams = sorted(pts["lam"].unique())
    out = {"n_points": int(len(pts)), "lrs": lams}
    if len(lams) < 3:
        out["error"] = f"needs ≥ 3 LRs with measured points, have {len(lams)}"
        return out
    for name, fit_l, test_l in (("interpolation", [lams[0], lams[-1]], lams[1:-1]),
                                ("extrapolation", lams[:-1], lams[-1:])):
        try:
            h = holdout_validity(pts, fit_l, test_l, beta=2.0)
            out[name] = {k: h[k] for k in ("k1", "k2", "holdout_violation_rate", "n_test", "max_violation_ratio")}
        except ValueError as err:
            out[name] = {"error": str(err)}
    return out


def _long_units(traj: pd.DataFrame, p1: str) -> pd.DataFrame:
    rows = []
    for r in traj.itertuples(index=False):
        values = getattr(r, f"units_{p1}")
        for u, v in enumerate([] if values is None else list(values)):
            rows.append({"method": r.method, "lr": r.lr, "seed": r.seed, "step": r.step, "unit": u,
                         "delta_star": r.delta_star, "delta_L": v})
    return pd.DataFrame(rows)


def _gain_grid(traj: pd.DataFrame, n: int, methods=("sft", "talr")) -> np.ndarray:
    """Δ* grid up to the largest gain every trajectory of ``methods`` reaches (measured checkpoints, step ≥ 1)."""
    main = traj[traj["method"].isin(list(methods)) & (traj["step"] >= 1)]
    reach = main.groupby(["method", "lr", "seed"])["delta_star"].max().min()
    if not (reach > 0):
        return np.array([])
    return np.linspace(reach / n, reach, n)


def _analyse(cfg: Config, env, traj: pd.DataFrame, lines: pd.DataFrame, checks: pd.DataFrame, masked):
    from talr_theory.theory.lambda_max import fit_lambda_max_scaling

    ok = traj[traj["status"].eq("ok")].copy()
    ok = ok[ok["wise_alpha"].isna() | ok["wise_alpha"].eq(cfg.wise_alpha) | ~ok["method"].eq("wise-ft")]
    grid = _gain_grid(ok, cfg.n_gain_grid)
    verdicts, info = [], {}
    acc = ok.groupby(["method", "lr", "seed"])["accuracy"].max()
    info["accuracy"] = {"base": float(ok[ok["step"] == 0]["accuracy"].iloc[0]), "best": float(acc.max()),
                        "best_run": dict(zip(("method", "lr", "seed"), acc.idxmax()))}
    long = {p1: _long_units(ok, p1) for p1 in P1S}
    at = {p1: cost_at_gain(long[p1], grid, by=["method", "lr", "seed", "unit"]) for p1 in P1S}
    # Theorem 3.1 across LRs uses the grid SFT alone reaches (TALR's slower trajectories do not cap it).
    sft_grid = _gain_grid(ok, cfg.n_gain_grid, ("sft",))
    at_sft = {p1: cost_at_gain(long[p1][long[p1]["method"].eq("sft")], sft_grid, by=["method", "lr", "seed", "unit"])
              for p1 in P1S}
    info["gain_grid"] = {"sft_and_talr": [float(x) for x in grid], "sft": [float(x) for x in sft_grid]}
    info["unmeasured_grid_points"] = {p1: {"sft_and_talr": int((~at[p1]["measured"]).sum()),
                                           "sft": int((~at_sft[p1]["measured"]).sum()),
                                           "of": int(len(at[p1])) } for p1 in P1S}
    steps_to_top = {}
    for (m, lr, s), g in ok[ok["method"].isin(["sft", "talr"])].groupby(["method", "lr", "seed"]):
        hit = g[g["delta_star"] >= (sft_grid[-1] if len(sft_grid) else np.inf)]["step"]
        steps_to_top[f"{m} lr={lr:g} seed={s}"] = int(hit.min()) if len(hit) else None
    info["steps_to_top_of_grid"] = steps_to_top

    def pairs(a: pd.DataFrame, b: pd.DataFrame, on):
        j = a.merge(b, on=on, suffixes=("_a", "_b"))
        return j["delta_L_a"].to_numpy(), j["delta_L_b"].to_numpy(), j["unit"].to_numpy()

    def note(p1):
        return (f"ΔL(P1) per unit ({'base-model samples' if p1 == 'kl' else 'text blocks'}) read at a common Δ* "
                f"grid from measured checkpoint brackets; the interval resamples those units and is conditional on "
                f"the training seeds {list(cfg.seeds)} (pooled as pairs) and on the one draw of samples/blocks. "
                f"Last {cfg.n_blocks} blocks of {cfg.model} trained.")

    comp_rows = []
    for p1 in P1S:
        a = at[p1]
        sft = a[a["method"].eq("sft")]
        s_only = at_sft[p1]
        lo, hi = min(cfg.lrs), max(cfg.lrs)
        num, den, u = pairs(s_only[s_only["lr"].eq(lo)].drop(columns="lr"), s_only[s_only["lr"].eq(hi)].drop(columns="lr"),
                            ["method", "seed", "unit", "delta_star"])
        r = paired_ratio(num, den, u, n_boot=cfg.n_boot, seed=cfg.seed)
        verdicts.append(ratio_verdict(f"thm3.1_lr_at_equal_gain[{P1_LABEL[p1]}]", NAME,
                                      f"ΔL(LR {lo:g}) / ΔL(LR {hi:g}) for SFT at equal Δ*", r, note(p1)))
        talr = a[a["method"].eq("talr")]
        num, den, u = pairs(talr.drop(columns="method"), sft.drop(columns="method"), ["lr", "seed", "unit", "delta_star"])
        r = paired_ratio(num, den, u, n_boot=cfg.n_boot, seed=cfg.seed)
        verdicts.append(ratio_verdict(f"talr_vs_sft_at_equal_gain[{P1_LABEL[p1]}]", NAME,
                                      "ΔL(TALR) / ΔL(SFT) at equal Δ* and LR", r, note(p1)))
        # every method vs SFT at the comparison LR, at equal gain
        ref = sft[sft["lr"].eq(cfg.compare_lr)].drop(columns=["lr", "method"])
        for m in ["talr", *cfg.compare_methods, "hard-only", "easy-only"]:
            sub = a[a["method"].eq(m) & a["lr"].eq(cfg.compare_lr)].drop(columns=["lr", "method"])
            num, den, u = pairs(sub, ref, ["seed", "unit", "delta_star"])
            r = paired_ratio(num, den, u, n_boot=cfg.n_boot, seed=cfg.seed)
            fin = ok[ok["method"].eq(m) & ok["lr"].eq(cfg.compare_lr)]
            last = fin.loc[fin.groupby("seed")["step"].idxmax()] if len(fin) else fin
            comp_rows.append({"p1": P1_LABEL[p1], "method": m, "lr": cfg.compare_lr, "ratio_to_sft": r.estimate,
                              "ci_lo": r.ci[0], "ci_hi": r.ci[1], "n_pairs": r.n_pairs,
                              "final_delta_star": float(last["delta_star"].mean()) if len(last) else math.nan,
                              "final_accuracy": float(last["accuracy"].mean()) if len(last) else math.nan,
                              "final_dL": float(last[f"dL_{p1}"].mean()) if len(last) else math.nan})
        # hard vs easy: degradation per unit gain at the last checkpoint, paired by (seed, unit)
        lg = long[p1]
        last = lg[lg["lr"].eq(cfg.compare_lr)]
        last = last[last["step"].eq(cfg.steps)]
        he = {k: last[last["method"].eq(f"{k}-only")].assign(delta_L=lambda d: d["delta_L"] / d["delta_star"])
              .loc[lambda d: d["delta_star"] > 0, ["seed", "unit", "delta_L"]] for k in ("hard", "easy")}
        num, den, u = pairs(he["easy"], he["hard"], ["seed", "unit"])
        r = paired_ratio(num, den, u, n_boot=cfg.n_boot, seed=cfg.seed)
        verdicts.append(ratio_verdict(f"hard_tokens_drive_degradation[{P1_LABEL[p1]}]", NAME,
                                      "(ΔL/Δ*)(easy tokens only) / (ΔL/Δ*)(hard tokens only) at the last step", r,
                                      note(p1) + " Hard = base p below the mask threshold (info.mask_threshold); "
                                      f"{sum(e.n_target for e in masked['hard'])} hard and "
                                      f"{sum(e.n_target for e in masked['easy'])} easy training tokens."))
    info["theorem_3_1_envelope"] = {P1_LABEL[p1]: _envelope_holdout(at_sft[p1], cfg) for p1 in P1S}
    # equal accuracy: ΔL at the first checkpoint reaching each accuracy level, TALR vs SFT
    acc_rows = []
    for level in (0.25, 0.5, 0.75):
        for (m, lr, s), g in ok[ok["method"].isin(["sft", "talr"])].groupby(["method", "lr", "seed"]):
            hit = g[(g["step"] >= 1) & (g["accuracy"] >= level)].sort_values("step")
            if len(hit):
                acc_rows.append({"accuracy_level": level, "method": m, "lr": lr, "seed": s,
                                 "step": int(hit["step"].iloc[0]), "dL_kl": float(hit["dL_kl"].iloc[0]),
                                 "dL_text": float(hit["dL_text"].iloc[0])})
    acc_df = pd.DataFrame(acc_rows)
    info["talr_vs_sft_at_equal_accuracy"] = (
        acc_df.groupby(["accuracy_level", "method"])[["dL_kl", "dL_text"]].mean().reset_index().to_dict("records")
        if len(acc_df) else [])

    # --- Theorem 3.2 ---------------------------------------------------------------------------
    lam_rows = []
    for (g, s), sub in lines.groupby(["group", "s"]):
        sub = sub.sort_values("lam")
        for p1 in P1S:
            for eps in cfg.epsilons:
                lam_rows.append({"group": g, "s": s, "p1": P1_LABEL[p1], "epsilon": eps,
                                 "excess_s": float(sub["excess_s"].iloc[0]),
                                 "lambda_max": lambda_max_from_grid(sub["lam"].to_numpy(), sub[f"dL_{p1}"].to_numpy(), eps),
                                 "dFd": float(sub[f"dFd_{p1}"].iloc[0])})
    lam_df = pd.DataFrame(lam_rows)
    fits = {}
    for p1 in P1S:
        sub = lam_df[lam_df["p1"].eq(P1_LABEL[p1])]
        try:
            fit = fit_lambda_max_scaling(sub[sub["excess_s"] > 0], n_boot=cfg.n_boot, seed=cfg.seed, s_column="excess_s")
        except ValueError as err:
            fit = {"error": str(err), "eps_exponent": None, "eps_exponent_ci": None, "s_exponent": None}
        fit["n_lines_without_bracket"] = int(sub["lambda_max"].isna().sum())
        fits[P1_LABEL[p1]] = fit
        verdicts += exponent_verdicts(fit, NAME, suffix=P1_LABEL[p1],
                                      note=f"One SGD step direction per probe; {cfg.n_groups} groups resampled; s = "
                                           f"measured excess hard tokens (p < {cfg.hard_threshold:g}).")
    # the Fisher quadratic form against s, within groups
    dfd = lam_df.drop_duplicates(["group", "s", "p1"])
    for p1 in P1S:
        sub = dfd[dfd["p1"].eq(P1_LABEL[p1]) & (dfd["dFd"] > 0) & (dfd["excess_s"] > 0)]
        try:
            from talr_theory.stats import fit_power_law

            f = fit_power_law(sub["dFd"], {"s": sub["excess_s"]}, groups=sub["group"].to_numpy(), n_boot=cfg.n_boot,
                              seed=cfg.seed)
            info[f"fisher_quadratic_s_exponent[{P1_LABEL[p1]}]"] = {"estimate": f.exponent("s"), "ci": list(f.ci("s"))}
        except ValueError as err:
            info[f"fisher_quadratic_s_exponent[{P1_LABEL[p1]}]"] = {"error": str(err)}
    info["theorem_3_2"] = fits
    info["probe_check"] = checks.groupby("intended_s")[["measured_s", "excess_s"]].mean().reset_index().to_dict("records")
    info["summary"] = (f"{cfg.model}, last {cfg.n_blocks} blocks fine-tuned (AdamW, full batch) on {cfg.data} "
                       f"({len(env.train)} train / {len(env.eval)} held-out-paraphrase examples); ΔL(P1) as exact "
                       f"KL on {cfg.n_samples} base samples (nats/sample) and NLL change on {len(env.general.examples)} "
                       f"blocks of {env.general.source} (nats/block); {cfg.n_groups} probe groups × s ∈ {list(cfg.s_values)}.")
    info["notes"] = [f"[llm] Base accuracy {info['accuracy']['base']:.2f}, best {info['accuracy']['best']:.2f} "
                     f"(teacher-forced exact match on held-out paraphrases).",
                     f"[llm] Grid points without a measured bracket (dropped): {info['unmeasured_grid_points']}."]
    info["report_tables"] = {"Methods vs SFT at equal gain (llm)": "comparison"}
    frames = {"trajectories": traj.drop(columns=["units_kl", "units_text"]), "comparison": pd.DataFrame(comp_rows),
              "lambda_max": lam_df, "probe_check": checks, "lines": lines,
              "cost_at_gain": at["kl"].assign(p1=P1_LABEL["kl"])}
    return frames, verdicts, info


# ---------------------------------------------------------------------------------------------
# Figures


def figures(result: TierResult, save) -> None:
    from talr_theory.plotting import llm as plots

    f = result.frames
    save(plots.envelope(f["trajectories"]), "llm_envelope_measured")
    save(plots.lambda_max_vs_eps(f["lambda_max"]), "llm_lambda_max_vs_eps")
    save(plots.probe_check(f["probe_check"]), "llm_probe_check")
    save(plots.tradeoff_at_equal_gain(f["comparison"]), "llm_tradeoff_equal_gain")
    save(plots.hard_easy(f["trajectories"]), "llm_hard_vs_easy")
    if "advisor_cases" in f and len(f["advisor_cases"]):
        from talr_theory.plotting.talr_map import advisor_cases

        save(advisor_cases(f["advisor_cases"], title=f"Safe-LR advisor on held-out SFT runs ({result.config['model']})"),
             "llm_advisor_held_out")

