"""Training configuration (no torch import, so the CLI can build its flags instantly).

``TrainConfig`` describes one run of ``training.core.train``; every field is also a sweep flag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from talr_theory.theory.steps import TALR_W_MIN, TAU_RULES  # noqa: F401  (defined once, re-exported)

METHODS = ("sft", "talr", "dft", "flow", "l2", "lora", "wise-ft", "eaft", "asft", "truncate-hard")
# Which token objective each method trains with; the rest of the method is a parameterization.
METHOD_OBJECTIVE = {"sft": "ce", "talr": "talr", "dft": "dft", "flow": "flow", "l2": "ce", "lora": "ce",
                    "wise-ft": "ce", "eaft": "eaft", "asft": "asft", "truncate-hard": "truncate-hard"}

# Reference defaults (docs/objectives.md): EAFT's top-K and exponent as in LLaMA-Factory/Axolotl,
# ASFT's KL coefficient as LLaMA-Factory's ``asft_alpha``, and the paper's Fig. 3 threshold p < 0.2.
from talr_theory.theory.reweighting import ASFT_BETA, EAFT_ALPHA, EAFT_TOP_K, TRUNCATE_THETA  # noqa: E402


@dataclass
class TrainConfig:
    """One training run. Every field is also a ``talr-theory sweep`` flag."""

    method: str = field(default="sft", metadata={"help": " | ".join(METHODS)})
    lr: float = field(default=1e-4, metadata={"help": "peak learning rate"})
    optimizer: str = field(default="adamw", metadata={"help": "sgd | adamw", "choices": ("sgd", "adamw")})
    steps: int = field(default=100, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=8, metadata={"help": "examples per micro-batch (per process)"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches accumulated per optimizer step"})
    eval_every: int = field(default=0, metadata={"help": "evaluate every K steps (0: only at the start "
                                                           "and the end)"})
    seed: int = field(default=0, metadata={"help": "seed of the data order and of torch"})
    schedule: str = field(default="constant", metadata={"help": "learning-rate decay after warm-up",
                                                        "choices": ("constant", "linear", "cosine")})
    warmup_steps: int = field(default=0, metadata={"help": "linear warm-up steps"})
    weight_decay: float = field(default=0.0, metadata={"help": "optimizer weight decay (towards 0)"})
    momentum: float = field(default=0.0, metadata={"help": "SGD momentum"})
    max_grad_norm: float = field(default=0.0, metadata={"help": "clip the gradient norm (0: off)"})
    tau: str = field(default="median", metadata={"help": "TALR temperature: 'median' (of the token "
                                                         "losses), 'median-seq' (of per-sequence mean "
                                                         "losses) or a positive number"})
    w_min: float = field(default=TALR_W_MIN, metadata={"help": "TALR weight floor, in [0, 1]"})
    eaft_k: int = field(default=EAFT_TOP_K, metadata={"help": "EAFT: entropy over the top-K logits (K >= 2)"})
    eaft_alpha: float = field(default=EAFT_ALPHA, metadata={"help": "EAFT: weight = (top-K entropy / ln K)^alpha"})
    asft_beta: float = field(default=ASFT_BETA, metadata={"help": "ASFT: coefficient of KL(base || model)"})
    truncate_theta: float = field(default=TRUNCATE_THETA, metadata={"help": "truncate-hard: train only on "
                                                                               "tokens with p >= theta"})
    flow_tau: float = field(default=0.0, metadata={"help": "FLOW temperature (0: median base loss)"})
    l2_coeff: float = field(default=0.01, metadata={"help": "L2-to-init coefficient c in (c/2)||θ-θ0||²"})
    lora_rank: int = field(default=8, metadata={"help": "LoRA rank"})
    lora_alpha: float = field(default=16.0, metadata={"help": "LoRA alpha"})
    lora_targets: str = field(default="all-linear", metadata={"help": "LoRA target modules "
                                                                       "('all-linear' or names)"})
    wise_alphas: tuple[float, ...] = field(default=(0.5,), metadata={"help": "WiSE-FT mixing weights α "
                                                                            "evaluated at checkpoints"})
    bf16_autocast: bool = field(default=False, metadata={"help": "bf16 autocast for forward passes"})

    def validate(self) -> TrainConfig:
        """Raise ValueError naming the field and what was expected; return self."""
        def bad(name, value, expected):
            from talr_theory.configs import human_value

            flags = "/".join("--" + n.replace("_", "-") for n in name.split("/"))  # the flag a user types
            raise ValueError(f"{flags} {human_value(value)}: expected {expected}")

        if self.method not in METHODS:
            bad("method", self.method, f"one of {', '.join(METHODS)}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            bad("lr", self.lr, "a positive finite number")
        if self.optimizer not in ("sgd", "adamw"):
            bad("optimizer", self.optimizer, "'sgd' or 'adamw'")
        for name in ("steps", "batch_size", "grad_accum"):
            if int(getattr(self, name)) < 1:
                bad(name, getattr(self, name), "an integer >= 1")
        if self.eval_every < 0:
            bad("eval_every", self.eval_every, "an integer >= 0")
        if self.warmup_steps < 0:
            bad("warmup_steps", self.warmup_steps, "an integer >= 0")
        if self.schedule not in ("constant", "linear", "cosine"):
            bad("schedule", self.schedule, "constant, linear or cosine")
        tau = str(self.tau)
        if tau not in TAU_RULES:
            try:
                value = float(tau)
            except ValueError:
                bad("tau", self.tau, "'median', 'median-seq' or a positive number")
            if not value > 0:
                bad("tau", self.tau, "a positive number (τ ≤ 0 makes the weights undefined)")
        if not (0.0 <= self.w_min <= 1.0):
            bad("w_min", self.w_min, "a number in [0, 1]")
        if int(self.eaft_k) < 2:
            bad("eaft_k", self.eaft_k, "an integer >= 2 (the entropy of one logit is 0)")
        if not (math.isfinite(self.eaft_alpha) and self.eaft_alpha >= 0):
            bad("eaft_alpha", self.eaft_alpha, "a finite number >= 0")
        if not (math.isfinite(self.asft_beta) and self.asft_beta >= 0):
            bad("asft_beta", self.asft_beta, "a finite number >= 0")
        if not (0.0 < self.truncate_theta < 1.0):
            bad("truncate_theta", self.truncate_theta, "a probability in (0, 1)")
        if self.flow_tau < 0:
            bad("flow_tau", self.flow_tau, "0 (median base loss) or a positive number")
        if self.l2_coeff < 0:
            bad("l2_coeff", self.l2_coeff, "a number >= 0")
        if self.lora_rank < 1:
            bad("lora_rank", self.lora_rank, "an integer >= 1")
        if not self.wise_alphas or any(not 0.0 <= a <= 1.0 for a in self.wise_alphas):
            bad("wise_alphas", self.wise_alphas, "one or more numbers in [0, 1]")
        if self.max_grad_norm < 0 or self.weight_decay < 0 or self.momentum < 0:
            bad("max_grad_norm/weight_decay/momentum", (self.max_grad_norm, self.weight_decay, self.momentum),
                "numbers >= 0")
        return self

    @property
    def objective(self) -> str:
        return METHOD_OBJECTIVE[self.method]

    def loss_options(self) -> dict:
        """The keyword options of this run's token objective (``objectives.OBJECTIVES[self.objective]``)."""
        return {"talr": {"tau": self.tau_value(), "w_min": self.w_min},
                "eaft": {"k": int(self.eaft_k), "alpha": float(self.eaft_alpha)},
                "asft": {"beta": float(self.asft_beta)},
                "truncate-hard": {"theta": float(self.truncate_theta)}}.get(self.objective, {})

    def tau_value(self) -> str | float:
        tau = str(self.tau)
        return tau if tau in TAU_RULES else float(tau)


def checkpoint_steps(steps: int, eval_every: int) -> list[int]:
    """Step 0, every ``eval_every`` steps, and the last step."""
    marks = {0, steps}
    if eval_every > 0:
        marks.update(range(eval_every, steps + 1, eval_every))
    return sorted(marks)


def lr_factor(step: int, config: TrainConfig) -> float:
    """Multiplier of the peak LR at optimizer step ``step`` (0-based): linear warm-up then the decay."""
    if config.warmup_steps > 0 and step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return 1.0
    span = max(config.steps - config.warmup_steps, 1)
    progress = min(max(step - config.warmup_steps, 0) / span, 1.0)
    if config.schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


