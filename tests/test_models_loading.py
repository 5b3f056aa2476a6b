"""Model loading: tiny-random, GGUF conversion cache, spec errors."""

from __future__ import annotations

import time

import pytest
import torch

from talr_theory import models
from talr_theory.models import build_byte_tokenizer, load_model
from talr_theory.paths import shared_file


def test_tiny_random_is_seeded_and_in_eval_mode():
    a, b, c = load_model("tiny-random"), load_model("tiny-random:0"), load_model("tiny-random:1")
    assert not a.model.training
    assert {p.device for p in a.model.parameters()} == {a.device}  # the model really is where it says
    pa = torch.cat([p.flatten() for p in a.model.parameters()])
    pb = torch.cat([p.flatten() for p in b.model.parameters()])
    pc = torch.cat([p.flatten() for p in c.model.parameters()])
    assert torch.equal(pa, pb)
    assert not torch.equal(pa, pc)
    assert a.model.config.vocab_size == len(a.tokenizer)


def test_tiny_random_does_not_touch_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_model("tiny-random:5")
    assert torch.equal(torch.rand(3), expected)


def test_byte_tokenizer_roundtrip_and_bos():
    tok = build_byte_tokenizer()
    text = "Na 140 mEq/L, 5 ft 4 in, 37.5 °C µmol"
    ids = tok(text).input_ids
    assert ids[0] == tok.bos_token_id
    assert tok.decode(ids, skip_special_tokens=True) == text
    plain = tok(text, add_special_tokens=False).input_ids
    assert plain == ids[1:]
    assert len(plain) == len(text.encode("utf-8"))


def test_bad_specs_fail_clearly(monkeypatch):
    with pytest.raises(FileNotFoundError, match="neither a known name"):
        load_model("no-such-model-anywhere")
    with pytest.raises(ValueError, match="integer seed"):
        load_model("tiny-random:abc")
    with pytest.raises(FileNotFoundError, match="GGUF file not found"):
        load_model("/nonexistent/model.gguf")
    with pytest.raises(ValueError, match="unknown dtype"):
        load_model("tiny-random", dtype="float8")


def test_hub_id_offline_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # empty hub cache
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError, match="hub id"):
        load_model("someorg/some-model-that-is-not-cached")
    assert time.perf_counter() - start < 30  # generous: it must not hang on the network


@pytest.mark.shared
def test_gguf_conversion_cache_gives_identical_logits(monkeypatch, tmp_path):
    gguf = shared_file("models/stories260K.gguf")
    if gguf is None:
        pytest.skip("../shared/models/stories260K.gguf absent")
    monkeypatch.setenv("TALR_CACHE", str(tmp_path))
    direct_model, direct_tok = models.load_gguf_direct(gguf)
    direct_model.eval()
    folder = models.convert_gguf(gguf)
    assert folder.is_relative_to(tmp_path) and (folder / "model.safetensors").is_file()
    loaded = load_model(str(gguf))
    assert models.convert_gguf(gguf) == folder  # second call reuses the cache
    text = "Once upon a time there was a little dog."
    ids = torch.tensor([direct_tok(text).input_ids])
    assert loaded.tokenizer(text).input_ids == direct_tok(text).input_ids
    with torch.inference_mode():
        ref = direct_model(ids).logits
        got = loaded.model(ids).logits
    assert torch.equal(ref, got)


@pytest.mark.slow
def test_smollm2_cache_matches_gguf():
    gguf = models.smollm2_gguf_path()
    direct_model, direct_tok = models.load_gguf_direct(gguf)
    direct_model.eval()
    loaded = load_model("smollm2-135m")
    text = "The patient's creatinine clearance is 25.2 mL/min."
    ids = torch.tensor([direct_tok(text).input_ids])
    assert loaded.tokenizer(text).input_ids == direct_tok(text).input_ids
    with torch.inference_mode():
        assert torch.equal(direct_model(ids).logits, loaded.model(ids).logits)
