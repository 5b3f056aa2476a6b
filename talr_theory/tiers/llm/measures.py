"""Measurements at a checkpoint: domain accuracy and gain, and ΔL(P1) two ways, kept per unit.

Domain (held-out prompts). Accuracy is teacher-forced exact match: every answer token is the model's
most likely token given the prompt and the preceding response tokens (one forward pass, no
generation); it is the tier's one accuracy definition. Δ* is the code-length gain on the held-out
responses (nats per example). Both are kept per prompt (``units_acc``, ``units_gain``).

General degradation ΔL(P1), per unit, on the same checkpoints:
- ``kl``   P1 = q0: exact KL(q0 || qθ) over the vocabulary at every position of fixed base-model samples
           (``training.evaluation.exact_kl``), nats per sample;
- ``text`` P1 = real text (``data.general``): change of the NLL per block (nats per block).

Step 0 of every run is the base model, so its row is computed once (``Measures.base_row``) and reused.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from talr_theory.tiers.llm.config import P1S


def response_positions(example) -> list[int]:
    """Positions t whose logit predicts a supervised label (labels[t + 1] is not ignored)."""
    return [t for t in range(len(example.labels) - 1) if example.labels[t + 1] != -100]


@torch.no_grad()
def domain_units(model, examples: list, spans: list, pad: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per example: the response's code length (nats, float64) and exact match of its answer span (0/1).

    ``spans[i]`` is the [start, end) of example i's answer tokens in ``input_ids`` (None: no answer, NaN).
    """
    from talr_theory.data.encode import collate

    code = np.empty(len(examples))
    correct = np.full(len(examples), np.nan)
    device = next(model.parameters()).device
    for lo in range(0, len(examples), batch_size):
        chunk = examples[lo:lo + batch_size]
        batch = collate(chunk, pad)
        out = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
        logits = _dense_view(out, batch["input_ids"].shape[1])
        for i, ex in enumerate(chunk):
            pos = torch.tensor(response_positions(ex), dtype=torch.long)
            logp = torch.log_softmax(logits[i, pos].double(), dim=-1)
            targets = torch.tensor(ex.input_ids, dtype=torch.long)[pos + 1]
            code[lo + i] = -float(logp.gather(1, targets[:, None]).sum())
            span = spans[lo + i]
            if span is not None:
                # logit at t predicts token t + 1: the answer tokens [a, b) are read at [a - 1, b - 1)
                top = logits[i, span[0] - 1:span[1] - 1].argmax(dim=-1)
                correct[lo + i] = float(bool((top == torch.tensor(ex.input_ids[span[0]:span[1]])).all()))
    return code, correct


class _Rows:
    """Dense-style row indexing ``[i, positions]`` over compact logits (``training.tail.CompactLogits``)."""

    def __init__(self, logits: torch.Tensor, positions: torch.Tensor, length: int):
        self.logits = logits
        self.slot = torch.full((positions.shape[0], length), -1, dtype=torch.long)
        rows, slots = (positions >= 0).nonzero(as_tuple=True)
        self.slot[rows, positions[rows, slots].cpu()] = slots.cpu()

    def __getitem__(self, key):
        i, pos = key
        slot = self.slot[i, pos]
        if bool((slot < 0).any()):
            raise ValueError(f"row {i}: a read position has no logit (register it with TailLM.read_positions)")
        return self.logits[i, slot]


def _dense_view(out, length: int):
    """The output's logits indexable as [row, positions] whether dense [B, T, V] or compact."""
    positions = getattr(out, "positions", None)
    return out.logits if positions is None else _Rows(out.logits, positions, length)


class General:
    """The P1 units: base-model samples (KL) and real-text blocks (NLL change), with their base values."""

    def __init__(self, base_model, samples, text_blocks: list, pad: int, batch_size: int = 32):
        from talr_theory.training.evaluation import next_token_log_probs

        self.samples, self.text, self.pad, self.bs = samples, text_blocks, pad, batch_size
        self.base_logq = next_token_log_probs(base_model, samples.examples, pad, batch_size)
        self.base_text = self._nll(base_model)

    def _nll(self, model) -> np.ndarray:
        code, _ = domain_units(model, self.text, [None] * len(self.text), self.pad, self.bs)
        return code

    def __call__(self, model) -> dict[str, np.ndarray]:
        from talr_theory.training.evaluation import exact_kl

        return {"kl": np.asarray(exact_kl(model, self.samples.examples, self.base_logq, self.pad, self.bs), float),
                "text": self._nll(model) - self.base_text}


class Measures:
    """Δ*, accuracy and both ΔL(P1) of a model, per unit, against the base model (``evaluator`` of core.train)."""

    def __init__(self, base_model, domain_eval: list, spans: list, general: General, pad: int, batch_size: int = 32):
        self.domain_eval, self.spans, self.general, self.pad, self.bs = domain_eval, spans, general, pad, batch_size
        self.base_code, self.base_correct = domain_units(base_model, domain_eval, spans, pad, batch_size)
        zeros = {"kl": np.zeros(len(general.samples.examples)), "text": np.zeros(len(general.text))}
        self.base_row = self.row(self.base_code, self.base_correct, zeros)

    def row(self, code: np.ndarray, correct: np.ndarray, gen: dict[str, np.ndarray]) -> dict:
        gain = self.base_code - code
        acc = correct[np.isfinite(correct)]
        out = {"delta_star": float(gain.mean()), "accuracy": float(acc.mean()) if len(acc) else math.nan,
               "units_gain": [float(x) for x in gain], "units_acc": [float(x) for x in correct]}
        for p1 in P1S:
            v = gen[p1]
            out[f"dL_{p1}"] = float(v.mean())
            out[f"dL_{p1}_se"] = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else math.nan
            out[f"units_{p1}"] = [float(x) for x in v]
        return out

    def __call__(self, model, step: int = 0) -> dict:
        if step == 0:  # every run starts from the base model (LoRA's adapters start at zero)
            return dict(self.base_row)
        code, correct = domain_units(model, self.domain_eval, self.spans, self.pad, self.bs)
        return self.row(code, correct, self.general(model))


def mask_labels(examples: list, token_p: pd.DataFrame, threshold: float, keep: str) -> list:
    """Copies of ``examples`` supervising only tokens with base p < threshold (``keep='hard'``) or ≥ it ('easy').

    ``token_p`` is a scan of the base model on ``examples`` (columns example_id, position, p). Examples
    left with no supervised token are dropped (their count is ``len(examples) - len(result)``).
    """
    from talr_theory.data.encode import IGNORE, EncodedExample

    if keep not in ("hard", "easy"):
        raise ValueError(f"keep must be 'hard' or 'easy', got {keep!r}")
    p = token_p.set_index(["example_id", "position"])["p"]
    out = []
    for ex in examples:
        labels = list(ex.labels)
        for pos, lab in enumerate(ex.labels):
            if lab != IGNORE and (float(p[(ex.example_id, pos)]) < threshold) != (keep == "hard"):
                labels[pos] = IGNORE
        if any(lab != IGNORE for lab in labels):
            out.append(EncodedExample(f"{ex.example_id}-{keep}", list(ex.input_ids), labels))
    return out
