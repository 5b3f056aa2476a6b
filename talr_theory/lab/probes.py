"""ΔL(P1) with P1 = q0 on fixed base-model samples, as a callable ``SampleKL(model) -> float``.

A thin wrapper over the one KL implementation (``training.evaluation.exact_kl``): exact
KL(q0(·|z_<t) || qθ(·|z_<t)) over the vocabulary at every position of fixed samples z ~ q0, summed
over positions and averaged over samples (nats per sample). The controlled-s probes of the real-model
tier live in ``talr_theory.tiers.llm.probes``.
"""

from __future__ import annotations

import numpy as np


class SampleKL:
    """KL(q0 || qθ) per sample on ``n_samples`` fixed samples of ``length`` tokens from the base model."""

    def __init__(self, loaded, n_samples: int = 8, length: int = 32, seed: int = 1, batch_size: int = 8):
        from talr_theory.models import pad_token_id
        from talr_theory.training.evaluation import next_token_log_probs
        from talr_theory.training.samples import sample_from_model

        self.pad = pad_token_id(loaded.tokenizer)
        self.samples = sample_from_model(loaded.model, loaded.tokenizer, n_samples, length, seed=seed,
                                         batch_size=batch_size, pad_id=self.pad).examples
        self.batch_size = batch_size
        self.base = next_token_log_probs(loaded.model, self.samples, self.pad, batch_size)

    def per_sample(self, model) -> np.ndarray:
        from talr_theory.training.evaluation import exact_kl

        return exact_kl(model, self.samples, self.base, self.pad, self.batch_size)

    def __call__(self, model) -> float:
        return float(self.per_sample(model).mean())
