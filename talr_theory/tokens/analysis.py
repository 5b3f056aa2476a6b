"""One call from (loaded model, data spec, format) to the tidy per-token table, for notebooks and the CLI."""

from __future__ import annotations

import pandas as pd

from talr_theory.data.encode import EncodeResult, encode_examples
from talr_theory.data.sft import load_sft
from talr_theory.models import LoadedModel
from talr_theory.theory.reweighting import EAFT_TOP_K
from talr_theory.tokens.scanner import scan_tokens


def scan_dataset(loaded: LoadedModel, data: str, format: str = "cot", template: str = "none",
                 limit: int | None = None, seed: int = 0, split: str | None = None,
                 prompt_field: str | None = None, response_field: str | None = None,
                 max_length: int | None = None, batch_size: int = 8, bf16_autocast: bool = False,
                 with_entropy: bool = False, progress: bool = True, top_k: int = 0,
                 entropy_k: int = EAFT_TOP_K) -> tuple[pd.DataFrame, EncodeResult]:
    """Load ``data``, encode it with ``loaded.tokenizer`` and scan it. The table gains columns
    dataset, format, model and template so several scans can be concatenated and compared."""
    examples = load_sft(data, format=format, prompt_field=prompt_field, response_field=response_field,
                        limit=limit, seed=seed, split=split)
    if not examples:
        raise ValueError(f"{data}: no examples to scan")
    enc = encode_examples(examples, loaded.tokenizer, template=template, max_length=max_length)
    if not enc.examples:
        raise ValueError(f"{data}: no example has a supervised token left after truncation; raise max_length")
    table = scan_tokens(loaded, enc.examples, batch_size=batch_size, bf16_autocast=bf16_autocast,
                        with_entropy=with_entropy, progress=progress, top_k=top_k, entropy_k=entropy_k)
    attrs = table.attrs
    table = table.assign(dataset=data, format=format, model=loaded.spec, template=template)
    table.attrs = attrs
    return table, enc
