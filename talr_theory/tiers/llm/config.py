"""The real-model tier's configuration: every grid in one dataclass, checked before any work."""

from __future__ import annotations

import math
from dataclasses import dataclass

NAME = "llm"
P1S = ("kl", "text")
P1_LABEL = {"kl": "P1=q0", "text": "P1=real text"}
OPTIMIZERS = ("adamw", "sgd")


@dataclass
class Config:
    """Every grid of the real-model tier on SmolLM2-135M (docs/llm.md).

    The defaults are the design the main job can afford on a 2-core CPU with every paper-protocol verdict on
    5 training seeds: SFT and TALR at two LRs a factor 4 apart × 5 seeds, 3 epochs, and 3 more seeds at the
    paper-protocol LR (8 there); WiSE-FT (no training) as the one baseline; the ablation under AdamW only; the rationale format; no advisor check.
    :meth:`paper` is the paper's protocol (4 LRs × 5 seeds, 10 epochs, every baseline including EAFT and
    ASFT, AdamW and SGD, the advisor): hours on a CPU, for a GPU.
    """

    model: str = "smollm2-135m"
    data: str = "facts:96"             # 96 held-out prompts, 192 training examples
    n_blocks: int = 4                  # trained transformer blocks (the rest and the head are frozen)
    full_model: bool = False           # train every parameter instead (the check of the last-blocks proxy)
    # The paper's protocol: these methods at every LR × seed, the same epochs. A new objective of the training
    # core (same call convention as "talr") is one more name here.
    methods: tuple[str, ...] = ("sft", "talr")
    lrs: tuple[float, ...] = (4e-4, 1.6e-3)  # AdamW, a factor 4 (paper(): 4 LRs, a factor 8)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    epochs: int = 3
    evals_per_epoch: int = 1           # checkpoints: every 1/evals_per_epoch epoch (and step 0)
    batch_size: int = 24
    bf16: bool = True                  # bf16 autocast in the training steps (weights, optimizer, measures: float32)
    workers: int = 2                   # training runs at once, in forked processes of one torch thread (CPU; 1: serial)
    paper_lr: float = 0.0              # the LR of the paper-protocol comparison (0: the largest of lrs)
    # More seeds for `methods` at paper_lr only: the TALR/SFT comparison there is the paper's Table 2, and its
    # interval is set by the spread between seeds (5 seeds: a t interval on ~4–7 degrees of freedom).
    paper_extra_seeds: tuple[int, ...] = (5, 6, 7)
    # Baselines: each at compare_lrs × compare_seeds (LoRA at lora_lr_factor × those LRs); WiSE-FT trains nothing,
    # it interpolates each SFT run at wise_alpha.
    compare_methods: tuple[str, ...] = ("wise-ft",)
    compare_lrs: tuple[float, ...] = (1.6e-3,)
    compare_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    l2_coeff: float = 1.0
    lora_rank: int = 8
    lora_lr_factor: float = 5.0
    wise_alpha: float = 0.5
    # Hard-token ablation (paper Fig. 3): easy-only (hard-token loss truncated), hard-only and full SFT.
    hard_p: float = 0.2                # hard = base p < hard_p
    ablation_lr: float = 0.0           # 0: paper_lr
    ablation_optimizers: tuple[str, ...] = ("adamw",)
    sgd_lr: float = 0.05               # plain SGD (no momentum) needs its own scale
    # Label-only vs rationale on the same facts: line scans at format_epsilons, trained runs at the largest LR.
    format_epsilons: tuple[float, ...] = (0.01, 0.03, 0.1)
    # the equal-accuracy frontier: levels both LRs of SFT and TALR reach within the default's 3 epochs
    accuracy_levels: tuple[float, ...] = (0.25, 0.3, 0.4)
    # the selection rule "best accuracy with ΔL(P1) ≤ δ" (nats per sample / block: the KL after 3 epochs is ~10–50)
    deltas: tuple[float, ...] = (2.0, 5.0, 10.0)
    n_samples: int = 24                # base-model samples for KL(q0 || qθ)
    sample_len: int = 24
    general_blocks: int = 24
    block_len: int = 24
    general_text: str = "auto"         # data.general source ("auto": the corpus shipped with the package)
    # Theorem 3.2 probes
    s_values: tuple[int, ...] = (1, 4, 16)
    n_groups: int = 4
    passage_text: str = "samples"      # probe passages: base-model samples, or a data.general source name
    passage_len: int = 128
    p_easy: float = 0.9
    hard_threshold: float = 0.2
    epsilons: tuple[float, ...] = (0.01, 0.03, 0.1)
    lam_factor: float = 3.0
    lam_start: float = 0.1
    fisher_step: float = 0.05
    eval_batch_size: int = 32
    n_boot: int = 1000
    seed: int = 0
    # The safe-LR advisor on held-out runs (pilots = SFT at lrs × seeds; held-out grid with a new seed).
    advisor_held_out_seed: int = 5
    advisor_grid_lrs: tuple[float, ...] = ()   # () : no advisor check (paper(): 3 held-out LRs)
    advisor_eps_fracs: tuple[float, ...] = (0.2, 0.35, 0.5, 0.65, 0.8)
    advisor_gain_fraction: float = 0.25
    advisor_extra_factor: float = 3.0
    advisor_max_extra: int = 1

    @classmethod
    def paper(cls, seed: int = 0) -> Config:
        """The paper's protocol: SFT and TALR at 4 LRs × 5 seeds for 10 epochs, every baseline at 2 LRs × 3 seeds,
        the ablation under AdamW and SGD, and the advisor on held-out runs (hours on a 2-core CPU)."""
        return cls(lrs=(1e-4, 2e-4, 4e-4, 8e-4), seeds=(0, 1, 2, 3, 4), paper_extra_seeds=(5, 6, 7, 8, 9), epochs=10,
                   compare_methods=("dft", "flow", "l2", "wise-ft", "lora", "eaft", "asft"), compare_lrs=(2e-4, 8e-4),
                   compare_seeds=(0, 1, 2),
                   ablation_optimizers=("adamw", "sgd"), n_groups=6, advisor_grid_lrs=(1.4e-4, 2.8e-4, 5.6e-4),
                   advisor_held_out_seed=10, seed=seed)

    @classmethod
    def quick(cls, seed: int = 0) -> Config:
        """A pipeline check (~1 min) on tiny-random: every part runs, no verdict is evidence."""
        return cls(model="tiny-random", data="facts:12", n_blocks=1, lrs=(3e-3, 1e-2), seeds=(0, 1), paper_extra_seeds=(3,),
                   epochs=2,
                   evals_per_epoch=1, batch_size=12, compare_methods=("dft", "l2", "eaft", "asft"), compare_lrs=(1e-2,),
                   compare_seeds=(0, 1), ablation_optimizers=("adamw", "sgd"), sgd_lr=0.5, hard_p=0.0,
                   format_epsilons=(1e-3, 1e-2), accuracy_levels=(0.05,), deltas=(0.1,), n_samples=4,
                   sample_len=8, general_blocks=4, block_len=12, s_values=(1, 2), n_groups=3, passage_len=24,
                   p_easy=0.0, epsilons=(1e-3, 1e-2), n_boot=200, seed=seed, advisor_held_out_seed=2,
                   advisor_grid_lrs=(5e-3,), advisor_eps_fracs=(0.3, 0.7))

    # --- resolved values ----------------------------------------------------------------------------

    def resolved_paper_lr(self) -> float:
        return float(self.paper_lr or max(self.lrs))

    def resolved_ablation_lr(self) -> float:
        return float(self.ablation_lr or self.resolved_paper_lr())

    def steps_for(self, n_train: int) -> tuple[int, int]:
        """(steps, eval_every) for ``epochs`` over ``n_train`` examples at ``batch_size``."""
        per_epoch = max(1, math.ceil(n_train / self.batch_size))
        every = max(1, per_epoch // self.evals_per_epoch)
        return per_epoch * self.epochs, every

    def proxy_note(self) -> str:
        """The sentence every real-model verdict carries: what was trained."""
        if self.full_model:
            return f"Every parameter of {self.model} trained (full fine-tuning)."
        return f"Last {self.n_blocks} blocks of {self.model} trained (the rest and the head frozen)."


def check(cfg: Config) -> None:
    """ValueError naming the field, before any model loads."""
    def bad(field: str, why: str):
        raise ValueError(f"llm tier config: {field}={getattr(cfg, field)!r}: {why}")

    if len(cfg.lrs) < 2 or any(not lr > 0 for lr in cfg.lrs):
        bad("lrs", "needs at least 2 positive learning rates")
    if not cfg.seeds:
        bad("seeds", "needs at least one seed")
    if "sft" not in cfg.methods:
        bad("methods", "must include 'sft' (every comparison is paired with it)")
    if cfg.paper_lr and cfg.paper_lr not in cfg.lrs:
        bad("paper_lr", f"must be one of lrs={list(cfg.lrs)} (0: the largest)")
    if cfg.ablation_lr and cfg.ablation_lr not in cfg.lrs:
        bad("ablation_lr", f"must be one of lrs={list(cfg.lrs)} (0: paper_lr)")
    if not set(cfg.compare_lrs) <= set(cfg.lrs):
        bad("compare_lrs", f"must be a subset of lrs={list(cfg.lrs)} (each baseline is paired with SFT there)")
    if set(cfg.paper_extra_seeds) & set(cfg.seeds) or any(s < 0 for s in cfg.paper_extra_seeds):
        bad("paper_extra_seeds", f"must be non-negative seeds not in seeds={list(cfg.seeds)}")
    if cfg.advisor_grid_lrs and cfg.advisor_held_out_seed in cfg.paper_extra_seeds:
        bad("advisor_held_out_seed", f"must not be one of paper_extra_seeds={list(cfg.paper_extra_seeds)} (held out)")
    if not set(cfg.compare_seeds) <= set(cfg.seeds):
        bad("compare_seeds", f"must be a subset of seeds={list(cfg.seeds)}")
    if set(cfg.ablation_optimizers) - set(OPTIMIZERS):
        bad("ablation_optimizers", f"expected names from {OPTIMIZERS}")
    if not 0 <= cfg.hard_p < 1:
        bad("hard_p", "must be in [0, 1) (0: the median base p)")
    for field in ("epochs", "evals_per_epoch", "batch_size", "n_blocks", "n_samples", "general_blocks", "workers"):
        if getattr(cfg, field) < 1:
            bad(field, "must be ≥ 1")
    if any(not 0 < a < 1 for a in cfg.accuracy_levels):
        bad("accuracy_levels", "each must be in (0, 1)")
    for field in ("format_epsilons", "epsilons", "deltas"):
        if not getattr(cfg, field) or any(not e > 0 for e in getattr(cfg, field)):
            bad(field, "needs positive tolerances")
