"""The scanner against plain full-vocabulary computations, and the CLI must-show check."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from talr_theory.cli import main
from talr_theory.data.encode import encode_examples
from talr_theory.data.sft import load_sft
from talr_theory.models import load_model
from talr_theory.paths import shared_file
from talr_theory.tokens import scanner
from talr_theory.tokens.scanner import scan_tokens


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny-random:3")


@pytest.fixture(scope="module")
def encoded(tiny):
    # distinct seeds: the same synthetic case has the same id in both formats
    exs = load_sft("medcalc-synth:4", format="label") + load_sft("medcalc-synth:2", format="cot", seed=1)
    return encode_examples(exs, tiny.tokenizer, max_length=500).examples


def _naive(loaded, encoded):
    """One example at a time, full logits, float64 log-softmax over the whole vocabulary."""
    out = {}
    with torch.inference_mode():
        for e in encoded:
            logits = loaded.model(torch.tensor([e.input_ids])).logits[0].double()
            logq = torch.log_softmax(logits, -1)
            lab = torch.tensor(e.labels)
            pos = torch.nonzero(lab != -100).squeeze(1)
            out[e.example_id] = (pos.numpy(), lab[pos].numpy(), logq[pos - 1, lab[pos]].numpy(),
                                 (-(logq.exp() * logq).sum(-1))[pos - 1].numpy())
    return out


def test_scanner_matches_naive_loop(tiny, encoded):
    table = scan_tokens(tiny, encoded, batch_size=4, with_entropy=True, progress=False)
    ref = _naive(tiny, encoded)
    assert len(table) == sum(len(v[0]) for v in ref.values())
    for ex_id, (pos, tok, logp, ent) in ref.items():
        rows = table[table.example_id == ex_id]
        assert rows.position.tolist() == pos.tolist()
        assert rows.token_id.tolist() == tok.tolist()
        assert rows.response_index.tolist() == list(range(len(pos)))
        np.testing.assert_allclose(rows.logp.to_numpy(), logp, atol=2e-5)
        np.testing.assert_allclose(rows.entropy.to_numpy(), ent, atol=2e-5)
    np.testing.assert_allclose(table.p, np.exp(table.logp))
    assert table.attrs["scan"]["fast_head"] and 0 <= table.attrs["scan"]["padding_fraction"] < 1


def test_scanner_topk_entropy_is_eafts(tiny, encoded):
    """entropy_topk = entropy of the softmax over the K largest logits / ln K, from full logits in numpy."""
    k = 5
    table = scan_tokens(tiny, encoded[:2], batch_size=2, with_entropy=True, progress=False, entropy_k=k)
    vocab = tiny.model.config.vocab_size
    full_k = scan_tokens(tiny, encoded[:2], batch_size=2, with_entropy=True, progress=False, entropy_k=vocab)
    with torch.inference_mode():
        for e in encoded[:2]:
            logits = tiny.model(torch.tensor([e.input_ids])).logits[0].double().numpy()
            pos = np.nonzero(np.array(e.labels) != -100)[0]
            top = np.sort(logits[pos - 1], axis=-1)[:, -k:]
            q = np.exp(top - top.max(-1, keepdims=True))
            q /= q.sum(-1, keepdims=True)
            expected = -(q * np.log(q)).sum(-1) / np.log(k)
            rows = table[table.example_id == e.example_id]
            np.testing.assert_allclose(rows.entropy_topk.to_numpy(), expected, atol=2e-5)
            # K = vocabulary: the full entropy over ln V
            rows_v = full_k[full_k.example_id == e.example_id]
            np.testing.assert_allclose(rows_v.entropy_topk.to_numpy(), rows_v.entropy.to_numpy() / np.log(vocab),
                                       atol=2e-5)
    assert not np.allclose(table.entropy_topk, full_k.entropy_topk, atol=1e-3)  # K matters


def test_batch_size_chunking_and_fallback_agree(tiny, encoded, monkeypatch):
    a = scan_tokens(tiny, encoded, batch_size=1, progress=False)
    b = scan_tokens(tiny, encoded, batch_size=5, progress=False)
    monkeypatch.setattr(scanner, "CHUNK_ELEMENTS", 7 * 259)  # 7 positions per chunk
    c = scan_tokens(tiny, encoded, batch_size=3, progress=False)
    monkeypatch.setattr(scanner, "_head_and_decoder", lambda model: None)  # generic full-forward path
    d = scan_tokens(tiny, encoded, batch_size=3, progress=False)
    assert not d.attrs["scan"]["fast_head"]
    for other in (b, c, d):
        assert other.example_id.tolist() == a.example_id.tolist()
        np.testing.assert_allclose(other.logp, a.logp, atol=2e-5)


def test_bf16_autocast_is_close(tiny, encoded):
    a = scan_tokens(tiny, encoded, progress=False)
    b = scan_tokens(tiny, encoded, bf16_autocast=True, progress=False)
    assert np.abs(a.p - b.p).max() < 0.05
    assert b.attrs["scan"]["bf16_autocast"]


def test_cli_tiny_random_json_and_tables(tmp_path, capsys):
    out = tmp_path / "scan"
    rc = main(["tokens", "--model", "tiny-random", "--data", "medcalc-synth:4", "--format", "label",
               "--out", str(out), "--json", "-", "--n-boot", "100", "--thresholds", "0.001,0.2"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    for key in ("n_examples", "n_target_tokens", "s", "median_p", "frac_p_gt_0.2", "truncated_examples"):
        assert key in summary
    assert summary["n_examples"] == 4 and set(summary["s"]) == {"0.001", "0.2"}
    import pandas as pd

    table = pd.read_parquet(out / "tokens.parquet")
    assert len(table) == summary["n_target_tokens"]
    counts = table.assign(h=table.p < 0.2).groupby("example_id").h.sum()
    assert summary["s"]["0.2"]["mean"] == pytest.approx(counts.mean())
    assert json.loads((out / "summary.json").read_text())["n_examples"] == 4


def test_cli_malformed_file_names_the_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "a"}\n')
    rc = main(["tokens", "--model", "tiny-random", "--data", str(bad), "--json", "-"])
    assert rc == 2
    assert "bad.jsonl: line 2: missing field 'response'" in capsys.readouterr().err


@pytest.mark.shared
def test_cli_gguf_jsonl_matches_plain_transformers(tmp_path, capsys, monkeypatch):
    """Must-show (a): mean count of response tokens with p < 0.2, raw-mode contract, to 1e-5."""
    gguf = shared_file("models/stories260K.gguf")
    if gguf is None:
        pytest.skip("stories260K.gguf absent")
    monkeypatch.setenv("TALR_CACHE", str(tmp_path / "cache"))
    rows = [("Once upon a time, there was a little girl named Lily.", " She loved to play outside in the sun."),
            ("The dog ran to the park.", " He saw a big red ball and wanted to play with it."),
            ("Tom had a toy car.", " It was blue and fast. Tom was very happy."),
            ("One day, a bird flew into the garden.", " The bird sang a song and the flowers danced."),
            ("Mom said:", " Let us bake a cake for the party tomorrow!")]
    data = tmp_path / "stories.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in rows))
    rc = main(["tokens", "--model", str(gguf), "--data", str(data), "--template", "none", "--json", "-",
               "--n-boot", "100"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)

    # independent computation with plain transformers, straight from the GGUF file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name).eval()
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    counts, n_tokens, all_p = [], 0, []
    with torch.no_grad():
        for prompt, response in rows:
            p_ids = tok(prompt).input_ids
            r_ids = tok(response, add_special_tokens=False).input_ids
            logits = model(torch.tensor([p_ids + r_ids])).logits[0].double()
            logq = torch.log_softmax(logits, -1)
            probs = [logq[len(p_ids) + k - 1, t].exp().item() for k, t in enumerate(r_ids)]
            counts.append(sum(p < 0.2 for p in probs))
            n_tokens += len(r_ids)
            all_p += probs
    assert summary["n_target_tokens"] == n_tokens
    assert abs(summary["s"]["0.2"]["mean"] - float(np.mean(counts))) < 1e-5
    assert summary["median_p"] == pytest.approx(float(np.median(all_p)), abs=1e-5)


def test_length_batches_respect_both_limits():
    lengths = [5, 100, 7, 60, 60, 3, 40, 200, 9]
    batches = scanner.length_batches(lengths, batch_size=3, max_batch_tokens=130)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 3
        assert len(b) == 1 or max(lengths[i] for i in b) * len(b) <= 130
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(lengths, reverse=True)


def test_hardest_tokens_show_their_context(tiny, encoded):
    from talr_theory.tokens.stats import hardest_tokens

    table = scan_tokens(tiny, encoded, progress=False)
    hard = hardest_tokens(table, encoded, tiny.tokenizer, k=3, context=5)
    by_id = {e.example_id: e for e in encoded}
    for row in hard.itertuples():
        ids = by_id[row.example_id].input_ids
        assert ids[row.position] == row.token_id
        assert row.context == tiny.tokenizer.decode(ids[row.position - 5:row.position])
    assert hard.p.tolist() == sorted(table.p)[:3]
