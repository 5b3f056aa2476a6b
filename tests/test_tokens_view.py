"""Token view and base-vs-tuned comparison: the scanner's top-k option, the HTML page's data-p
contract, Δ log p and the paired change of s(θ), sweep checkpoints and the frac split by base."""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
import torch

from talr_theory.cli import main
from talr_theory.data.encode import encode_examples
from talr_theory.data.sft import load_sft
from talr_theory.models import load_model
from talr_theory.paths import shared_file
from talr_theory.tokens.compare import frac_above_by_base, paired_table, s_change
from talr_theory.tokens.scanner import scan_tokens
from talr_theory.tokens.view import delta_bin, p_bin, render_token_view, surface_texts

pytestmark = pytest.mark.usefixtures("one_thread")


class _Spans(HTMLParser):
    """Collects the attributes of every element carrying data-p, in document order."""

    def __init__(self):
        super().__init__()
        self.spans = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "data-p" in attrs:
            self.spans.append((tag, attrs))


def _spans(page: str) -> list:
    parser = _Spans()
    parser.feed(page)
    return parser.spans


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny-random:3")


@pytest.fixture(scope="module")
def encoded(tiny):
    exs = load_sft("medcalc-synth:3", format="label") + load_sft("medcalc-synth:2", format="cot", seed=1)
    return encode_examples(exs, tiny.tokenizer, max_length=400).examples


def test_scanner_top_k_rank_match_full_softmax(tiny, encoded, monkeypatch):
    from talr_theory.tokens import scanner

    plain = scan_tokens(tiny, encoded, batch_size=3, progress=False)
    table = scan_tokens(tiny, encoded, batch_size=3, progress=False, top_k=3)
    assert "rank" not in plain.columns and "top_ids" not in plain.columns  # off by default
    np.testing.assert_array_equal(table.logp, plain.logp)  # the option does not change p
    monkeypatch.setattr(scanner, "CHUNK_ELEMENTS", 5 * 259)  # several chunks per batch
    monkeypatch.setattr(scanner, "_head_and_decoder", lambda model: None)  # generic full-forward path
    generic = scan_tokens(tiny, encoded, batch_size=2, progress=False, top_k=3)
    assert generic.example_id.tolist() == table.example_id.tolist()
    assert generic["rank"].tolist() == table["rank"].tolist()
    assert [list(x) for x in generic.top_ids] == [list(x) for x in table.top_ids]
    by_id = {e.example_id: e for e in encoded}
    with torch.inference_mode():
        for ex_id, rows in table.groupby("example_id", sort=False):
            ids = by_id[ex_id].input_ids
            logq = torch.log_softmax(tiny.model(torch.tensor([ids])).logits[0].double(), -1)
            for r in rows.itertuples():
                row = logq[r.position - 1]
                assert r.rank == int((row > row[r.token_id]).sum()) + 1
                top = torch.topk(row, 3)
                assert list(r.top_ids) == top.indices.tolist()
                np.testing.assert_allclose(r.top_p, top.values.exp().numpy(), atol=2e-5)
                if r.rank == 1:
                    assert r.top_ids[0] == r.token_id


def test_colour_bins_follow_strict_thresholds():
    assert p_bin([0.0, 0.00999, 0.01, 0.1999, 0.2, 0.94, 0.95, 1.0]).tolist() == [0, 0, 1, 3, 4, 6, 7, 7]
    assert delta_bin([-5, -0.05, 0.0, 0.05, 0.1, 3]).tolist() == [0, 4, 4, 4, 5, 8]


def test_surface_texts_rebuild_the_decoded_text():
    loaded = load_model("tiny-random")
    ids = loaded.tokenizer("Weight 70 kg; height 1.75 m.").input_ids
    assert "".join(surface_texts(loaded.tokenizer, ids)) == loaded.tokenizer.decode(ids)


class _ByteTokenizer:
    """A byte-level tokenizer: each id is a byte string; decoding joins them and replaces broken UTF-8."""

    VOCAB = {1: b"T", 2: b" 37", 3: b"\xc2", 4: b"\xb0", 5: b"C", 6: b" \xe2", 7: b"\x82", 8: b"\xac"}

    def decode(self, ids):
        return b"".join(self.VOCAB[i] for i in ids).decode("utf-8", errors="replace")


@pytest.mark.parametrize("ids,expected", [
    ([1, 2, 3, 4, 5], ["T", " 37", "°", "", "C"]),  # "°" = C2 B0 over two tokens: shown once, on the first
    ([1, 6, 7, 8, 5], ["T", " €", "", "", "C"]),  # a 3-byte character after a space
    ([1, 3], ["T", "\ufffd"]),  # a lone lead byte at the end stays what it decodes to
    ([3, 1, 5], ["\ufffd", "T", "C"]),  # a lead byte followed by no continuation: tokens decoded alone
])
def test_surface_texts_merge_a_character_split_over_byte_tokens(ids, expected):
    tok = _ByteTokenizer()
    got = surface_texts(tok, ids)
    assert got == expected
    assert "".join(got) == tok.decode(ids)


def _cli(args, capsys):
    rc = main(args)
    assert rc == 0
    return json.loads(capsys.readouterr().out)


def _check_page_against_scan(page: str, table: pd.DataFrame, n_target_tokens: int) -> None:
    spans = _spans(page)
    assert len(spans) == n_target_tokens == len(table)
    assert all(tag == "span" for tag, _ in spans)
    # the page lists examples in scan order and tokens in position order, as the table does
    got = np.array([float(a["data-p"]) for _, a in spans])
    np.testing.assert_allclose(got, table["p"].to_numpy(), atol=1e-4, rtol=0)
    # colour class of each span is the bin of its probability
    classes = [a["class"].split() for _, a in spans]
    assert [c[1] for c in classes] == [f"c{b}" for b in p_bin(table["p"].to_numpy())]


def test_cli_html_data_p_equals_scanner(tmp_path, capsys):
    html_path, out = tmp_path / "view.html", tmp_path / "scan"
    summary = _cli(["tokens", "--model", "tiny-random", "--data", "medcalc-synth:5", "--format", "label",
                    "--html", str(html_path), "--out", str(out), "--json", "-", "--n-boot", "100"], capsys)
    page = html_path.read_text(encoding="utf-8")
    table = pd.read_parquet(out / "tokens.parquet")
    _check_page_against_scan(page, table, summary["n_target_tokens"])
    assert "<script src" not in page and "<link" not in page and "@import" not in page  # self-contained
    for ex_id in table["example_id"].unique():
        assert f">{ex_id} <small>" in page
    # the hover payload: one entry per token, with rank, top-3 and the s(θ) membership bits
    payload = json.loads(page.split('id="tokdata">', 1)[1].split("</script>", 1)[0])
    assert len(payload["tok"]) == len(table)
    th = payload["th"]
    for info, p, rank in zip(payload["tok"], table["p"], table["rank"]):
        assert info[0] == rank and len(info[1]) == 3
        assert info[2] == sum(1 << j for j, t in enumerate(th) if p < t)
    counts = table.assign(h=table.p < 0.2).groupby("example_id", sort=False).h.sum().tolist()
    assert [s[th.index(0.2)] for s in payload["s"]] == counts
    # the hover's entropy (full and top-K) and confident-conflict flag are the scan's, token by token
    spans = [a for _, a in _spans(page)]
    np.testing.assert_allclose([float(a["data-h"]) for a in spans], table["entropy"], rtol=1e-3)
    np.testing.assert_allclose([float(a["data-hk"]) for a in spans], table["entropy_topk"], rtol=1e-3)
    flags = (table["p"] < 0.2) & (table["entropy_topk"] < 0.5)
    assert [a["data-cc"] == "1" for a in spans] == flags.tolist()
    assert "top-K entropy / ln K" in page and "confident conflict" in page


@pytest.mark.shared
def test_cli_html_gguf_must_show(tmp_path, capsys, monkeypatch):
    """Must-show: data-p count equals n_target_tokens and each value is the scanner's p to 1e-4."""
    gguf = shared_file("models/stories260K.gguf")
    if gguf is None:
        pytest.skip("stories260K.gguf absent")
    monkeypatch.setenv("TALR_CACHE", str(tmp_path / "cache"))
    rows = [("Once upon a time, there was a little girl named Lily.", " She loved to play outside in the sun."),
            ("The dog ran to the park.", " He saw a big red ball and wanted to play with it.\nThen he went home."),
            ("Tom had a toy car.", " It was blue & fast <i>. Tom was very happy."),
            ("The sun was hot.", " It was 37 °C outside.")]
    data = tmp_path / "x.jsonl"
    data.write_text("".join(json.dumps({"q": p, "a": r}) + "\n" for p, r in rows))
    html_path = tmp_path / "out.html"
    summary = _cli(["tokens", "--model", str(gguf), "--data", str(data), "--prompt-field", "q", "--response-field",
                    "a", "--html", str(html_path), "--json", "-", "--n-boot", "100"], capsys)
    loaded = load_model(str(gguf))
    enc = encode_examples(load_sft(str(data), prompt_field="q", response_field="a"), loaded.tokenizer).examples
    table = scan_tokens(loaded, enc, progress=False)
    page = html_path.read_text(encoding="utf-8")
    _check_page_against_scan(page, table, summary["n_target_tokens"])
    assert "<i>" not in page and "&lt;" in page and "&amp;" in page  # response text is escaped
    shown = "".join(html.unescape(re.sub(r"<[^>]+>", "", sec.split("</div>", 1)[0]))
                    for sec in page.split('<div class="text">')[1:])
    assert "37 °C" in shown and "\ufffd" not in shown  # "°" split over byte tokens shown as one character
    # tokens --json reports entropy quantiles and confident conflicts with an interval
    q = summary["entropy"]["full_nats"]["quantiles"]
    assert 0 <= q["0.1"] <= q["0.5"] <= q["0.9"] <= np.log(loaded.model.config.vocab_size) + 1e-6
    cc = summary["confident_conflicts"]
    lo, hi = cc["per_example_ci"]
    assert lo <= cc["per_example"] <= hi and cc["n_examples"] == len(rows)


def test_compare_same_model_is_exactly_zero(tmp_path, capsys):
    out, html_path = tmp_path / "cmp", tmp_path / "delta.html"
    summary = _cli(["tokens", "--model", "tiny-random:5", "--compare-model", "tiny-random:5", "--data",
                    "medcalc-synth:4", "--format", "label", "--out", str(out), "--html", str(html_path),
                    "--json", "-", "--n-boot", "100"], capsys)
    paired = pd.read_parquet(out / "tokens_compare.parquet")
    assert len(paired) == summary["n_target_tokens"]
    assert (paired["dlogp"] == 0).all()
    assert set(summary["s_change"]) == {"0.05", "0.1", "0.2", "0.5"}
    for v in summary["s_change"].values():
        assert v["mean"] == 0 and v["ci_lo"] == 0 and v["ci_hi"] == 0
    assert summary["frac_p_gt_0.2_before"] == summary["frac_p_gt_0.2_after"]
    spans = _spans(html_path.read_text(encoding="utf-8"))
    assert len(spans) == len(paired)
    assert all(float(a["data-d"]) == 0 and a["class"].split()[1] == "c4" for _, a in spans)


def test_compare_two_models_matches_independent_scans(tmp_path, capsys, tiny, encoded):
    base = scan_tokens(tiny, encoded, progress=False)
    other = load_model("tiny-random:4")
    tuned = scan_tokens(other, encoded, progress=False)
    paired = paired_table(base, tuned)
    np.testing.assert_allclose(paired["dlogp"], tuned["logp"].to_numpy() - base["logp"].to_numpy())
    ch = s_change(base, tuned, thresholds=(0.002, 0.004), n_boot=300)
    for th in (0.002, 0.004):
        d = (tuned.assign(h=tuned.p < th).groupby("example_id", sort=False).h.sum()
             - base.assign(h=base.p < th).groupby("example_id", sort=False).h.sum())
        assert ch[th]["mean"] == pytest.approx(d.mean())
        assert ch[th]["ci_lo"] <= ch[th]["mean"] <= ch[th]["ci_hi"]
    # the CLI wires the same pieces: tuned p and Δ log p per token, on the base model's encoding
    out = tmp_path / "cmp"
    summary = _cli(["tokens", "--model", "tiny-random:3", "--compare-model", "tiny-random:4", "--data",
                    "medcalc-synth:3", "--format", "label", "--out", str(out), "--json", "-", "--n-boot", "100"],
                   capsys)
    cli = pd.read_parquet(out / "tokens_compare.parquet")
    assert summary["max_abs_dlogp"] > 0
    assert summary["mean_dlogp"] == pytest.approx(cli["dlogp"].mean())
    best = summary["movers"]["easier"][0]
    assert best["dlogp"] == pytest.approx(cli["dlogp"].max())


def test_paired_bootstrap_sees_a_constant_shift():
    """Every example gains exactly one hard token: the paired CI is [1, 1]; the counts themselves vary."""
    rng = np.random.default_rng(0)
    rows = []
    for e in range(30):
        n = int(rng.integers(5, 20))
        p = rng.uniform(0.3, 1.0, size=n)
        p[: int(rng.integers(0, 4))] = 0.05
        rows += [{"example_id": f"e{e}", "position": k + 1, "token_id": 7, "p": q, "logp": np.log(q)}
                 for k, q in enumerate(p)]
    base = pd.DataFrame(rows)
    tuned = base.copy()
    first_easy = tuned[tuned.p > 0.2].groupby("example_id").head(1).index
    tuned.loc[first_easy, "p"] = 0.1
    tuned["logp"] = np.log(tuned["p"])
    ch = s_change(base, tuned, thresholds=(0.2,), n_boot=500)[0.2]
    assert ch == {"mean": 1.0, "ci_lo": 1.0, "ci_hi": 1.0}


def test_paired_table_rejects_different_encodings(tiny, encoded):
    base = scan_tokens(tiny, encoded, progress=False)
    with pytest.raises(ValueError, match="same encoding"):
        paired_table(base, base.iloc[:-1])
    shifted = base.assign(token_id=base.token_id + 1)
    with pytest.raises(ValueError, match="same encoding"):
        paired_table(base, shifted)


def test_frac_above_by_base_splits_tokens():
    base = pd.DataFrame({"example_id": ["a"] * 5, "position": range(1, 6), "token_id": 1,
                         "p": [0.1, 0.2, 0.5, 0.9, 0.05], "logp": 0.0})
    now = base.assign(p=[0.3, 0.1, 0.1, 0.95, 0.5])
    got = frac_above_by_base(base, now, 0.2)
    # started hard (p ≤ 0.2): positions 1, 2, 5 -> now easy: 1, 5; started easy: 3, 4 -> now easy: 4
    assert got == {"base_hard": pytest.approx(2 / 3), "base_easy": 0.5, "n_base_hard": 3, "n_base_easy": 2}


def test_render_refuses_pages_over_the_limit(tiny, encoded, monkeypatch):
    from talr_theory.tokens import view

    table = scan_tokens(tiny, encoded, progress=False, top_k=3)
    monkeypatch.setattr(view, "MAX_TOKENS", len(table) - 1)
    with pytest.raises(ValueError, match="--limit"):
        render_token_view(table, encoded, tiny.tokenizer, {"n_examples": 5, "n_target_tokens": len(table),
                                                            "s": {}, "median_p": 0.5})


def test_sweep_checkpoints_and_frac_split(tmp_path, capsys):
    """Saved final models reproduce the sweep's last held-out measurement when loaded as a model spec,
    and the split of frac p > 0.2 by base difficulty recombines to the overall fraction."""
    words = ["alpha", "beta", "gamma", "delta", "omega", "kappa", "sigma", "theta"]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Q{i}: say {words[i % 8]}.",
                                        "response": f" {words[(i * 5) % 8]} {i % 7}"}) + "\n" for i in range(16)))
    out = tmp_path / "sweep"
    rc = main(["sweep", "--model", "tiny-random", "--data", str(data), "--methods", "sft,lora", "--lrs", "3e-2",
               "--seeds", "0", "--steps", "6", "--eval-every", "3", "--batch-size", "4", "--n-train", "8",
               "--n-eval", "4", "--general-text", "none", "--n-samples", "0", "--train-probe", "4",
               "--save-checkpoints", "--frac-by-base", "--out", str(out), "--no-progress", "--no-figures", "--json", "-"])
    assert rc == 0
    capsys.readouterr()
    frame = pd.read_parquet(out / "results.parquet")
    n = frame["n_base_hard_tokens"]
    # at step 0 the model is the base: no base-hard token is easy, every base-easy token is
    start = frame[frame.step == 0]
    assert (start["frac_p_gt_0.2_base_hard"] == 0).all()
    assert start["frac_p_gt_0.2_base_easy"].isin([1.0]).all() or start["frac_p_gt_0.2_base_easy"].isna().all()
    easy = frame["frac_p_gt_0.2_base_easy"].fillna(0)  # NaN when no token started easy
    for method in ("sft", "lora"):
        ckpt = out / "checkpoints" / f"{method}_lr0.03_seed0"
        assert (ckpt / "config.json").is_file()
        last = frame[(frame.method == method)].sort_values("step").iloc[-1]
        summary = _cli(["tokens", "--model", "tiny-random", "--compare-model", str(ckpt), "--data", str(data),
                        "--split", "eval", "--limit", "4", "--json", "-", "--n-boot", "100"], capsys)
        n_total = summary["n_target_tokens"]
        # the checkpoint is the final model: its held-out NLL and frac p > 0.2 are the last row's
        paired_nll = summary["mean_nll"] - summary["mean_dlogp"]
        assert paired_nll == pytest.approx(last["domain_nll"], abs=1e-4)
        assert summary["frac_p_gt_0.2_after"] == pytest.approx(last["frac_p_gt_0.2"])
        assert summary["frac_p_gt_0.2_before"] == pytest.approx(
            frame[(frame.method == method) & (frame.step == 0)]["frac_p_gt_0.2"].item())
        recombined = (last["n_base_hard_tokens"] * last["frac_p_gt_0.2_base_hard"]
                      + (n_total - last["n_base_hard_tokens"]) * easy[last.name]) / n_total
        assert recombined == pytest.approx(last["frac_p_gt_0.2"])
    assert (n > 0).all()
