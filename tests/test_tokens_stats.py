"""s(θ), summaries and contrasts on hand-built token tables, checked against direct counting."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from talr_theory.stats import bootstrap_ci
from talr_theory.tokens.stats import contrast, hardest_tokens, per_example_counts, s_statistics, token_summary


def _table(seed=0, n_examples=30):
    rng = np.random.default_rng(seed)
    rows = []
    for e in range(n_examples):
        n = int(rng.integers(1, 40))
        p = np.where(rng.random(n) < 0.2, rng.random(n) * 0.3, 1 - rng.random(n) * 0.05)
        for t, pv in enumerate(p):
            rows.append({"example_id": f"ex{e}", "position": 10 + t, "p": float(pv), "logp": float(np.log(pv))})
    return pd.DataFrame(rows)


def test_s_matches_direct_count_and_ci_brackets_it():
    table = _table()
    s = s_statistics(table, thresholds=(0.05, 0.2), n_boot=300, seed=1)
    for th in (0.05, 0.2):
        direct = np.mean([sum(1 for p in g.p if p < th) for _, g in table.groupby("example_id")])
        assert s[th]["mean"] == pytest.approx(direct)
        # the interval resamples examples (not tokens): the same bootstrap over per-example counts
        per_example = [sum(1 for p in g.p if p < th) for _, g in table.groupby("example_id", sort=False)]
        assert s[th]["ci"] == pytest.approx(bootstrap_ci(np.array(per_example, float), n_boot=300, seed=1))
    assert s[0.05]["mean"] <= s[0.2]["mean"]


def test_per_example_counts_keep_order_and_totals():
    table = _table(seed=2, n_examples=5)
    counts = per_example_counts(table, thresholds=(0.5,))
    assert counts.example_id.tolist() == [f"ex{i}" for i in range(5)]
    assert counts.n_tokens.sum() == len(table)
    assert counts["n_p_lt_0.5"].sum() == int((table.p < 0.5).sum())


def test_summary_numbers():
    table = _table(seed=3)
    summ = token_summary(table, n_boot=200)
    assert summ["n_target_tokens"] == len(table) and summ["n_examples"] == 30
    assert summ["median_p"] == pytest.approx(float(np.median(table.p)))
    assert summ["frac_p_gt_0.2"] == pytest.approx(float((table.p > 0.2).mean()))
    # ratio of per-example sums, resampling examples
    g = table.groupby("example_id", sort=False)["p"]
    units = np.column_stack([g.apply(lambda x: (x > 0.2).sum()).to_numpy(float), g.size().to_numpy(float)])
    expected = bootstrap_ci(units, statistic=lambda u: u[:, 0].sum() / u[:, 1].sum(), n_boot=200, seed=0)
    assert summ["frac_p_gt_0.2_ci"] == pytest.approx(expected)
    assert summ["quantiles_p"]["0.25"] <= summ["quantiles_p"]["0.5"] <= summ["quantiles_p"]["0.75"]


def test_hardest_and_contrast_and_errors():
    table = _table(seed=4)
    hard = hardest_tokens(table, k=5)
    assert hard.p.tolist() == sorted(table.p)[:5]
    easy = table.assign(p=0.99)
    frame = contrast({"hard": table, "easy": easy}, thresholds=(0.2,), n_boot=100)
    by = frame.set_index("name")
    assert by.loc["easy", "s"] == 0 and by.loc["hard", "s"] > 0
    with pytest.raises(ValueError, match="empty"):
        s_statistics(table.iloc[:0])
    with pytest.raises(ValueError, match="lacks column"):
        s_statistics(table.drop(columns="p"))


def _conflict_table():
    """Three examples whose confident conflicts (p < 0.2 and top-K entropy < 0.5) are counted by hand."""
    rows = [  # (example, p, entropy_topk): the conflicts are marked "*"
        ("a", 0.05, 0.10),  # *
        ("a", 0.10, 0.49),  # *
        ("a", 0.10, 0.50),  # hard but uncertain (entropy not < 0.5)
        ("a", 0.90, 0.05),  # confident and right
        ("b", 0.20, 0.10),  # p not < 0.2
        ("b", 0.01, 0.90),  # hard, uncertain
        ("c", 0.19, 0.00),  # *
    ]
    return pd.DataFrame([{"example_id": e, "p": p, "logp": np.log(p), "entropy": 2.0 * h, "entropy_topk": h}
                         for e, p, h in rows])


def test_confident_conflicts_hand_counted():
    from talr_theory.tokens.stats import confident_conflicts, per_example_conflicts

    table = _conflict_table()
    assert per_example_conflicts(table).to_dict() == {"a": 2, "b": 0, "c": 1}
    cc = confident_conflicts(table, n_boot=200, seed=0)
    assert cc["total"] == 3 and cc["per_example"] == pytest.approx(1.0)
    assert cc["frac_tokens"] == pytest.approx(3 / 7)
    assert cc["frac_of_hard"] == pytest.approx(3 / 5)  # hard tokens: p < 0.2 -> five of them
    # the interval resamples examples: the bootstrap over the per-example counts (2, 0, 1)
    assert cc["per_example_ci"] == pytest.approx(list(bootstrap_ci(np.array([2.0, 0.0, 1.0]), n_boot=200, seed=0)))
    # thresholds are parameters: a looser entropy cut adds the uncertain hard token of "a" (0.50 < 0.6)
    assert per_example_conflicts(table, 0.2, 0.6).to_dict() == {"a": 3, "b": 0, "c": 1}
    with pytest.raises(ValueError, match="entropy_max"):
        confident_conflicts(table, 0.2, 0.0)
    with pytest.raises(ValueError, match="with_entropy"):
        confident_conflicts(table.drop(columns="entropy_topk"))


def test_entropy_summary_quantiles():
    from talr_theory.tokens.stats import entropy_summary

    table = _conflict_table()
    out = entropy_summary(table)
    h = np.array([0.10, 0.49, 0.50, 0.05, 0.10, 0.90, 0.00])
    assert out["topk_normalized"]["quantiles"]["0.5"] == pytest.approx(0.10)
    assert out["full_nats"]["mean"] == pytest.approx(2.0 * h.mean())


@pytest.mark.parametrize("flag,value", [("--entropy-k", "1"), ("--conflict-p", "2"), ("--conflict-entropy", "0")])
def test_tokens_entropy_flags_rejected_before_any_work(flag, value, capsys):
    import time

    from talr_theory.cli import main

    t0 = time.perf_counter()
    try:  # argparse refuses the value (SystemExit 2) before the command runs
        rc = main(["tokens", "--model", "tiny-random", "--data", "medcalc-synth:2", flag, value])
    except SystemExit as exc:
        rc = exc.code
    assert rc == 2
    assert time.perf_counter() - t0 < 5
    assert flag in capsys.readouterr().err
