"""Fine-tune only the last k transformer blocks of a causal LM, on cached activations of the frozen rest.

When the first L - k blocks and the embeddings are frozen, their output for a given token sequence
never changes during fine-tuning. ``TailLM`` computes it once per distinct sequence (one forward pass
of the base model, cached by token ids) and runs only the last k blocks, the final norm and the output
head at every step and evaluation. Its logits equal the full model's with the same weights (checked in
the tests), so it is the full model with a frozen prefix, only cheaper: on SmolLM2-135M (30 blocks and a
49k-token head) the last 4 blocks and the head are about a third of a forward pass, and backward stops
at block L - k.

Two savings beyond the cache. The prefix pass runs only the first L - k blocks (it stops at block
L - k instead of running the whole model). And the output head — on SmolLM2 a 49k × 576 matrix, about
twice the cost of 4 blocks per token — is applied only where a logit is read when the caller has
registered the positions of a sequence (:meth:`TailLM.read_positions`, e.g. the response tokens of
training examples); other positions then carry zero logits, which no loss or measure reads
(the training losses read only supervised positions). Unregistered sequences get every logit.

It needs the Llama-style layout ``model.model.layers`` (Llama, SmolLM, Qwen2, Mistral) and right padding;
the output head stays frozen (with tied embeddings it is the embedding matrix).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn


def _layers(model) -> nn.ModuleList:
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(f"{type(model).__name__} has no model.layers: TailLM needs a Llama-style causal LM")
    return layers


class _StopPrefix(Exception):
    """Raised by a forward hook on the last prefix block to end the prefix pass there."""

    def __init__(self, hidden: torch.Tensor):
        super().__init__()
        self.hidden = hidden


class TailLM(nn.Module):
    """The last ``n_blocks`` blocks (+ final norm + frozen head) of ``base``, fed cached prefix activations.

    ``forward(input_ids, attention_mask)`` returns the inner model's output (``.logits``). Rows of
    ``input_ids`` are looked up (unpadded) in the activation cache; a sequence not seen before is run
    through the frozen base prefix once and cached.
    """

    def __init__(self, base: nn.Module, n_blocks: int, cache: dict | None = None):
        super().__init__()
        layers = _layers(base)
        if not 1 <= n_blocks <= len(layers):
            raise ValueError(f"n_blocks must be in [1, {len(layers)}], got {n_blocks}")
        self.n_prefix = len(layers) - n_blocks
        kept = base.model.layers
        base.model.layers = nn.ModuleList(list(kept)[self.n_prefix:])
        try:
            self.inner = copy.deepcopy(base)  # only the last blocks are copied
        finally:
            base.model.layers = kept
        for i, layer in enumerate(self.inner.model.layers):
            attn = getattr(layer, "self_attn", None)
            if attn is not None and hasattr(attn, "layer_idx"):
                attn.layer_idx = i
        self.inner.config = copy.deepcopy(base.config)
        self.inner.config.num_hidden_layers = n_blocks
        self.inner.model.config = self.inner.config
        for p in self.inner.parameters():
            p.requires_grad_(False)
        for p in self.inner.model.layers.parameters():
            p.requires_grad_(True)
        for p in self.inner.model.norm.parameters():
            p.requires_grad_(True)
        self.inner.eval()
        # The frozen base is kept out of the module tree (not a parameter, never trained or copied twice).
        self.__dict__["_base"] = base
        self.__dict__["_cache"] = {} if cache is None else cache  # shareable between tails of one base
        self.__dict__["_reads"] = {}  # row -> sorted positions whose logits are read (absent: every position)
        self.config = self.inner.config
        self.compact_eval = False
        self.eval()  # dense logits unless a trainer switches to training mode (compact logits, _sparse_head)

    def __deepcopy__(self, memo):
        """A copy with its own last blocks, sharing the frozen base, the prefix cache and the read registry
        (a frozen reference such as ASFT's anchor would otherwise copy the whole base model and its cache)."""
        shared = {k: self.__dict__[k] for k in ("_base", "_cache", "_reads")}
        for k in shared:
            memo[id(shared[k])] = shared[k]
        cls = type(self)
        new = cls.__new__(cls)
        memo[id(self)] = new
        for k, v in self.__dict__.items():
            new.__dict__[k] = copy.deepcopy(v, memo)
        return new

    def read_positions(self, examples, reads: dict | None = None) -> None:
        """Register, per sequence of ``examples``, the positions t whose logit is read (labels[t+1] supervised).

        Positions accumulate over calls (a sequence trained under two label masks keeps the union).
        ``reads`` shares a registry between tails of one base (pass another tail's ``reads``).
        """
        if reads is not None:
            self.__dict__["_reads"] = reads
        for e in examples:
            pos = {t for t in range(len(e.labels) - 1) if e.labels[t + 1] != -100}
            key = tuple(e.input_ids)
            self._reads[key] = sorted(pos | set(self._reads.get(key, ())))

    @property
    def reads(self) -> dict:
        return self._reads

    def get_output_embeddings(self):
        return self.inner.get_output_embeddings()

    def get_input_embeddings(self):
        return self.inner.get_input_embeddings()

    def prepare_inputs_for_generation(self, *args, **kwargs):  # peft's causal-LM wrapper (LoRA) asks for it
        return self.inner.prepare_inputs_for_generation(*args, **kwargs)

    @property
    def cache(self) -> dict:
        return self._cache

    @torch.no_grad()
    def _prefix(self, rows: list[tuple[int, ...]]) -> None:
        todo = [r for r in dict.fromkeys(rows) if r not in self._cache]
        if not todo:
            return
        from talr_theory.data.encode import EncodedExample, collate

        device = next(self._base.parameters()).device
        batch = collate([EncodedExample("", list(r), list(r)) for r in todo], 0)
        hidden = self._prefix_hidden(batch["input_ids"].to(device), batch["attention_mask"].to(device))
        for i, r in enumerate(todo):
            self._cache[r] = hidden[i, :len(r)].detach().clone()

    def _prefix_hidden(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The input of block ``n_prefix`` (hidden_states[n_prefix]); the blocks after it never run."""
        if self.n_prefix == 0:
            return self._base.model.embed_tokens(ids)

        def stop(_module, _args, output):
            raise _StopPrefix(output[0] if isinstance(output, tuple) else output)

        handle = self._base.model.layers[self.n_prefix - 1].register_forward_hook(stop)
        try:
            self._base.model(input_ids=ids, attention_mask=mask, use_cache=False)
        except _StopPrefix as done:
            return done.hidden
        finally:
            handle.remove()
        raise RuntimeError("the prefix pass ended without reaching its last block")

    def warm(self, examples) -> None:
        """Cache the prefix activations of ``examples`` (EncodedExample) in batches of 32."""
        rows = [tuple(e.input_ids) for e in examples]
        for i in range(0, len(rows), 32):
            self._prefix(rows[i:i + 32])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        lengths = attention_mask.sum(dim=1).tolist()
        rows = [tuple(input_ids[i, :n].tolist()) for i, n in enumerate(lengths)]
        self._prefix(rows)
        first = self._cache[rows[0]]
        h = first.new_zeros((input_ids.shape[0], input_ids.shape[1], first.shape[-1]))
        for i, r in enumerate(rows):
            h[i, :len(r)] = self._cache[r]
        # peft's wrapper (LoRA) passes every optional input, mostly None
        kwargs = {k: v for k, v in kwargs.items() if v is not None and k not in ("use_cache", "return_dict")}
        reads = [self._reads.get(r) for r in rows]
        if any(x is None for x in reads) or kwargs:
            return self.inner(inputs_embeds=h, attention_mask=attention_mask, use_cache=False, **kwargs)
        return self._sparse_head(h, attention_mask, reads)

    def _sparse_head(self, h: torch.Tensor, attention_mask: torch.Tensor, reads: list[list[int]]):
        """Logits only at the registered positions: the head is the costliest matmul.

        In eval mode the logits are dense [B, T, V] with zeros at the other positions (what measures index),
        unless ``compact_eval`` is set (a reader that handles :class:`CompactLogits`, e.g. the llm tier's measures).
        In training mode they are *compact* (:class:`CompactLogits`): [B, K + 1, V] holding row b's K_b read
        positions first (``positions`` [B, K], -1 = none), so no [B, T, V] tensor is built, filled or
        back-propagated (on SmolLM2 that tensor cost more than the blocks). ``training.core`` aligns the
        labels with :func:`compact_labels`.
        """
        from transformers.modeling_outputs import CausalLMOutputWithPast

        hidden = self.inner.get_decoder()(inputs_embeds=h, attention_mask=attention_mask,
                                          use_cache=False).last_hidden_state
        rows = torch.tensor([i for i, pos in enumerate(reads) for _ in pos], dtype=torch.long)
        cols = torch.tensor([t for pos in reads for t in pos], dtype=torch.long)
        head = self.inner.get_output_embeddings()
        picked = head(hidden[rows, cols])
        if self.training or self.compact_eval:
            k = max(len(pos) for pos in reads)
            slots = torch.tensor([j for pos in reads for j in range(len(pos))], dtype=torch.long)
            logits = picked.new_zeros((h.shape[0], k + 1, picked.shape[-1])).index_put((rows, slots), picked)
            positions = torch.full((h.shape[0], k), -1, dtype=torch.long)
            positions[rows, slots] = cols
            return CompactLogits(logits=logits, positions=positions.to(h.device))
        logits = picked.new_zeros((h.shape[0], h.shape[1], picked.shape[-1]))
        logits = logits.index_put((rows, cols), picked)
        return CausalLMOutputWithPast(logits=logits)


@dataclass
class CompactLogits:
    """Logits at the read positions only: ``logits[b, j]`` is the logit at position ``positions[b, j]``
    (j < K; -1 marks an empty slot, whose logits are zero); the last slot ``logits[:, K]`` is never read."""

    logits: torch.Tensor
    positions: torch.Tensor


def _read_index(positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row, position) of every filled slot of ``positions`` [B, K], and the [B, K] mask of filled slots."""
    valid = positions >= 0
    rows = torch.arange(positions.shape[0], device=positions.device)[:, None].expand_as(positions)
    return rows[valid], positions[valid], valid


def gather_compact(logits: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Dense [B, T, V] logits in the compact layout of ``positions`` [B, K] (slot K and empty slots zero), e.g. a
    dense reference model's logits beside a compact policy's."""
    rows, cols, valid = _read_index(positions)
    out = logits.new_zeros((positions.shape[0], positions.shape[1] + 1, logits.shape[-1]))
    out[:, :-1][valid] = logits[rows, cols]
    return out


def compact_labels(labels: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Labels [B, K + 1] aligned with compact logits under the causal shift (logit slot j predicts label slot j + 1).

    ``labels`` are the dense [B, T] labels; slot j + 1 takes ``labels[b, positions[b, j] + 1]``, slot 0 and empty
    slots are ignored (-100). Raises ValueError when a supervised label has no read position (its logit was
    never computed): a loss on compact logits then covers every supervised token or does not run.
    """
    rows, cols, valid = _read_index(positions)
    out = torch.full((positions.shape[0], positions.shape[1] + 1), -100, dtype=labels.dtype, device=labels.device)
    out[:, 1:][valid] = labels[rows, cols + 1]
    covered = int(out.ne(-100).sum())
    supervised = int(labels[:, 1:].ne(-100).sum())
    if covered != supervised:
        raise ValueError(f"compact logits cover {covered} of {supervised} supervised tokens: register every "
                         f"trained sequence's positions with TailLM.read_positions")
    return out


def logits_and_labels(out, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A model output's logits and the labels aligned with them: dense as given, or compacted for
    :class:`CompactLogits` (what every loss on a model's output goes through)."""
    positions = getattr(out, "positions", None)
    return (out.logits, labels) if positions is None else (out.logits, compact_labels(labels, positions))
