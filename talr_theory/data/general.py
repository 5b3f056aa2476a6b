"""General, "well-modeled" data P1 for measuring ΔL(P1): real text blocks and samples from the base model.

Two honest readings of "data the model already models well" (theory.md, C5):

1. Real general text, cut into fixed-length token blocks; ΔL(P1) is the change of the mean token NLL
   on those blocks. The default (``"auto"`` = ``"wikitext2-slice"``) is a 300 KB slice of WikiText-2
   that ships with the package (``data/corpora/``, CC BY-SA 3.0, attribution in its README), so every
   machine reads the same text. ``"shakespeare-slice"`` (public domain, shipped) is the default source
   of probe passages (:func:`load_passages`). The full files under ``../shared`` are read only when
   asked for by name (``"wikitext"``, ``"tinyshakespeare"``): never silently.
2. Samples from the base model itself — then P1 = q0 exactly and ΔL(P1) = KL(q0 || qθ), estimated by
   Monte Carlo over the samples with a standard error. Samples are drawn once (temperature 1, no
   top-k/top-p truncation, so they are exact draws from q0) and reused at every checkpoint.

Every block/sample is an ``EncodedExample`` whose labels supervise every token after the first, so
the same teacher-forced NLL code measures domain and general data.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from talr_theory.paths import shared_file

CORPORA_DIR = Path(__file__).resolve().parent / "corpora"
# Shipped with the package: name -> (file under data/corpora, what it is, in words)
SHIPPED = {
    "wikitext2-slice": ("wikitext2-valid-slice.txt",
                        "WikiText-2 validation, first 22 articles (shipped slice, CC BY-SA 3.0)"),
    "shakespeare-slice": ("tinyshakespeare-slice.txt",
                          "Tiny Shakespeare, first 2,418 lines (shipped slice, public domain)"),
}
DEFAULT_TEXT = "wikitext2-slice"          # "P1 = real text" ("auto" means this)
DEFAULT_PASSAGES = "shakespeare-slice"    # probe passages of the real-model tier
# Full files under ../shared, read only when named explicitly: name -> (relative path, in words)
SOURCES = {
    "wikitext": ("data/general-text/wikitext-2-valid.txt", "WikiText-2 validation, full file from ../shared"),
    "tinyshakespeare": ("data/general-text/tinyshakespeare.txt", "Tiny Shakespeare, full file from ../shared"),
}
CHOICES = ("auto", *SHIPPED, *SOURCES, "fallback")

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
    """Real-text blocks for ΔL(P1): encoded blocks plus where they came from (in words, no paths)."""

    examples: list
    source: str
    is_fallback: bool
    n_tokens: int
    block_len: int = 0

    @property
    def n_blocks(self) -> int:
        return len(self.examples)

    def summary(self) -> str:
        """One phrase for reports: the corpus and the block counts actually used."""
        return f"{self.n_blocks} blocks of {self.block_len} tokens of {self.source}"


def _read_source(source: str) -> tuple[str, str, bool]:
    """(text, description in words, is_fallback) for a shipped corpus, a ../shared name, or a file path.

    The description never holds an absolute path: a user's file is named by its file name.
    """
    if source == "fallback":
        return FALLBACK_TEXT, "built-in fallback passage", True
    name = DEFAULT_TEXT if source == "auto" else source
    if name in SHIPPED:
        file, words = SHIPPED[name]
        return (CORPORA_DIR / file).read_text(encoding="utf-8"), f"{name}: {words}", False
    if name in SOURCES:
        relative, words = SOURCES[name]
        path = shared_file(relative)
        if path is None:
            raise FileNotFoundError(f"general text {name!r} needs ../shared/{relative}, which is absent; "
                                    f"the shipped {DEFAULT_TEXT!r} is the default")
        return path.read_text(encoding="utf-8"), f"{name}: {words}", False
    path = Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"general text {source!r}: expected {', '.join(map(repr, CHOICES))} "
                                "or a path to a UTF-8 text file")
    from talr_theory.data.records import check_utf8

    check_utf8(path)  # a bad byte fails naming the file and line, not with a bare codec message
    return path.read_text(encoding="utf-8"), f"user file {path.name}", False


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
                       n_tokens=sum(len(e.input_ids) - 1 for e in examples), block_len=block_len)


def load_passages(tokenizer, n_passages: int, passage_len: int, source: str = DEFAULT_PASSAGES,
                  seed: int = 0) -> GeneralText:
    """Probe passages (e.g. the real-model tier's controlled-s probes): blocks of another corpus than P1's.

    The default is the shipped Tiny Shakespeare slice, so the probes never depend on ``../shared`` and
    are not WikiText-like tokens whose training would lower P1's own NLL.
    """
    return load_general_text(tokenizer, source, n_passages, passage_len, seed=seed)
