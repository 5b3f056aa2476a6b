"""Checkpoint measurements: domain gain Δ*, general degradation ΔL(P1), accuracy, token ease.

Units (all natural logs):

- ``domain_nll``            mean NLL per supervised target token on held-out domain examples.
- ``domain_nll_per_example`` mean over held-out examples of the response code length Σ_t -log q(z_t)
  (the paper's L_q(z) for a response z).
- ``delta_star``            domain gain Δ* = base code length - current code length, nats per example
  (positive = the model compresses the domain better). ``delta_star_per_token`` is the per-token version.
- ``general_nll`` / ``delta_L_text``  mean token NLL on real general text blocks and its change from the
  base model (nats per token; positive = degradation).
- ``kl_base`` / ``kl_base_se``  KL(q0 || qθ) in nats per sample (= ΔL(P1) with P1 = q0): exact over the
  vocabulary at every position of fixed samples from the base model q0, Monte Carlo over the samples
  (:func:`exact_kl`, the one KL implementation), with the standard error of the mean over samples;
  ``kl_base_per_token`` divides by the mean sample length.
- ``frac_p_gt_0.2`` / ``train_frac_p_gt_0.2``  fraction of target tokens with p > 0.2 on held-out and on
  a fixed subset of the training examples (the paper's Fig. 3c statistic).
- ``frac_p_gt_0.2_base_hard`` / ``frac_p_gt_0.2_base_easy`` (and ``train_`` versions), with
  ``split_by_base``: the same fraction among the tokens the base model found hard (p ≤ 0.2) and easy
  (p > 0.2) — how tokens that started hard vs easy evolve. Token probabilities come from the scanner.
- ``accuracy``              greedy-decoding accuracy on a few held-out examples with checkable answers.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from talr_theory.training.objectives import token_nll


def _batches(examples: list, batch_size: int):
    for i in range(0, len(examples), batch_size):
        yield examples[i:i + batch_size]


@torch.no_grad()
def per_example_nll(model, examples: list, pad_id: int = 0, batch_size: int = 8, bf16_autocast: bool = False,
                    p_threshold: float = 0.2) -> pd.DataFrame:
    """One teacher-forced pass: per example, supervised token count, Σ NLL, mean NLL, # tokens with p > threshold.

    NLL sums are accumulated in float64. Examples with no supervised token get NaN mean NLL.
    """
    from talr_theory.data.encode import collate
    from talr_theory.training.tail import logits_and_labels

    device = next(model.parameters()).device
    log_threshold = -math.log(p_threshold)
    rows = []
    was_training = model.training
    model.eval()
    for chunk in _batches(examples, batch_size):
        batch = {k: v.to(device) for k, v in collate(chunk, pad_id).items()}
        ctx = torch.autocast(device.type, dtype=torch.bfloat16) if bf16_autocast else torch.autocast(
            device.type, enabled=False)
        with ctx:
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        nll, mask = token_nll(*logits_and_labels(out, batch["labels"]))
        nll64 = nll.double() * mask
        sums = nll64.sum(dim=1).cpu().numpy()
        counts = mask.sum(dim=1).cpu().numpy()
        easy = ((nll < log_threshold) & mask).sum(dim=1).cpu().numpy()
        for ex, s, n, e in zip(chunk, sums, counts, easy):
            rows.append({"example_id": ex.example_id, "n_tokens": int(n), "sum_nll": float(s),
                         "mean_nll": float(s / n) if n else math.nan, "n_p_gt": int(e)})
    model.train(was_training)
    return pd.DataFrame(rows, columns=["example_id", "n_tokens", "sum_nll", "mean_nll", "n_p_gt"])


@torch.no_grad()
def next_token_log_probs(model, examples: list, pad_id: int = 0, batch_size: int = 8) -> list[torch.Tensor]:
    """Per example, log q(·|z_<t) over the whole vocabulary at every supervised position: float32 [n_t, V].

    One teacher-forced pass per batch; the log-softmax is taken in float32. Cache it for the base
    model (q0) once and pass it to :func:`exact_kl`.
    """
    from talr_theory.data.encode import IGNORE, collate

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    for chunk in _batches(examples, batch_size):
        batch = collate(chunk, pad_id)
        logits = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)).logits
        nxt = batch["labels"][:, 1:].to(device).ne(IGNORE)
        for i in range(len(chunk)):
            out.append(torch.log_softmax(logits[i, :-1][nxt[i]].float(), dim=-1))
    model.train(was_training)
    return out


@torch.no_grad()
def exact_kl(model, examples: list, base_logq: list[torch.Tensor], pad_id: int = 0, batch_size: int = 8) -> np.ndarray:
    """KL(q0 || qθ) per example (nats), exact over the vocabulary at each supervised position, summed over positions.

    ``base_logq`` is :func:`next_token_log_probs` of the base model on the same ``examples``. For
    samples z ~ q0 the mean over examples is an unbiased, never-negative estimate of the sequence KL
    (= ΔL(P1) with P1 = q0); :func:`kl_summary` gives its standard error over samples. Summed in float64.
    """
    cur = next_token_log_probs(model, examples, pad_id, batch_size)
    if len(cur) != len(base_logq):
        raise ValueError(f"exact_kl: {len(base_logq)} base distributions for {len(cur)} examples")
    return np.array([float((b.exp() * (b - c)).sum(dtype=torch.float64)) for b, c in zip(base_logq, cur)])


def kl_summary(per_example: np.ndarray, n_tokens: np.ndarray | None = None) -> dict:
    """``kl_base`` (mean over samples), ``kl_base_se`` (standard error over samples), per-token mean, n."""
    kl = np.asarray(per_example, dtype=np.float64)
    n = kl.shape[0]
    mean_len = float(np.mean(n_tokens)) if n_tokens is not None and len(n_tokens) else math.nan
    return {"kl_base": float(kl.mean()), "kl_base_se": float(kl.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan,
            "kl_base_per_token": float(kl.mean() / mean_len) if mean_len else math.nan, "n_samples": int(n)}


class CheckpointEvaluator:
    """Measures a model at checkpoints against the base model (call ``set_baseline`` first).

    ``domain_eval``: held-out domain ``EncodedExample``s. ``general_text``: real-text blocks (or None).
    ``samples``: ``ModelSamples`` drawn from the base model (or None). ``train_probe``: a fixed subset of
    training examples for the p > 0.2 fraction on training data. ``accuracy_items``: list of
    ``(prompt_ids, meta)`` whose answers ``data.answers.is_correct`` can check (needs ``tokenizer``).
    Use as ``train(..., evaluator=ev)``: ``ev(model, step) -> dict`` of the metrics in the module docs.
    """

    def __init__(self, domain_eval: list, general_text: list | None = None, samples=None,
                 train_probe: list | None = None, accuracy_items: list | None = None, tokenizer=None,
                 pad_id: int = 0, batch_size: int = 8, bf16_autocast: bool = False, max_new_tokens: int = 96,
                 p_threshold: float = 0.2, split_by_base: bool = False):
        if not domain_eval:
            raise ValueError("CheckpointEvaluator needs at least one held-out domain example")
        if accuracy_items and tokenizer is None:
            raise ValueError("accuracy needs the tokenizer to decode generations")
        self.domain_eval, self.general_text, self.samples = domain_eval, general_text, samples
        self.train_probe, self.accuracy_items, self.tokenizer = train_probe, accuracy_items or [], tokenizer
        self.pad_id, self.batch_size, self.bf16 = pad_id, batch_size, bf16_autocast
        self.max_new_tokens, self.p_threshold = max_new_tokens, p_threshold
        self.baseline: dict | None = None
        if split_by_base and tokenizer is None:
            raise ValueError("split_by_base needs the tokenizer (the scanner records token texts)")
        self.split_by_base = split_by_base
        self.base_tokens: dict[str, pd.DataFrame] = {}
        self.base_logq: list | None = None

    def _split_sets(self) -> dict[str, list]:
        """Metric-name prefix -> examples whose tokens are split by base difficulty."""
        sets = {"": self.domain_eval}
        if self.train_probe:
            sets["train_"] = self.train_probe
        return sets

    def _scan(self, model, examples) -> pd.DataFrame:
        from talr_theory.models import LoadedModel
        from talr_theory.tokens.scanner import scan_tokens

        param = next(model.parameters())
        loaded = LoadedModel(model=model, tokenizer=self.tokenizer, spec="checkpoint", device=param.device,
                             dtype=param.dtype)
        return scan_tokens(loaded, examples, batch_size=self.batch_size, bf16_autocast=self.bf16, progress=False)

    def frac_by_base(self, model) -> dict:
        """frac p > threshold among base-hard and base-easy tokens (needs ``set_baseline`` first)."""
        from talr_theory.tokens.compare import frac_above_by_base

        t, m = self.p_threshold, {}
        for prefix, examples in self._split_sets().items():
            split = frac_above_by_base(self.base_tokens[prefix], self._scan(model, examples), t)
            m[f"{prefix}frac_p_gt_{t:g}_base_hard"] = split["base_hard"]
            m[f"{prefix}frac_p_gt_{t:g}_base_easy"] = split["base_easy"]
            m[f"{prefix}n_base_hard_tokens"] = split["n_base_hard"]
        return m

    def _nll(self, model, examples):
        return per_example_nll(model, examples, pad_id=self.pad_id, batch_size=self.batch_size,
                               bf16_autocast=self.bf16, p_threshold=self.p_threshold)

    @torch.no_grad()
    def accuracy(self, model) -> float:
        from talr_theory.data.answers import is_correct

        device = next(model.parameters()).device
        eos = getattr(self.tokenizer, "eos_token_id", None)
        correct = 0
        for prompt_ids, meta in self.accuracy_items:
            ids = torch.tensor([prompt_ids], device=device)
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                 max_new_tokens=self.max_new_tokens, eos_token_id=eos, pad_token_id=self.pad_id)
            text = self.tokenizer.decode(out[0, len(prompt_ids):], skip_special_tokens=True)
            correct += bool(is_correct(text, meta))
        return correct / len(self.accuracy_items)

    def measure(self, model) -> dict:
        """Absolute measurements (no baseline needed)."""
        t = self.p_threshold
        dom = self._nll(model, self.domain_eval)
        m = {"domain_nll": float(dom["sum_nll"].sum() / max(dom["n_tokens"].sum(), 1)),
             "domain_nll_per_example": float(dom["sum_nll"].mean()),
             f"frac_p_gt_{t:g}": float(dom["n_p_gt"].sum() / max(dom["n_tokens"].sum(), 1))}
        if self.general_text:
            gen = self._nll(model, self.general_text)
            m["general_nll"] = float(gen["sum_nll"].sum() / max(gen["n_tokens"].sum(), 1))
        if self.samples is not None:
            if self.base_logq is None:  # the first model measured is the base model q0
                self.base_logq = next_token_log_probs(model, self.samples.examples, self.pad_id, self.batch_size)
            kl = exact_kl(model, self.samples.examples, self.base_logq, self.pad_id, self.batch_size)
            m.update(kl_summary(kl, self.samples.n_tokens))
        if self.train_probe:
            tr = self._nll(model, self.train_probe)
            m["train_domain_nll"] = float(tr["sum_nll"].sum() / max(tr["n_tokens"].sum(), 1))
            m[f"train_frac_p_gt_{t:g}"] = float(tr["n_p_gt"].sum() / max(tr["n_tokens"].sum(), 1))
        if self.accuracy_items:
            m["accuracy"] = self.accuracy(model)
            m["n_accuracy"] = len(self.accuracy_items)
        return m

    def set_baseline(self, model) -> dict:
        self.base_logq = None
        self.baseline = self.measure(model)
        if self.split_by_base:
            self.base_tokens = {prefix: self._scan(model, ex) for prefix, ex in self._split_sets().items()}
        return self.baseline

    def __call__(self, model, step: int) -> dict:
        if self.baseline is None:
            raise RuntimeError("CheckpointEvaluator.set_baseline(base_model) must run before training")
        m = self.measure(model)
        b = self.baseline
        m["delta_star"] = b["domain_nll_per_example"] - m["domain_nll_per_example"]
        m["delta_star_per_token"] = b["domain_nll"] - m["domain_nll"]
        if "general_nll" in m:
            m["delta_L_text"] = m["general_nll"] - b["general_nll"]
        if "accuracy" in m:
            m["delta_accuracy"] = m["accuracy"] - b["accuracy"]
        if self.split_by_base:
            m.update(self.frac_by_base(model))
        return m
