"""The synthetic lab's configs: the Markov source and the tiny model (no torch, so a stage's Config imports fast)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SourceConfig:
    """A sparse first-order Markov source over ``vocab`` tokens, sequences of ``seq_len`` tokens after BOS."""

    vocab: int = field(default=32, metadata={"help": "number of ordinary tokens (ids 1..vocab; 0 is BOS)"})
    n_starts: int = field(default=4, metadata={"help": "number of possible first tokens"})
    branching: int = field(default=2, metadata={"help": "successors per state (support size n_starts*branching^(seq_len-1))"})
    seq_len: int = field(default=8, metadata={"help": "tokens per sequence after BOS"})
    major_low: float = field(default=0.85, metadata={"help": "lowest probability of a state's major successor"})
    major_high: float = field(default=0.97, metadata={"help": "highest probability of a state's major successor"})
    seed: int = field(default=0, metadata={"help": "seed of the random source"})


@dataclass(frozen=True)
class TinyModelConfig:
    """The tiny Llama that learns the source, and how it is pretrained."""

    hidden_size: int = 64
    intermediate_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    max_positions: int = 32
    pretrain_steps: int = 500
    pretrain_batch: int = 128
    pretrain_lr: float = 1e-2
    seed: int = 0
