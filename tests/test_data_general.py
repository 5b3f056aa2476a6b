"""The shipped general-text corpora: the default P1 text and probe passages never read ../shared."""

from __future__ import annotations

import pytest

from talr_theory.data import general
from talr_theory.data.general import CORPORA_DIR, SHIPPED, load_general_text, load_passages
from talr_theory.models import build_byte_tokenizer


@pytest.fixture
def no_shared(monkeypatch):
    """Any look into ../shared fails the test: the default must not consult it."""
    def refuse(relative):
        raise AssertionError(f"../shared consulted for {relative}")

    monkeypatch.setattr(general, "shared_file", refuse)


def test_default_text_is_the_shipped_wikitext_slice(no_shared):
    tok = build_byte_tokenizer()
    text = load_general_text(tok, "auto", n_blocks=6, block_len=40, seed=3)
    assert text.source.startswith("wikitext2-slice") and not text.is_fallback
    assert text.n_blocks == 6 and text.block_len == 40
    assert text.summary() == f"6 blocks of 40 tokens of {text.source}"
    assert "/" not in text.source  # words, never a path
    first = (CORPORA_DIR / SHIPPED["wikitext2-slice"][0]).read_text(encoding="utf-8")
    decoded = tok.decode(text.examples[0].input_ids[1:])
    assert decoded in first  # the block is a piece of the shipped file
    again = load_general_text(tok, "wikitext2-slice", n_blocks=6, block_len=40, seed=3)
    assert [e.input_ids for e in again.examples] == [e.input_ids for e in text.examples]


def test_probe_passages_default_to_the_shipped_shakespeare_slice(no_shared):
    tok = build_byte_tokenizer()
    passages = load_passages(tok, n_passages=4, passage_len=32, seed=1)
    assert passages.source.startswith("shakespeare-slice") and passages.n_blocks == 4
    shakespeare = (CORPORA_DIR / SHIPPED["shakespeare-slice"][0]).read_text(encoding="utf-8")
    assert all(tok.decode(e.input_ids[1:]) in shakespeare for e in passages.examples)


def test_shipped_files_are_a_few_hundred_kb_with_their_licence_beside_them():
    sizes = {name: (CORPORA_DIR / file).stat().st_size for name, (file, _) in SHIPPED.items()}
    assert 100_000 <= sizes["wikitext2-slice"] <= 600_000
    readme = (CORPORA_DIR / "README.md").read_text(encoding="utf-8")
    assert "CC BY-SA 3.0" in readme and "Merity" in readme and "public domain" in readme
    for file, _ in SHIPPED.values():
        assert file in readme


def test_shared_files_only_by_name_and_user_files_by_file_name(tmp_path, monkeypatch):
    tok = build_byte_tokenizer()
    monkeypatch.setattr(general, "shared_file", lambda relative: None)
    with pytest.raises(FileNotFoundError, match="needs ../shared/data/general-text/wikitext-2-valid.txt"):
        load_general_text(tok, "wikitext", n_blocks=2, block_len=16)
    own = tmp_path / "mine.txt"
    own.write_text("A line of plain text that is long enough.\n" * 20, encoding="utf-8")
    text = load_general_text(tok, str(own), n_blocks=2, block_len=16)
    assert text.source == "user file mine.txt" and str(tmp_path) not in text.source
    with pytest.raises(FileNotFoundError, match="expected 'auto', 'wikitext2-slice'"):
        load_general_text(tok, str(tmp_path / "absent.txt"))
