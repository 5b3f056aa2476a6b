"""Turning SFT examples into token ids with a label mask, and padding them into batches.

The encoding contract (what the scanner scores and the trainer trains on) is exact and simple, so
anyone can reproduce our numbers with plain transformers:

``template="none"`` (raw mode)
    input_ids = tokenizer(prompt).input_ids                       # the tokenizer's default special tokens
              + tokenizer(response, add_special_tokens=False).input_ids
    labels    = [-100] * len(prompt part) + response part
``template="chat"`` (needs ``tokenizer.chat_template``)
    prompt part = apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
    full        = apply_chat_template([user message, {"role": "assistant", "content": response}])
    input_ids = full; labels = -100 on the prompt part, the rest supervised (including the
    template's end-of-turn tokens). The prompt part must be a prefix of ``full`` (checked).

Labels are aligned with ``input_ids`` as in Hugging Face causal LMs: the token at position t is
predicted from the logits at t-1. With ``max_length`` the sequence is cut on the right; such
examples are counted and listed. An example whose response is cut away entirely has nothing to
score: it is removed and listed in ``dropped_ids`` (never silently).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

IGNORE = -100
TEMPLATES = ("none", "chat")


@dataclass
class EncodedExample:
    example_id: str
    input_ids: list[int]
    labels: list[int]

    @property
    def n_target(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


@dataclass
class EncodeResult:
    examples: list[EncodedExample]
    n_truncated: int
    truncated_ids: list[str]
    dropped_ids: list[str] = field(default_factory=list)


def _ids(result) -> list[int]:
    """apply_chat_template returns a list or (transformers v5) a BatchEncoding: get the ids."""
    if hasattr(result, "keys") and "input_ids" in result:
        result = result["input_ids"]
    if hasattr(result, "tolist"):
        result = result.tolist()
    if result and isinstance(result[0], list):  # batched form of a single conversation
        result = result[0]
    return [int(x) for x in result]


def encode_pair(prompt: str, response: str, tokenizer, template: str = "none") -> tuple[list[int], list[int]]:
    """(prompt ids, response ids) under the contract in the module docstring."""
    if template == "none":
        p = list(tokenizer(prompt).input_ids)
        r = list(tokenizer(response, add_special_tokens=False).input_ids)
        return p, r
    if template == "chat":
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("--template chat: this tokenizer has no chat template; use --template none")
        user = [{"role": "user", "content": prompt}]
        p = _ids(tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=True))
        full = _ids(tokenizer.apply_chat_template(user + [{"role": "assistant", "content": response}],
                                                  tokenize=True))
        if full[: len(p)] != p:
            raise ValueError("chat template: the rendered prompt is not a prefix of the rendered conversation, "
                             "so the response tokens cannot be located; use --template none")
        return p, full[len(p):]
    raise ValueError(f"unknown template {template!r}; expected one of {TEMPLATES}")


def encode_examples(examples, tokenizer, template: str = "none", max_length: int | None = None) -> EncodeResult:
    """Encode SFT examples (anything with example_id, prompt, response)."""
    out, truncated, dropped = [], [], []
    for ex in examples:
        p, r = encode_pair(ex.prompt, ex.response, tokenizer, template)
        if not p:
            raise ValueError(f"example {ex.example_id}: the prompt encodes to zero tokens, so the first "
                             f"response token has no context to be predicted from")
        if not r:
            raise ValueError(f"example {ex.example_id}: the response encodes to zero tokens")
        ids = p + r
        labels = [IGNORE] * len(p) + r
        if max_length is not None and len(ids) > max_length:
            truncated.append(ex.example_id)
            ids, labels = ids[:max_length], labels[:max_length]
            if all(x == IGNORE for x in labels):
                dropped.append(ex.example_id)
                continue
        out.append(EncodedExample(ex.example_id, ids, labels))
    return EncodeResult(out, len(truncated), truncated, dropped)


def collate(batch: list[EncodedExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch: input_ids (pad_id), attention_mask (0 on padding), labels (-100 on padding)."""
    import torch  # here: the encoding itself (and the token view that reads IGNORE) needs no torch

    if not batch:
        raise ValueError("collate needs at least one example")
    width = max(len(ex.input_ids) for ex in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    for i, ex in enumerate(batch):
        n = len(ex.input_ids)
        ids[i, :n] = torch.tensor(ex.input_ids, dtype=torch.long)
        mask[i, :n] = 1
        labels[i, :n] = torch.tensor(ex.labels, dtype=torch.long)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
