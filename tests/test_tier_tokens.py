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


def test_confident_conflicts_recounted_from_the_stored_tokens(runs):
    result, _, _ = runs
    tok, cc = result.frames["tokens"], result.frames["conflicts"].set_index("name")
    assert {"entropy", "entropy_topk"} <= set(tok.columns)
    per = {}
    for name, table in tok.groupby("name"):
        hit = (table["p"] < TINY.conflict_p) & (table["entropy_topk"] < TINY.conflict_entropy)
        per[name] = hit.groupby(table["example_id"]).sum()
        assert cc.loc[name, "per_example"] == pytest.approx(per[name].mean())
        assert cc.loc[name, "ci_lo"] <= cc.loc[name, "per_example"] <= cc.loc[name, "ci_hi"]
    paired = cc.loc["medcalc-synth: CoT − label (paired)"]
    both = per["medcalc-synth/cot"].index.intersection(per["medcalc-synth/label"].index)
    assert len(both) == TINY.limit  # the same cases in both formats
    diff = per["medcalc-synth/cot"].loc[both] - per["medcalc-synth/label"].loc[both]
    assert paired["per_example"] == pytest.approx(diff.mean()) and paired["n_examples"] == len(both)


def test_entropy_vs_p_figure_names_the_quadrant(runs):
    import matplotlib

    matplotlib.use("Agg")
    result, _, _ = runs
    saved = {}
    tokens.figures(result, lambda fig, name: saved.setdefault(name, fig))
    fig = saved["tokens_entropy_vs_p"]
    titles = [ax.get_title() for ax in fig.axes]
    assert len(fig.axes) == 2 and all("confident conflicts per example" in t for t in titles)
    assert fig.axes[0].get_ylabel() == "top-K predictive entropy / ln K"
