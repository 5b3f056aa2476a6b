"""General, "well-modeled" data P1 for measuring ΔL(P1): real text blocks and samples from the base model.

Two honest readings of "data the model already models well" (theory.md, C5):

1. Real general text — WikiText-2 (valid) or Tiny Shakespeare from ``../shared`` when present. Cut
   into fixed-length token blocks; ΔL(P1) is the change of the mean token NLL on those blocks. When
   ``../shared`` is absent we fall back to a short built-in English passage (written for this
   project) and say so with a warning: it is far smaller, so its ΔL is noisier.
2. Samples from the base model itself — then P1 = q0 exactly and ΔL(P1) = KL(q0 || qθ), estimated by
   Monte Carlo over the samples with a standard error. Samples are drawn once (temperature 1, no
   top-k/top-p truncation, so they are exact draws from q0) and reused at every checkpoint.

Every block/sample is an ``EncodedExample`` whose labels supervise every token after the first, so
the same teacher-forced NLL code measures domain and general data.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from talr_theory.paths import shared_file

SOURCES = {
    "wikitext": "data/general-text/wikitext-2-valid.txt",
    "tinyshakespeare": "data/general-text/tinyshakespeare.txt",
}

# Fallback general text, written for this project (plain descriptive English, no special domain).
FALLBACK_TEXT = """\
The river runs past the old mill and under a stone bridge before it reaches the town. In spring the
water rises with melted snow from the hills, and children gather on the bank to watch branches float
by. The mill has not ground grain for many years, but its wheel still turns slowly when the current
is strong.
Most people in the town work in small shops, on farms, or at the school near the market square. The
market opens early on Saturday mornings. Farmers bring vegetables, eggs, cheese and bread, and by
noon the busiest stalls are nearly empty. Visitors often stop at the bakery on the corner, which is
known for its dark rye loaves and apple cakes.
A library stands on the hill above the square. It was built more than a century ago with money
collected by the families of the town, and it still lends books, maps and newspapers to anyone who
asks. On rainy afternoons the reading room is full of students preparing for exams and older
residents reading about history, gardening and travel.
Weather in the region changes quickly. A clear morning can turn into a storm by the afternoon, so
people carry coats even in summer. In winter the roads over the hills are sometimes closed by snow,
and the town depends on the railway line that follows the river valley to the coast.
The coast is two hours away by train. Fishing boats leave the harbour before sunrise and return in
the evening, and the fish market by the pier sells the day's catch to restaurants and families.
Tourists come in the warm months to walk along the cliffs, swim in the cold sea, and eat at the
small cafes that line the harbour road.
Learning a new skill takes patience. Whether someone is practising a musical instrument, studying a
language, or learning to cook, progress usually comes from small efforts repeated over many days.
Mistakes are part of the process, and a good teacher helps a student notice them without losing
confidence.
"""


@dataclass
class GeneralText:
    """Real-text blocks for ΔL(P1): encoded blocks plus where they came from."""

    examples: list
    source: str
    is_fallback: bool
    n_tokens: int


def _read_source(source: str) -> tuple[str, str, bool]:
    """(text, description, is_fallback) for 'auto', a known name, or a file path."""
    from pathlib import Path

    if source == "fallback":
        return FALLBACK_TEXT, "built-in fallback passage", True
    if source == "auto":
        for name in ("wikitext", "tinyshakespeare"):
            path = shared_file(SOURCES[name])
            if path is not None:
                return path.read_text(encoding="utf-8"), f"{name} ({path})", False
        warnings.warn("no general text found under ../shared (wikitext, tinyshakespeare); using the short "
                      "built-in fallback passage, so ΔL on real text will be noisier", stacklevel=3)
        return FALLBACK_TEXT, "built-in fallback passage", True
    if source in SOURCES:
        path = shared_file(SOURCES[source])
        if path is None:
            raise FileNotFoundError(f"general text {source!r} needs ../shared/{SOURCES[source]}, which is absent; "
                                    f"use --general-text auto (falls back to a built-in passage) or a file path")
        return path.read_text(encoding="utf-8"), f"{source} ({path})", False
    path = Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"general text {source!r}: expected 'auto', 'fallback', "
                                f"{', '.join(SOURCES)} or a path to a UTF-8 text file")
    from talr_theory.data.records import check_utf8

    check_utf8(path)  # a bad byte fails naming the file and line, not with a bare codec message
    return path.read_text(encoding="utf-8"), str(path), False


def load_general_text(tokenizer, source: str = "auto", n_blocks: int = 32, block_len: int = 128,
                      seed: int = 0) -> GeneralText:
    """``n_blocks`` blocks of ``block_len`` tokens from real text, at seeded positions in the file.

    Each block starts at the beginning of a non-empty line (WikiText headings included), is tokenized
    without special tokens, and is prefixed with BOS when the tokenizer has one. When the text is
    too short for ``n_blocks`` distinct blocks, it is cut into as many consecutive blocks as fit and
    the shortfall is reported in a warning (never silently).
    """
    from talr_theory.data.encode import EncodedExample

    text, description, fallback = _read_source(source)
    bos = getattr(tokenizer, "bos_token_id", None)
    lines = [i for i, line in enumerate(text.splitlines()) if line.strip()]
    all_lines = text.splitlines()
    # ~6 characters per token is generous for BPE/sentencepiece on English; we cut at block_len tokens.
    char_budget = block_len * 8
    rng = np.random.default_rng(seed)
    starts = sorted(rng.choice(lines, size=min(n_blocks * 3, len(lines)), replace=False).tolist())
    blocks, used_until = [], -1
    for start in starts:
        if len(blocks) == n_blocks:
            break
        if start <= used_until:
            continue  # keep blocks disjoint
        chunk, j = "", start
        while len(chunk) < char_budget and j < len(all_lines):
            chunk += all_lines[j] + "\n"
            j += 1
        ids = tokenizer(chunk, add_special_tokens=False)["input_ids"][:block_len]
        if len(ids) < block_len:
            continue
        used_until = j - 1
        blocks.append(ids)
    if len(blocks) < n_blocks:
        # Small text (e.g. the fallback): consecutive blocks over the whole text instead.
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        consecutive = [ids[i:i + block_len] for i in range(0, len(ids) - block_len + 1, block_len)]
        if len(consecutive) > len(blocks):
            blocks = consecutive[:n_blocks]
        if len(blocks) < n_blocks:
            warnings.warn(f"general text {description}: only {len(blocks)} blocks of {block_len} tokens "
                          f"fit (asked for {n_blocks})", stacklevel=2)
    if not blocks:
        raise ValueError(f"general text {description} is shorter than one block of {block_len} tokens")
    examples = []
    for k, ids in enumerate(blocks):
        ids = ([bos] if isinstance(bos, int) else []) + list(ids)
        labels = list(ids)
        examples.append(EncodedExample(example_id=f"general-{k}", input_ids=ids, labels=labels))
    return GeneralText(examples=examples, source=description, is_fallback=fallback,
                       n_tokens=sum(len(e.input_ids) - 1 for e in examples))
