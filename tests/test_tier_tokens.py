"""The token-difficulty stage: contract, persisted scans, and s(θ) recomputed from its own token table."""

from __future__ import annotations

import dataclasses

import pytest

from talr_theory.tiers import tokens
from talr_theory.tokens.stats import per_example_counts

TINY = dataclasses.replace(tokens.Config.quick(), model="tiny-random", limit=3, max_length=512, n_boot=50)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    return tokens.run(TINY, out, progress=False), tokens.run(TINY, out, progress=False), out


def test_contract_no_verdicts_and_tables(runs):
    result, _, _ = runs
    assert result.tier == "tokens" and result.verdicts == []
    assert set(result.frames["contrast"]["name"]) == {"medcalc-synth/cot", "medcalc-synth/label"}
    assert result.info["report_tables"] and all(v in result.frames for v in result.info["report_tables"].values())


def test_s_is_the_count_of_the_stored_tokens(runs):
    result, _, _ = runs
    con, tok = result.frames["contrast"], result.frames["tokens"]
    for name, table in tok.groupby("name"):
        counts = per_example_counts(table, TINY.thresholds)
        for th in TINY.thresholds:
            row = con[(con["name"] == name) & (con["threshold"] == th)].iloc[0]
            assert row["s"] == pytest.approx(counts[f"n_p_lt_{th:g}"].mean())


def test_rerun_reads_the_persisted_scans(runs):
    first, again, out = runs
    assert len(list((out / "results").glob("tokens-*/*.parquet"))) == 2
    assert again.frames["contrast"].equals(first.frames["contrast"])
