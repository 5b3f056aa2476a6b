"""The synthetic lab's "general" world: a known sparse Markov source and a tiny transformer trained on it.

Why a Markov source: every sequence it can emit, and its exact probability, can be listed. With
sequences of fixed length T, a first-order chain whose every state has ``branching`` successors
emits at most ``n_starts * branching**(T-1)`` distinct sequences (512 with the defaults), so

    KL(P1 || q) = Σ_z P1(z) [log P1(z) - log q(z)]

is an exact finite sum over the support, even though the transformer conditions on the whole
prefix. ΔL(P1) = KL(P1||q2) - KL(P1||q1) = Σ_z P1(z) [log q1(z) - log q2(z)] is exact as well.
Precision: the model runs in float32 (float64 is ~3x slower on CPU and the lab evaluates ΔL
thousands of times); per-token log-probabilities then carry ~1e-7 relative rounding, far below the
smallest tolerance ε = 1e-3 nats the lab uses, and every sum over the support is taken in float64.

Token ids: 0 is BOS; 1..vocab are ordinary tokens. Each state's successors are drawn at random;
one successor is "major" (probability in ``major_prob``), so most tokens are easy for a model that
has learned the source, as in real SFT data where most target tokens have p close to 1.

The tiny transformer is a Hugging Face ``LlamaForCausalLM`` built from a config, so the toolkit's
training core applies unchanged. It is pretrained by sampling from the source, and cached in
``paths.cache_dir()/synthetic/<hash of source+model+pretrain config>``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import time

import numpy as np
import torch

from talr_theory.lab.config import SourceConfig, TinyModelConfig
from talr_theory.paths import cache_dir

BOS = 0


class MarkovSource:
    """Exact probabilities, exhaustive enumeration and sampling for a :class:`SourceConfig`."""

    def __init__(self, config: SourceConfig = SourceConfig()):
        if config.branching < 1 or config.branching >= config.vocab:
            raise ValueError(f"SourceConfig.branching must be in [1, vocab-1], got {config.branching}")
        if not 0.0 < config.major_low <= config.major_high < 1.0:
            raise ValueError("SourceConfig needs 0 < major_low <= major_high < 1")
        self.config = config
        rng = np.random.default_rng(config.seed)
        n = config.vocab + 1
        trans = np.zeros((n, n), dtype=np.float64)
        starts = rng.choice(np.arange(1, n), size=config.n_starts, replace=False)
        trans[BOS, starts] = rng.dirichlet(np.full(config.n_starts, 5.0))
        for state in range(1, n):
            succ = rng.choice(np.arange(1, n), size=config.branching, replace=False)
            major = rng.uniform(config.major_low, config.major_high)
            rest = rng.dirichlet(np.ones(config.branching - 1)) * (1 - major) if config.branching > 1 else []
            trans[state, succ[0]] = major
            trans[state, succ[1:]] = rest
        self.trans = trans
        with np.errstate(divide="ignore"):
            self.log_trans = np.log(trans)
        self.major = trans[:, 1:].argmax(axis=1) + 1  # greedy successor of each state
        self._support: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def n_tokens(self) -> int:
        return self.config.vocab + 1

    def support(self) -> tuple[np.ndarray, np.ndarray]:
        """All sequences with P1 > 0 as an int array [N, seq_len+1] (BOS first) and their log P1 (float64)."""
        if self._support is None:
            seqs = np.array([[BOS]], dtype=np.int64)
            logp = np.zeros(1)
            for _ in range(self.config.seq_len):
                last = seqs[:, -1]
                nxt_states, nxt_tok = np.nonzero(self.trans[last] > 0)
                seqs = np.column_stack([seqs[nxt_states], nxt_tok])
                logp = logp[nxt_states] + self.log_trans[last[nxt_states], nxt_tok]
            self._support = (seqs, logp)
        return self._support

    def entropy(self) -> float:
        """H(P1) in nats per sequence: the smallest possible expected code length."""
        _, logp = self.support()
        return float(-(np.exp(logp) * logp).sum())

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        seqs, logp = self.support()
        idx = rng.choice(len(seqs), size=n, p=np.exp(logp) / np.exp(logp).sum())
        return seqs[idx]

    def log_prob_tokens(self, seqs: np.ndarray) -> np.ndarray:
        """log P1 of every token given its predecessor, shape [N, len-1] (-inf off the support)."""
        return self.log_trans[seqs[:, :-1], seqs[:, 1:]]


@contextlib.contextmanager
def torch_threads(n: int):
    """Temporarily run torch on ``n`` CPU threads (tiny models are faster on one thread, and much
    faster when other processes share the cores)."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _config_hash(*configs) -> str:
    text = json.dumps([dataclasses.asdict(c) for c in configs], sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def build_tiny_llama(n_tokens: int, config: TinyModelConfig = TinyModelConfig()):
    """A random-init ``LlamaForCausalLM`` sized for the synthetic vocabulary."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(config.seed)
    hf_config = LlamaConfig(
        vocab_size=n_tokens, hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads, max_position_embeddings=config.max_positions,
        # No pad id: with pad == BOS, transformers would mask the BOS position out of attention and the
        # first token could never be predicted. Our batches are never padded.
        tie_word_embeddings=False, bos_token_id=BOS, eos_token_id=None, pad_token_id=None,
    )
    return LlamaForCausalLM(hf_config)


def pretrain_tiny_llama(source: MarkovSource, config: TinyModelConfig = TinyModelConfig(),
                        progress: bool = True):
    """Train the tiny Llama on samples of the source with AdamW (cosine decay); float32, eval mode out."""
    from tqdm.auto import tqdm

    model = build_tiny_llama(source.n_tokens, config)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=config.pretrain_lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.pretrain_lr, total_steps=config.pretrain_steps,
                                                pct_start=0.1)
    rng = np.random.default_rng(config.seed)
    for _ in tqdm(range(config.pretrain_steps), desc="pretrain synthetic LM", disable=not progress):
        pretrain_step(model, torch.from_numpy(source.sample(config.pretrain_batch, rng)), opt, sched)
    model.eval()
    return model


def pretrain_step(model, batch: torch.Tensor, opt, sched) -> float:
    """One next-token step on ``batch`` (the pretraining loops of the general and mixed-domain models)."""
    loss = model(input_ids=batch, labels=batch).loss
    loss.backward()
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)
    return float(loss.detach())


def load_pretrained(source_config: SourceConfig = SourceConfig(), model_config: TinyModelConfig = TinyModelConfig(),
                    dtype: torch.dtype = torch.float32, progress: bool = True):
    """The pretrained tiny Llama for this source (cached by config hash), as ``dtype`` in eval mode.

    Returns ``(source, model, info)`` where info has the cache entry (relative to the cache folder), whether it was cached, the
    pretraining time and the exact KL(P1 || q) in nats per sequence.
    """
    source = MarkovSource(source_config)
    folder = cache_dir() / "synthetic" / _config_hash(source_config, model_config)
    weights = folder / "model.pt"
    # The cache entry by name, never an absolute path: results and reports read the same on every machine.
    info: dict = {"cache": f"synthetic/{folder.name}"}
    if weights.exists():
        model = build_tiny_llama(source.n_tokens, model_config)
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        model.eval()
        info.update(cached=True, pretrain_seconds=0.0)
    else:
        start = time.perf_counter()
        model = pretrain_tiny_llama(source, model_config, progress=progress)
        info.update(cached=False, pretrain_seconds=time.perf_counter() - start)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "model.pt.tmp"
        torch.save(model.state_dict(), tmp)
        tmp.replace(weights)  # atomic: a killed pretraining never leaves a half-written cache entry
        (folder / "config.json").write_text(json.dumps(
            {"source": dataclasses.asdict(source_config), "model": dataclasses.asdict(model_config)}, indent=2))
    model = model.to(dtype)
    evaluator = ExactGeneralEvaluator(source, model)
    info["kl_p1_nats_per_seq"] = evaluator.kl(model)
    info["entropy_p1_nats_per_seq"] = source.entropy()
    return source, model, info


@torch.no_grad()
def sequence_token_logq(model, seqs: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """log q(x_t | x_<t) for every t ≥ 1, shape [N, len-1], float64.

    The one token log-probability function of the synthetic lab (the general-data evaluator and
    the domain examples both use it). The token scanner (``tokens.scanner``) is not used here: it
    needs a tokenizer-bearing ``LoadedModel``, pads variable-length examples and returns a pandas
    table in fp32, while the lab scores the same unpadded equal-length sequences thousands of times
    and needs float64 tensors. The log-softmax is taken in float64 (the vocabulary has 33 tokens).
    """
    out = []
    for i in range(0, seqs.shape[0], batch_size):
        chunk = seqs[i:i + batch_size]
        logits = model(input_ids=chunk).logits[:, :-1].to(torch.float64)
        logq = torch.log_softmax(logits, dim=-1)
        out.append(logq.gather(-1, chunk[:, 1:, None]).squeeze(-1))
    return torch.cat(out)


class ExactGeneralEvaluator:
    """Exact KL(P1 || q) and ΔL(P1) against a reference model, by summing over the whole support."""

    def __init__(self, source: MarkovSource, reference_model):
        seqs, logp = source.support()
        self.source = source
        self.seqs = torch.from_numpy(seqs)
        self.logp = torch.from_numpy(logp)  # float64
        self.weights = torch.exp(self.logp)
        self.ref_logq = self.seq_logq(reference_model)

    def seq_logq(self, model) -> torch.Tensor:
        return sequence_token_logq(model, self.seqs).to(torch.float64).sum(dim=1)

    def kl(self, model) -> float:
        """KL(P1 || q) in nats per sequence."""
        return float((self.weights * (self.logp - self.seq_logq(model))).sum())

    def delta_L(self, model) -> float:
        """ΔL(P1) = E_{P1}[L_q(z)] - E_{P1}[L_ref(z)] in nats per sequence (exact)."""
        return float((self.weights * (self.ref_logq - self.seq_logq(model))).sum())

    def context_tables(self, model) -> dict[str, torch.Tensor]:
        """Per context (sequence, position): visit weight ρ, P1(·|c) and the model's logits, float64.

        ρ(c) = P1(prefix) for every prefix in the support (contexts repeat across sequences that share
        a prefix; their weights then add up, which gives the same sums).
        """
        with torch.no_grad():
            logits = model(input_ids=self.seqs).logits[:, :-1].to(torch.float64)
        # Contexts are shared by many full sequences; weight each occurrence by P1(full sequence) so
        # that summing over sequences gives Σ_prefix P1(prefix) × (per-context term).
        rho = self.weights[:, None].expand(-1, logits.shape[1]).clone()
        p_next = torch.from_numpy(self.source.trans)[self.seqs[:, :-1]]
        return {"rho": rho.reshape(-1), "p": p_next.reshape(-1, p_next.shape[-1]),
                "logits": logits.reshape(-1, logits.shape[-1])}
