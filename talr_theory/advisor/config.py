"""``AdviseConfig``: every setting of the real-model advisor, and the source of ``talr-theory advise``'s flags.

Each field's metadata is its flag's help and its check (``talr_theory.configs``): a bad value stops
the command at parse time, before any data or model is loaded, with exit 2 naming the flag; a
config built in code gets the same checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from talr_theory.configs import AT_LEAST_ONE, COUNT, POSITIVE, Range, check_fields

DEFAULT_MODEL = "smollm2-135m"


def _opt(help: str, **more) -> dict:
    return {"metadata": {"help": help, **more}}


@dataclass
class AdviseConfig:
    """The advisor on a real model: data, tolerance, gain and the pilot runs that bracket the safe LR."""

    model: str | None = field(default=None, **_opt(
        "model: smollm2-135m, stories260k, tiny-random (a pipeline check) or a local Hugging Face folder",
        default_text=f"{DEFAULT_MODEL}; with --validate --on llm the llm tier's model, tiny-random with --quick"))
    data: str = field(default="medcalc-synth", **_opt(
        "SFT data: medcalc-synth[:N], medcalc-bench, facts[:N], or a .csv/.jsonl file"))
    epsilon: float | None = field(default=None, **_opt(
        "tolerance on ΔL(P1) = KL(base || tuned) on base-model samples, nats per sample", check=POSITIVE,
        default_text="none; required unless --validate"))
    gain: float | None = field(default=None, **_opt(
        "requested domain gain Δ*, nats per held-out domain example", check=POSITIVE,
        default_text="half the smallest gain the pilots reach"))
    format: str = field(default="label", **_opt("response format of the SFT examples: the answer only (label) "
                                                "or reasoning then answer (cot)", choices=("label", "cot")))
    method: str = field(default="sft", **_opt("training objective of the pilot runs", choices=("sft", "talr")))
    pilot_lrs: tuple[float, ...] = field(default=(1e-5, 3e-5, 1e-4), **_opt(
        "pilot learning rates, comma-separated, at least two", check=POSITIVE, min_items=2))
    pilot_steps: int = field(default=4, **_opt("AdamW steps per pilot run", check=AT_LEAST_ONE))
    batch_size: int = field(default=4, **_opt("training examples per pilot step", check=AT_LEAST_ONE))
    n_train: int = field(default=16, **_opt("training examples the pilots draw their batches from (train split)",
                                            check=AT_LEAST_ONE))
    n_eval: int = field(default=8, **_opt("held-out domain examples on which the gain Δ* is measured (eval split)",
                                          check=AT_LEAST_ONE))
    n_samples: int = field(default=8, **_opt("base-model samples on which ΔL(P1) is measured", check=AT_LEAST_ONE))
    sample_len: int = field(default=32, **_opt("tokens per base-model sample", check=AT_LEAST_ONE))
    # 0 means "no limit" here as in `sweep` and `tokens`; it is stored as None (the model's context).
    max_length: int | None = field(default=None, **_opt(
        "token limit per example, 0 for none (the model's context length); an example whose prompt fills it "
        "is an error, never silently dropped", check=COUNT, default_text="0, the model's context length"))
    max_extra_pilots: int = field(default=3, **_opt(
        "extra pilots beyond the pilot range when ε is not bracketed (each ×extra-factor to ×10 further, "
        "towards the power-law fit's answer)", check=COUNT))
    extra_factor: float = field(default=3.0, **_opt("smallest step of an extra pilot beyond the range",
                                                    check=Range(1.0, 10.0, lo_open=True)))
    pilot_seeds: int = field(default=1, **_opt(
        "replicate runs (seeds seed..seed+N-1) per pilot LR; ε is bracketed by the largest ΔL(P1) over them, "
        "which covers the run-to-run spread a single-seed pilot misses", check=AT_LEAST_ONE))
    seed: int = field(default=0, **_opt("seed of the data draw, the base-model samples and the first pilot run",
                                        check=COUNT))

    def __post_init__(self) -> None:
        self.pilot_lrs = tuple(float(x) for x in self.pilot_lrs)
        check_fields(self)
        if self.max_length == 0:
            self.max_length = None

    @property
    def model_spec(self) -> str:
        return self.model or DEFAULT_MODEL
