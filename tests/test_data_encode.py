"""Encoding contract (raw and chat), truncation accounting, collation."""

from __future__ import annotations

import pytest
import torch

from talr_theory.data.encode import IGNORE, collate, encode_examples
from talr_theory.data.sft import SFTExample
from talr_theory.models import build_byte_tokenizer


@pytest.fixture(scope="module")
def tok():
    return build_byte_tokenizer()


def _ex(i, prompt, response):
    return SFTExample(f"e{i}", prompt, response, {})


def test_raw_contract(tok):
    res = encode_examples([_ex(0, "Q: 1+1?", " A: 2")], tok, template="none")
    e = res.examples[0]
    p = tok("Q: 1+1?").input_ids
    r = tok(" A: 2", add_special_tokens=False).input_ids
    assert e.input_ids == p + r
    assert e.labels == [IGNORE] * len(p) + r
    assert e.n_target == len(r) == 5
    assert res.n_truncated == 0 and res.truncated_ids == [] and res.dropped_ids == []


def test_chat_contract(tok):
    e = encode_examples([_ex(0, "hi", "hello")], tok, template="chat").examples[0]
    text = tok.decode(e.input_ids)
    assert text.startswith("<s>user\nhi</s>\n<s>assistant\n")
    supervised = tok.decode([t for t in e.labels if t != IGNORE])
    assert supervised.startswith("hello") and "user" not in supervised


def test_chat_without_template_is_an_error(tok):
    import copy

    plain = copy.deepcopy(tok)
    plain.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        encode_examples([_ex(0, "a", "b")], plain, template="chat")
    with pytest.raises(ValueError, match="unknown template"):
        encode_examples([_ex(0, "a", "b")], tok, template="xml")


def test_truncation_is_counted_and_dropping_is_listed(tok):
    exs = [_ex(0, "short", "ok"), _ex(1, "a" * 20, "bbbbbbbbbb"), _ex(2, "c" * 40, "dd")]
    res = encode_examples(exs, tok, max_length=25)
    assert res.n_truncated == 2 and res.truncated_ids == ["e1", "e2"]
    assert res.dropped_ids == ["e2"]  # its response was cut away entirely
    kept = {e.example_id: e for e in res.examples}
    assert set(kept) == {"e0", "e1"}
    assert len(kept["e1"].input_ids) == 25 and kept["e1"].n_target == 25 - 21


def test_collate_pads_right_and_masks_labels(tok):
    exs = encode_examples([_ex(0, "ab", "cd"), _ex(1, "abcdef", "g")], tok).examples
    batch = collate(exs, pad_id=0)
    assert batch["input_ids"].shape == (2, 8)
    assert batch["attention_mask"].tolist() == [[1] * 5 + [0] * 3, [1] * 8]
    assert (batch["labels"][0, 5:] == IGNORE).all() and (batch["input_ids"][0, 5:] == 0).all()
    assert batch["labels"][1].tolist() == exs[1].labels
    assert batch["input_ids"].dtype == torch.long
