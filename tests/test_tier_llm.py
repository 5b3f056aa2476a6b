"""The real-model tier: its pieces (KL, tail model, probes, masks, λ_max interpolation), its claim computations on
constructed frames with known answers (and one flip per claim), and the stage protocol on tiny-random."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch

from talr_theory.data.encode import IGNORE, EncodedExample, collate


@pytest.fixture(scope="module")
def tiny():
    from talr_theory.models import load_model

    return load_model("tiny-random")


def _perturbed(model, scale=0.05, seed=0):
    moved = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in moved.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return moved


def test_exact_kl_is_zero_at_base_and_matches_brute_force(tiny, one_thread):
    from talr_theory.training.evaluation import exact_kl, kl_summary, next_token_log_probs

    exs = [EncodedExample("a", [1, 5, 9, 12, 7], [IGNORE, 5, 9, 12, 7]),
           EncodedExample("b", [1, 3, 4], [IGNORE, IGNORE, 4])]
    base = next_token_log_probs(tiny.model, exs, pad_id=0, batch_size=2)
    assert np.array_equal(exact_kl(tiny.model, exs, base, pad_id=0), np.zeros(2))
    moved = _perturbed(tiny.model)
    kl = exact_kl(moved, exs, base, pad_id=0, batch_size=1)
    # brute force: one unpadded forward per example, float64 softmax over the vocabulary at each target position
    for k, ex in enumerate(exs):
        ids = torch.tensor([ex.input_ids])
        with torch.no_grad():
            p = torch.softmax(tiny.model(input_ids=ids).logits[0].double(), -1)
            q = torch.softmax(moved(input_ids=ids).logits[0].double(), -1)
        want = sum(float((p[t] * (p[t].log() - q[t].log())).sum()) for t in range(len(ex.labels) - 1)
                   if ex.labels[t + 1] != IGNORE)
        assert kl[k] == pytest.approx(want, rel=1e-4, abs=1e-7)
    assert kl.min() > 0
    summ = kl_summary(kl, np.array([4, 1]))
    assert summ["kl_base_se"] == pytest.approx(kl.std(ddof=1) / math.sqrt(2))
    assert summ["kl_base_per_token"] == pytest.approx(kl.mean() / 2.5)


def test_tail_model_equals_full_model_on_real_positions(tiny, one_thread):
    from talr_theory.training.tail import TailLM

    tail = TailLM(tiny.model, 1)
    batch = collate([EncodedExample("a", [1, 5, 9, 12, 7, 8], [IGNORE] * 6), EncodedExample("b", [1, 3, 4], [IGNORE] * 3)], 0)
    with torch.no_grad():
        full = tiny.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        part = tail(batch["input_ids"], batch["attention_mask"]).logits
    real = batch["attention_mask"].bool()
    assert torch.allclose(full[real], part[real], atol=1e-5)
    # only the tail's blocks and norm train; the head (tied embeddings) stays frozen
    names = [n for n, p in tail.named_parameters() if p.requires_grad]
    assert names and all(".layers." in n or ".norm." in n for n in names)
    assert len(tail.inner.model.layers) == 1


def test_tail_prefix_pass_and_sparse_head_equal_the_full_model(tiny, one_thread):
    """The prefix pass stops at block L - k and the head runs only at registered positions: same logits there."""
    from talr_theory.training.tail import TailLM

    exs = [EncodedExample("a", [1, 5, 9, 12, 7, 8], [IGNORE, IGNORE, IGNORE, 12, 7, 8]),
           EncodedExample("b", [1, 3, 4], [IGNORE, IGNORE, 4])]
    batch = collate(exs, 0)
    tail = TailLM(tiny.model, 1)
    tail.read_positions(exs)
    assert tail.reads[(1, 3, 4)] == [1] and tail.reads[(1, 5, 9, 12, 7, 8)] == [2, 3, 4]
    with torch.no_grad():
        full = tiny.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        part = tail(batch["input_ids"], batch["attention_mask"]).logits
    for i, ex in enumerate(exs):
        read = tail.reads[tuple(ex.input_ids)]
        assert torch.allclose(part[i, read], full[i, read], atol=1e-5)
        others = [t for t in range(len(ex.input_ids)) if t not in read]
        assert (part[i, others] == 0).all()  # never computed


def _frozen_prefix_copy(model, n_blocks):
    full = copy.deepcopy(model)
    for p in full.parameters():
        p.requires_grad_(False)
    for layer in list(full.model.layers)[-n_blocks:]:
        layer.requires_grad_(True)
    full.model.norm.requires_grad_(True)
    return full


def test_cached_prefix_training_run_equals_the_uncached_run(tiny, one_thread):
    """A training run on the tail (cached prefix, sparse head) equals the full model with a frozen prefix."""
    from talr_theory.training.config import TrainConfig
    from talr_theory.training.core import train
    from talr_theory.training.tail import TailLM

    # rows of different lengths and supervised counts, so the compact layout has empty slots
    exs = [EncodedExample(f"e{k}", [1, 5 + k, 9, 12 + k, 7, 8][:6 - k % 3],
                          [IGNORE, IGNORE, IGNORE if k % 2 else 9, 12 + k, 7, 8][:6 - k % 3]) for k in range(6)]
    for method in ("sft", "talr", "eaft", "asft", "truncate-hard"):
        # truncate-hard keeps tokens with p ≥ θ; a random model gives every token p ≈ 1/V, so θ sits below that
        tc = TrainConfig(method=method, lr=1e-2, steps=4, batch_size=3, eval_every=2, seed=3, truncate_theta=1e-6)
        tail = TailLM(tiny.model, 1)
        tail.read_positions(exs)
        tail.compact_eval = method == "asft"  # ASFT's frozen reference then answers in the compact layout too
        a = train(tail, exs, tc, pad_id=0, progress=False)
        b = train(_frozen_prefix_copy(tiny.model, 1), exs, tc, pad_id=0, progress=False)
        assert [r["loss"] for r in a.log] == pytest.approx([r["loss"] for r in b.log], rel=1e-5)
        batch = collate(exs, 0)
        tail.compact_eval = False
        with torch.no_grad():
            la = a.model(batch["input_ids"], batch["attention_mask"]).logits
            lb = b.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        for i, ex in enumerate(exs):
            read = tail.reads[tuple(ex.input_ids)]
            assert torch.allclose(la[i, read], lb[i, read], atol=1e-4)
        assert not torch.allclose(lb, tiny.model(input_ids=batch["input_ids"],
                                                 attention_mask=batch["attention_mask"]).logits)  # it trained


def test_compact_labels_align_with_the_read_positions_and_refuse_an_unread_label():
    from talr_theory.training.tail import compact_labels

    labels = torch.tensor([[IGNORE, IGNORE, 7, 8, IGNORE], [IGNORE, 4, IGNORE, IGNORE, IGNORE]])
    positions = torch.tensor([[1, 2], [0, -1]])  # row 0 reads t = 1, 2 (labels 7, 8); row 1 reads t = 0 (label 4)
    assert compact_labels(labels, positions).tolist() == [[IGNORE, 7, 8], [IGNORE, 4, IGNORE]]
    with pytest.raises(ValueError, match="cover 2 of 3"):
        compact_labels(labels, torch.tensor([[1, -1], [0, -1]]))


def test_probe_group_nests_insertions_and_supervises_easy_tokens():
    from talr_theory.tiers.llm import probe_group

    rng = np.random.default_rng(0)
    passage = list(range(10, 70))
    base_p = np.where(np.arange(60) % 7 == 3, 0.5, 0.99)  # a few tokens are not easy
    probes = probe_group(passage, 1, base_p, (1, 2, 4, 8), np.arange(100, 200), rng, 0.9, group=0)
    start = 1 + 60
    orig = [1] + passage + passage
    assert probes[0].input_ids == orig
    changed = {s: {i for i, (a, b) in enumerate(zip(ex.input_ids, orig)) if a != b} for s, ex in probes.items()}
    assert [len(changed[s]) for s in (0, 1, 2, 4, 8)] == [0, 1, 2, 4, 8]
    assert changed[1] < changed[2] < changed[4] < changed[8]
    assert all(i >= start for i in changed[8])  # only the second copy is touched
    for s, ex in probes.items():
        sup = {i for i, lab in enumerate(ex.labels) if lab != IGNORE}
        easy = {start + j for j in range(60) if base_p[j] > 0.9}
        assert sup == easy | changed[s] | {i + 1 for i in changed[s]}
        assert all(ex.labels[i] == ex.input_ids[i] for i in sup)
        assert all(base_p[i - start] > 0.9 and base_p[i + 1 - start] > 0.9 for i in changed[s])
    with pytest.raises(ValueError, match="easy sites"):
        probe_group(passage[:10], 1, base_p[:10], (1, 8), np.arange(100, 200), rng, 0.9, group=1)


def test_hard_and_easy_masks_partition_the_supervised_tokens():
    from talr_theory.tiers.llm import mask_labels

    exs = [EncodedExample("a", [1, 2, 3, 4, 5], [IGNORE, IGNORE, 3, 4, 5]), EncodedExample("b", [1, 6, 7], [IGNORE, 6, 7])]
    p = pd.DataFrame({"example_id": ["a", "a", "a", "b", "b"], "position": [2, 3, 4, 1, 2],
                      "p": [0.1, 0.7, 0.5, 0.9, 0.95]})
    hard = mask_labels(exs, p, 0.5, "hard")
    easy = mask_labels(exs, p, 0.5, "easy")
    assert [e.example_id for e in hard] == ["a-hard"]  # b has no hard token: dropped
    assert hard[0].labels == [IGNORE, IGNORE, 3, IGNORE, IGNORE]
    assert easy[1].labels == [IGNORE, 6, 7] and easy[0].labels == [IGNORE, IGNORE, IGNORE, 4, 5]
    with pytest.raises(ValueError):
        mask_labels(exs, p, 0.5, "medium")


def test_lambda_max_from_grid_is_exact_for_a_power_law_and_never_uses_the_origin():
    from talr_theory.tiers.llm import lambda_max_from_grid

    lams = 1e-3 * 3.0 ** np.arange(8)
    dl = 5.0 * lams**2
    for eps in (1e-4, 1e-3, 1e-2):
        assert lambda_max_from_grid(lams, dl, eps) == pytest.approx(math.sqrt(eps / 5.0), rel=1e-9)
    assert math.isnan(lambda_max_from_grid(lams, dl, 1e-9))  # first grid point already above ε
    assert math.isnan(lambda_max_from_grid(lams, dl, 1e9))   # never reached


def test_facts_domain_answers_are_located_and_templates_held_out(tiny):
    from talr_theory.data.encode import encode_examples
    from talr_theory.data.facts import answer_spans
    from talr_theory.data.sft import load_sft

    train, held = load_sft("facts:9", split="train"), load_sft("facts:9", split="eval")
    assert len(train) == 18 and len(held) == 9
    assert {e.meta["template"] for e in train} == {0, 1} and {e.meta["template"] for e in held} == {2}
    assert {e.meta["fact_id"] for e in train} == {e.meta["fact_id"] for e in held}
    enc = encode_examples(held, tiny.tokenizer).examples
    for ex, e, (a, b) in zip(held, enc, answer_spans(held, enc, tiny.tokenizer)):
        assert tiny.tokenizer.decode(e.input_ids[a:b]).strip() == ex.meta["answer"]
        assert all(lab != IGNORE for lab in e.labels[a:b])
    with pytest.raises(ValueError, match="facts:N"):
        load_sft("facts:many")


def test_facts_rationale_format_holds_the_same_answer_span(tiny):
    from talr_theory.data.encode import encode_examples
    from talr_theory.data.facts import answer_spans, load_facts

    label, rat = load_facts(6, split="eval"), load_facts(6, split="eval", response="rationale")
    assert [e.meta["answer"] for e in label] == [e.meta["answer"] for e in rat]
    for a, b in zip(label, rat):
        assert b.response.endswith(a.response) and len(b.response) > len(a.response)
    enc = encode_examples(rat, tiny.tokenizer).examples
    for ex, e, (lo, hi) in zip(rat, enc, answer_spans(rat, enc, tiny.tokenizer)):
        assert tiny.tokenizer.decode(e.input_ids[lo:hi]).strip() == ex.meta["answer"]
    with pytest.raises(ValueError, match="response format"):
        load_facts(3, response="cot")




# ---------------------------------------------------------------------------------------------
# Claim computations on constructed frames (answers known in advance)


def test_paired_difference_and_ratio_of_means_by_hand():
    from talr_theory.tiers.llm import compare as cmp

    a = {0: np.array([1.0, 2.0, 3.0]), 1: np.array([2.0, 2.0, np.nan]), 7: np.array([9.0, 9.0, 9.0])}
    b = {0: np.array([0.0, 0.0, 0.0]), 1: np.array([1.0, 1.0, 1.0])}
    d = cmp.paired_difference(a, b, n_boot=200)
    # seed 7 has no partner; seed 1's NaN unit is dropped and counted: differences 1, 2, 3, 1, 1
    assert d.estimate == pytest.approx(8 / 5) and d.n_seeds == 2 and d.n_units == 2 and d.n_dropped == 1
    assert d.ci[0] <= d.estimate <= d.ci[1]
    r = cmp.paired_ratio_of_means({0: np.array([-1.0, 3.0])}, {0: np.array([1.0, 1.0])}, n_boot=200)
    assert r.estimate == pytest.approx(1.0) and r.n_dropped == 0  # a ΔL ≤ 0 stays in (no log of a ratio)
    const = cmp.paired_difference({s: np.full(12, 0.25) for s in range(5)}, {s: np.zeros(12) for s in range(5)})
    assert const.ci == pytest.approx((0.25, 0.25))
    with pytest.raises(ValueError, match="same units"):
        cmp.pair({0: np.ones(3)}, {0: np.ones(4)})


def _run(accs, units, **kw):
    return pd.DataFrame({"step": list(range(len(accs))), "accuracy": accs, "units_kl": units, "status": "ok", **kw})


def test_units_at_accuracy_interpolates_between_measured_checkpoints_only():
    from talr_theory.tiers.llm.compare import units_at_accuracy

    run = _run([0.0, 0.2, 0.6, 0.8], [[0, 0], [1, 1], [3, 5], [4, 4]])
    assert units_at_accuracy(run, 0.4, "units_kl") == pytest.approx([2.0, 3.0])
    assert units_at_accuracy(run, 0.6, "units_kl") == pytest.approx([3.0, 5.0])
    assert units_at_accuracy(run, 0.1, "units_kl") is None   # passed before the first measured checkpoint
    assert units_at_accuracy(run, 0.9, "units_kl") is None   # never reached


def test_frontier_point_picks_the_least_costly_lr_that_every_seed_brackets():
    from talr_theory.tiers.llm.compare import frontier_point

    rows = []
    for seed in (0, 1):
        rows.append(_run([0.0, 0.2, 0.6], [[0], [1], [3]], lr=1e-3, seed=seed, method="sft"))   # ΔL 2 at 0.4
        rows.append(_run([0.0, 0.2, 0.6], [[0], [0.5], [1.5]], lr=2e-3, seed=seed, method="sft"))  # ΔL 1 at 0.4
        # the cheapest LR, but seed 1 never reaches 0.4: it may not compete
        rows.append(_run([0.0, 0.2, 0.6 if seed == 0 else 0.3], [[0], [0.1], [0.2]], lr=4e-3, seed=seed, method="sft"))
    lr, units = frontier_point(pd.concat(rows), 0.4, "units_kl", method="sft")
    assert lr == 2e-3 and units[0] == pytest.approx([1.0]) and set(units) == {0, 1}


def test_selection_rule_takes_the_best_accuracy_within_the_tolerance():
    from talr_theory.tiers.llm.compare import selection_rule

    t = pd.DataFrame({"method": ["sft"] * 4 + ["talr"] * 2, "lr": [1, 1, 2, 2, 1, 1], "step": [0, 1, 0, 1, 0, 1],
                      "seed": 0, "epoch": [0, 1, 0, 1, 0, 1], "status": "ok",
                      "accuracy": [0.1, 0.5, 0.1, 0.9, 0.1, 0.6], "dL_kl": [0.0, 0.2, 0.0, 0.8, 0.0, 0.1]})
    best = selection_rule(t, 0.3, "dL_kl").set_index("method")
    assert best.loc["sft", "accuracy"] == 0.5 and best.loc["sft", "lr"] == 1
    assert best.loc["talr", "accuracy"] == 0.6
    assert selection_rule(t, 1.0, "dL_kl").set_index("method").loc["sft", "accuracy"] == 0.9


def _final_frame(spec: dict, n_units: int = 12, seeds=range(5)) -> pd.DataFrame:
    """Last-checkpoint rows: spec maps (method, lr, optimizer, format) -> (accuracy per unit, ΔL per unit)."""
    rng = np.random.default_rng(0)
    rows = []
    for (method, lr, opt, fmt), (acc, dl) in spec.items():
        for s in seeds:
            noise = rng.normal(0, 0.01, n_units)
            kl = list(dl * (1 + np.arange(n_units) / n_units) + noise)
            rows.append({"method": method, "lr": lr, "pair_lr": lr, "optimizer": opt, "format": fmt, "seed": s,
                         "step": 10, "epoch": 10, "status": "ok", "accuracy": acc,
                         "units_acc": [1.0] * round(acc * n_units) + [0.0] * (n_units - round(acc * n_units)),
                         "units_kl": kl, "units_text": kl})
    return pd.DataFrame(rows)


def _verdicts(vs, claim, protocol="paper"):
    return [v for v in vs if v.claim.split("[")[0] == claim and v.protocol == protocol]


def test_talr_paper_protocol_verdicts_flip_with_the_data():
    from talr_theory.tiers.llm import claims
    from talr_theory.tiers.llm.config import Config

    cfg = Config(lrs=(1e-4, 4e-4), n_boot=300)
    good = _final_frame({("sft", 4e-4, "adamw", "label"): (0.5, 2.0), ("talr", 4e-4, "adamw", "label"): (0.5, 1.0)})
    vs = claims.talr_paper(good, cfg)
    ratio = _verdicts(vs, "talr_vs_sft")
    assert len(ratio) == 2 and all(v.verdict == "agrees" and v.n_seeds == 5 for v in ratio)
    assert ratio[0].estimate == pytest.approx(0.5, rel=0.02)
    dom = _verdicts(vs, "talr_comparable_domain")[0]
    assert dom.estimate == pytest.approx(0.0) and dom.verdict == "agrees" and "Last 4 blocks" in dom.note
    bad = _final_frame({("sft", 4e-4, "adamw", "label"): (0.5, 1.0), ("talr", 4e-4, "adamw", "label"): (0.25, 2.0)})
    vs = claims.talr_paper(bad, cfg)
    assert all(v.verdict == "disagrees" for v in vs)
    assert _verdicts(vs, "talr_comparable_domain")[0].estimate == pytest.approx(-0.25)


def test_every_claimed_objective_gets_a_paper_protocol_verdict_and_unclaimed_ones_none():
    from talr_theory.tiers.llm import claims
    from talr_theory.tiers.llm.config import Config

    cfg = Config(lrs=(1e-4, 4e-4), n_boot=300)
    spec = {("sft", 4e-4, "adamw", "label"): (0.5, 2.0), ("eaft", 4e-4, "adamw", "label"): (0.5, 1.0),
            ("asft", 4e-4, "adamw", "label"): (0.5, 3.0), ("dft", 4e-4, "adamw", "label"): (0.5, 1.0)}
    vs = claims.talr_paper(_final_frame(spec), cfg)
    assert sorted({v.claim.split("[")[0] for v in vs}) == ["asft_vs_sft", "eaft_vs_sft"]  # DFT has no claim
    assert all(v.verdict == "agrees" for v in _verdicts(vs, "eaft_vs_sft"))
    assert all(v.verdict == "disagrees" for v in _verdicts(vs, "asft_vs_sft"))
    assert _verdicts(vs, "asft_vs_sft")[0].estimate == pytest.approx(1.5, rel=0.02)


def test_ablation_ratios_are_raw_degradations_against_full_sft_and_flip():
    from talr_theory.tiers.llm import claims
    from talr_theory.tiers.llm.config import Config

    cfg = Config(lrs=(1e-4, 4e-4), ablation_optimizers=("adamw", "sgd"), sgd_lr=0.1, n_boot=300)
    spec = {}
    for opt, lr in (("adamw", 4e-4), ("sgd", 0.1)):
        spec[("sft", lr, opt, "label")] = (0.6, 2.0)
        spec[("easy-only", lr, opt, "label")] = (0.0, 0.5)   # no division by Δ*: accuracy 0 does not matter
        spec[("hard-only", lr, opt, "label")] = (0.5, 3.0)
    vs, table = claims.ablation(_final_frame(spec), cfg)
    assert len(vs) == 4 and all(v.verdict == "agrees" for v in vs)
    easy = table[table["part"].eq("easy-only")]
    assert easy["ratio_to_full"].to_numpy() == pytest.approx(0.25, rel=0.02)
    assert table[table["part"].eq("hard-only")]["ratio_to_full"].to_numpy() == pytest.approx(1.5, rel=0.02)
    assert easy["accuracy_minus_full"].to_numpy() == pytest.approx(-0.6, abs=0.05)
    for key in list(spec):
        if key[0] == "easy-only":
            spec[key] = (0.0, 4.0)
    vs, _ = claims.ablation(_final_frame(spec), cfg)
    assert all(v.verdict == "disagrees" for v in vs)


def test_finding1_paper_ratio_and_stricter_equal_accuracy_difference_flip():
    from talr_theory.tiers.llm import claims, compare
    from talr_theory.tiers.llm.config import Config

    cfg = Config(lrs=(1e-4, 8e-4), accuracy_levels=(0.4,), n_boot=300)

    def traj(dl_small, dl_large):
        rows = []
        for s in range(5):
            for lr, dl in ((1e-4, dl_small), (8e-4, dl_large)):
                for step, acc in ((0, 0.0), (1, 0.2), (2, 0.6)):
                    rows.append({"method": "sft", "lr": lr, "pair_lr": lr, "optimizer": "adamw", "format": "label",
                                 "seed": s, "step": step, "epoch": step, "status": "ok", "accuracy": acc,
                                 "units_acc": [acc] * 12, "units_kl": list(dl * step * (1 + np.arange(12) / 12)),
                                 "units_text": list(dl * step * np.ones(12))})
        return pd.DataFrame(rows)

    t = traj(0.5, 2.0)
    vs = claims.finding1(t, compare.final_rows(t), cfg)
    assert all(v.verdict == "agrees" for v in vs)
    stricter = _verdicts(vs, "finding1_small_lr", "stricter")
    assert stricter[1].estimate == pytest.approx(0.5 * 1.5 - 2.0 * 1.5)  # ΔL at accuracy 0.4 = dl × 1.5 (text)
    t = traj(2.0, 0.5)
    assert all(v.verdict == "disagrees" for v in claims.finding1(t, compare.final_rows(t), cfg))


def _trajectories(cost: dict, n_units: int = 12, seeds=range(5)) -> pd.DataFrame:
    """Runs with accuracy 0, 0.2, 0.6 and Δ* 0, 1, 3 at steps 0, 1, 2; ΔL per unit = cost[(method, lr)] × Δ* × w_u."""
    rows = []
    w = 1 + np.arange(n_units) / n_units
    for (method, lr), c in cost.items():
        for s in seeds:
            for step, acc, gain in ((0, 0.0, 0.0), (1, 0.2, 1.0), (2, 0.6, 3.0)):
                u = list(c * gain * w)
                rows.append({"method": method, "lr": lr, "pair_lr": lr, "optimizer": "adamw", "format": "label",
                             "seed": s, "step": step, "epoch": step, "status": "ok", "accuracy": acc,
                             "delta_star": gain, "units_acc": [acc] * n_units, "units_kl": u, "units_text": u})
    return pd.DataFrame(rows)


def test_theorem_3_1_ratio_at_equal_gain_is_the_cost_ratio_and_flips():
    from talr_theory.tiers.llm.config import Config
    from talr_theory.tiers.llm.theorems import theorem_3_1

    cfg = Config(lrs=(1e-4, 8e-4), n_boot=300)
    vs, info = theorem_3_1(_trajectories({("sft", 1e-4): 0.5, ("sft", 8e-4): 2.0}), cfg, n_grid=3)
    assert info["gain_grid"] == pytest.approx([1.0, 2.0, 3.0])
    assert [v.verdict for v in vs] == ["agrees", "agrees"] and vs[0].estimate == pytest.approx(0.25)
    vs, _ = theorem_3_1(_trajectories({("sft", 1e-4): 2.0, ("sft", 8e-4): 0.5}), cfg, n_grid=3)
    assert [v.verdict for v in vs] == ["disagrees", "disagrees"] and vs[0].estimate == pytest.approx(4.0)


def test_equal_accuracy_frontier_verdict_uses_each_methods_best_lr_and_flips():
    from talr_theory.tiers.llm import claims
    from talr_theory.tiers.llm.config import Config

    cfg = Config(lrs=(1e-4, 8e-4), accuracy_levels=(0.4,), n_boot=300)
    # TALR's best LR costs 0.3 per unit gain, SFT's best 1.0; at accuracy 0.4 (Δ* = 2) ΔL = 2 × cost × w
    traj = _trajectories({("sft", 1e-4): 1.0, ("sft", 8e-4): 3.0, ("talr", 1e-4): 0.9, ("talr", 8e-4): 0.3})
    vs, table = claims.frontier(traj, cfg)
    assert [v.verdict for v in vs] == ["agrees", "agrees"] and all(v.protocol == "stricter" for v in vs)
    w = np.mean(1 + np.arange(12) / 12)
    assert vs[0].estimate == pytest.approx(2 * (0.3 - 1.0) * w)
    best = table[table["p1"].eq("P1=q0")].set_index("method")["best_lr"]
    assert best["talr"] == 8e-4 and best["sft"] == 1e-4
    traj = _trajectories({("sft", 1e-4): 0.3, ("talr", 1e-4): 1.0})
    assert [v.verdict for v in claims.frontier(traj, cfg)[0]] == ["disagrees", "disagrees"]


def test_label_only_verdicts_flip_with_the_runs_and_with_the_lines():
    from talr_theory.tiers.llm import claims
    from talr_theory.tiers.llm.config import Config

    cfg = Config(lrs=(1e-4, 4e-4), seeds=(0, 1, 2, 3, 4), format_epsilons=(0.01, 0.1), n_boot=300)
    lams = 1e-3 * 2.0 ** np.arange(14)

    def lines(c_label, c_rat):
        rows = []
        for fmt, c in (("label", c_label), ("rationale", c_rat)):
            k = c * (1 + np.arange(12) / 12)
            for lam in lams:
                rows.append({"format": fmt, "lam": lam, "base_s": 1.0 if fmt == "label" else 3.0,
                             "units_kl": list(k * lam**2), "units_text": list(k * lam**2)})
        return pd.DataFrame(rows)

    def final(dl_label, dl_rat):
        return _final_frame({("sft", 4e-4, "adamw", "label"): (0.5, dl_label),
                             ("sft", 4e-4, "adamw", "rationale"): (0.25, dl_rat)})

    vs, table = claims.formats(lines(1.0, 4.0), final(1.0, 2.0), cfg)
    paper, stricter = _verdicts(vs, "label_only_loosens_lr"), _verdicts(vs, "label_only_loosens_lr", "stricter")
    # paper: trained runs at the same LR and epochs, ΔL(label) / ΔL(rationale) = 1 / 2 on every unit, 5 seeds
    assert [v.verdict for v in paper] == ["agrees", "agrees"] and paper[0].estimate == pytest.approx(0.5, rel=0.02)
    assert all(v.n_seeds == 5 for v in paper)
    # stricter: ΔL = c λ² ⇒ λ_max = sqrt(ε/c): label / rationale = sqrt(4) = 2 for every unit and ε; no seed behind it
    assert [v.verdict for v in stricter] == ["agrees", "agrees"] and stricter[0].estimate == pytest.approx(2.0, rel=1e-6)
    assert all(v.n_seeds is None for v in stricter) and "no training seed" in stricter[0].note
    assert table["dL_label_minus_rationale"].to_numpy() == pytest.approx(-1.0 * np.mean(1 + np.arange(12) / 12), rel=0.05)
    assert table["accuracy_label_minus_rationale"].to_numpy() == pytest.approx(0.25, abs=0.01)
    assert table["s_label"].iloc[0] == 1.0 and table["s_rationale"].iloc[0] == 3.0
    # each reading flips with its own data only
    vs, _ = claims.formats(lines(1.0, 4.0), final(2.0, 1.0), cfg)
    assert [v.verdict for v in _verdicts(vs, "label_only_loosens_lr")] == ["disagrees", "disagrees"]
    assert [v.verdict for v in _verdicts(vs, "label_only_loosens_lr", "stricter")] == ["agrees", "agrees"]
    vs, _ = claims.formats(lines(4.0, 1.0), final(1.0, 2.0), cfg)
    assert [v.verdict for v in _verdicts(vs, "label_only_loosens_lr")] == ["agrees", "agrees"]
    assert [v.verdict for v in _verdicts(vs, "label_only_loosens_lr", "stricter")] == ["disagrees", "disagrees"]


# ---------------------------------------------------------------------------------------------
# The stage on tiny-random (a pipeline check: no number here is evidence)


def _small(cfg):
    cfg.methods, cfg.lrs, cfg.seeds, cfg.epochs = ("sft", "talr"), (3e-3, 1e-2), (0, 1), 1
    cfg.compare_methods, cfg.compare_lrs, cfg.ablation_optimizers = ("l2", "wise-ft"), (1e-2,), ("sgd",)
    cfg.n_groups, cfg.s_values = 3, (1, 2)
    cfg.advisor_grid_lrs, cfg.advisor_eps_fracs = (5e-3,), (0.3, 0.7)
    return cfg


def test_tier_runs_to_the_protocol_on_tiny_random(tmp_path, one_thread):
    from talr_theory.tiers import llm

    cfg = _small(llm.Config.quick())
    res = llm.run(cfg, out=tmp_path, progress=False)
    assert res.tier == llm.NAME == "llm"
    claims = {(v.claim.split("[")[0], v.protocol) for v in res.verdicts}
    assert {("talr_vs_sft", "paper"), ("talr_comparable_domain", "paper"), ("finding1_small_lr", "paper"),
            ("talr_vs_sft", "stricter"), ("hard_tokens_drive_degradation", "paper"),
            ("label_only_loosens_lr", "paper"), ("thm3.1_smaller_steps", "paper")} <= claims
    assert all("trained" in v.note for v in res.verdicts)
    paper = [v for v in res.verdicts if v.claim.startswith("talr_vs_sft") and v.protocol == "paper"]
    assert all(v.n_seeds == len(cfg.seeds) + len(cfg.paper_extra_seeds) == 3 for v in paper)  # extra seeds at paper LR
    other = [v for v in res.verdicts if v.claim.startswith(("finding1", "hard_tokens")) and v.protocol == "paper"]
    assert other and all(v.n_seeds == len(cfg.seeds) for v in other)  # paired with runs at the 2 common seeds
    assert res.info["n_eval_prompts"] == 12 and set(res.info["accuracy"]) >= {"base", "best"}
    traj = res.frames["trajectories"]
    steps, every = cfg.steps_for(res.info["n_train_examples"])
    assert set(traj["step"]) == {0, *range(every, steps + 1, every)}
    zero = traj[traj["step"] == 0]
    assert (zero["dL_kl"] == 0).all() and (zero["dL_text"] == 0).all() and (zero["delta_star"] == 0).all()
    assert set(traj["method"]) == {"sft", "talr", "l2", "wise-ft", "hard-only", "easy-only"}
    assert set(traj.loc[traj["optimizer"].eq("sgd"), "method"]) == {"sft", "hard-only", "easy-only"}
    assert set(traj.loc[traj["format"].eq("rationale"), "method"]) == {"sft"}
    # WiSE-FT shares the SFT run: at step 0 both are the base model, afterwards they differ
    w = traj[traj["method"].isin(["sft", "wise-ft"]) & traj["lr"].eq(1e-2) & traj["optimizer"].eq("adamw")
             & traj["format"].eq("label") & traj["step"].eq(steps) & traj["seed"].isin(cfg.compare_seeds)]
    assert len(w) == 4 and w.groupby("seed")["dL_kl"].nunique().eq(2).all()
    extra = traj[traj["seed"].isin(cfg.paper_extra_seeds)]  # the extra seeds: SFT and TALR at the paper LR only
    assert set(extra["method"]) == {"sft", "talr"} and set(extra["lr"]) == {cfg.resolved_paper_lr()}
    again = llm.run(cfg, out=tmp_path, progress=False)  # resuming reads the stored runs back
    pd.testing.assert_frame_equal(again.frames["trajectories"], traj, check_like=True)
    _check_advisor_part(res, cfg)
    figs = []
    llm.figures(res, lambda fig, name: figs.append(name))
    assert {"llm_frontier", "llm_envelope_measured", "llm_hard_vs_easy", "llm_advisor_held_out"} <= set(figs)


def test_every_baseline_trains_through_the_core_on_the_tail(one_thread):
    """LoRA (adapters on the blocks only, the head frozen), FLOW and DFT run on the tail via training.core;
    step 0 is the base model's row; the runs move the model."""
    from talr_theory.tiers.llm import Config, runs

    cfg = Config.quick()
    cfg.epochs = 1
    env = runs.setup(cfg, formats=("label",))
    base = env.domains["label"].measure.base_row
    for run in ("lora", "flow", "dft"):
        rows = runs.train_run(env, cfg, run, 5e-2, 0)
        assert [r["method"] for r in rows] == [run] * len(rows) and all(r["status"] == "ok" for r in rows)
        assert rows[0]["units_kl"] == base["units_kl"] and rows[0]["accuracy"] == base["accuracy"]
        assert rows[-1]["dL_kl"] > 0 and rows[-1]["delta_star"] != 0
    assert "lm_head" not in runs.LORA_TARGETS


def test_lora_runs_pair_with_the_sft_lr_they_were_scaled_from():
    from talr_theory.tiers.llm import Config
    from talr_theory.tiers.llm.runs import pair_lr, units

    cfg = Config(lrs=(1e-4, 3e-4, 9e-4), compare_lrs=(3e-4, 9e-4), compare_methods=("lora",), lora_lr_factor=7.0)
    lora = [k["lr"] for k in units(cfg) if k["run"] == "lora"]
    assert sorted({pair_lr(cfg, "lora", lr) for lr in lora}) == [3e-4, 9e-4]
    assert pair_lr(cfg, "sft", 3e-4) == 3e-4


def test_paper_extra_seeds_train_every_method_at_the_paper_lr_only():
    from talr_theory.tiers.llm import Config
    from talr_theory.tiers.llm.runs import units

    cfg = Config(lrs=(1e-4, 4e-4, 8e-4), paper_lr=4e-4, seeds=(0, 1), paper_extra_seeds=(7, 9))
    extra = [(k["run"], k["lr"]) for k in units(cfg) if k["seed"] in (7, 9)]
    assert sorted(extra) == sorted([(m, 4e-4) for m in cfg.methods] * 2)
    assert not [k for k in units(Config(paper_extra_seeds=())) if k["seed"] not in Config().seeds]


def test_config_errors_name_the_field():
    from talr_theory.tiers import llm

    for field, value in (("compare_lrs", (0.5,)), ("paper_lr", 0.5), ("methods", ("talr",)),
                         ("ablation_optimizers", ("adam",)), ("accuracy_levels", (1.5,)),
                         ("paper_extra_seeds", (1,)), ("advisor_held_out_seed", 3)):
        cfg = llm.Config.quick()
        setattr(cfg, field, value)
        with pytest.raises(ValueError, match=field):
            llm.run(cfg, progress=False)


def _check_advisor_part(res, cfg):
    """Pilots are the SFT runs at lrs × seeds (upper envelope over seeds); the held-out grid and the checks are
    new runs with advisor_held_out_seed; ε lies within the grid's ΔL."""
    from talr_theory.advisor.rule import observed_at_gain

    cases, new = res.frames["advisor_cases"], res.frames["advisor_runs"]
    assert len(cases) == len(cfg.advisor_eps_fracs) == res.info["advisor_validation"]["n_cases"]
    assert any("Safe-LR advisor" in n for n in res.info["notes"])
    assert "advisor_cases" in res.info["report_tables"].values()
    traj = res.frames["trajectories"]
    held = cfg.advisor_held_out_seed

    def held_out(lr):
        src = new[new["lr"].eq(lr) & new["seed"].eq(held)]
        assert len(src), f"no held-out run at {lr}"
        return src.rename(columns={"dL_kl": "delta_L"})

    gain = float(cases["gain"].iloc[0])
    sft = traj[traj["method"].eq("sft") & traj["seed"].isin(cfg.seeds) & traj["lr"].isin(cfg.lrs)
               & traj["optimizer"].eq("adamw") & traj["format"].eq("label")]
    pilot_reach = sft.groupby(["lr", "seed"])["delta_star"].max()
    assert gain == pytest.approx(cfg.advisor_gain_fraction * pilot_reach.min())
    grid_dl = [observed_at_gain(held_out(lr), gain) for lr in sorted({*cfg.lrs, *cfg.advisor_grid_lrs})]
    assert np.nanmin(grid_dl) <= cases["epsilon"].min() and cases["epsilon"].max() <= np.nanmax(grid_dl)
    # the new runs: the held-out grid and the checks (held-out seed) and any extra pilots (every pilot seed)
    assert set(new["seed"]) <= {held, *cfg.seeds} and held in set(new["seed"])
    assert not set(new.loc[new["seed"].isin(cfg.seeds), "lr"]) & set(cfg.lrs)
    for r in cases[cases["status"].eq("ok")].itertuples():
        assert r.observed_delta_L == pytest.approx(observed_at_gain(held_out(r.recommended_lr), gain))
        assert r.within_epsilon == (r.observed_delta_L <= r.epsilon * (1 + 1e-9))



def test_advise_validate_on_llm_cli_honours_model(tmp_path, monkeypatch, one_thread):
    """`advise --validate --on llm --quick` on a reduced quick config whose model spec is unusable, so the
    run only works when --model replaces it."""
    import json

    from talr_theory import cli
    from talr_theory.tiers import llm

    quick = llm.Config.quick

    def small(seed=0):
        c = quick(seed=seed)
        c.model, c.lrs, c.compare_lrs, c.epochs = "no-such-model", (3e-3, 1e-2), (1e-2,), 1
        c.advisor_grid_lrs, c.advisor_eps_fracs = (5e-3,), (0.5,)
        return c

    monkeypatch.setattr(llm.Config, "quick", staticmethod(small))
    path = tmp_path / "v.json"
    assert cli.main(["advise", "--validate", "--on", "llm", "--quick", "--model", "tiny-random",
                     "--out", str(tmp_path / "a"), "--json", str(path)]) == 0
    got = json.loads(path.read_text())
    assert got["on"] == "llm" and got["model"] == "tiny-random" and got["scale"] == "quick"
    assert got["n_cases"] == len(got["cases"]) == 1
    assert {"n_certified", "frac_within_epsilon", "median_ratio_to_true_safe_lr", "n_cannot_certify"} <= set(got)
    assert cli.main(["advise", "--validate", "--on", "llm", "--quick", "--out", str(tmp_path / "b"),
                     "--json", str(path)]) == 2  # no-such-model


def test_advise_validate_on_llm_quick_cli(tmp_path, one_thread):
    import json

    from talr_theory import cli

    path = tmp_path / "v.json"
    args = ["advise", "--validate", "--on", "llm", "--quick", "--out", str(tmp_path / "o"), "--json", str(path)]
    assert cli.main(args) == 0
    got = json.loads(path.read_text())
    from talr_theory.tiers.llm import Config

    n = len(Config.quick().advisor_eps_fracs)
    assert got["model"] == "tiny-random" and got["n_cases"] == n and got["n_cases"] == len(got["cases"])
    assert list((tmp_path / "o" / "results").glob("llm_advisor_runs-*"))  # every new run is stored
    assert cli.main(args) == 0  # a rerun with the same --out reads the stored runs: the same cases
    again = json.loads(path.read_text())
    assert again["cases"] == got["cases"]


@pytest.mark.slow
def test_advise_validate_on_llm_default_smollm2(tmp_path):
    """The default validation on SmolLM2-135M (minutes): ≥ 4 cases, each certified one checked by a real run."""
    import json

    from talr_theory import cli

    path = tmp_path / "v.json"
    assert cli.main(["advise", "--validate", "--on", "llm", "--out", str(path.parent / "o"), "--json", str(path)]) == 0
    got = json.loads(path.read_text())
    assert got["model"] == "smollm2-135m" and got["n_cases"] >= 4
    for case in got["cases"]:
        if case["status"] == "ok":
            assert math.isfinite(case["observed_delta_L"]) and case["inside_pilot_range"]


@pytest.mark.slow
def test_full_model_paper_protocol_beside_the_proxy(one_thread):
    """The proxy check: TALR vs SFT at the paper's protocol with every parameter trained, one LR × 3 seeds
    (SmolLM2-135M; tens of minutes on 2 cores). Records both verdict sets; asserts only that they are complete."""
    from talr_theory.tiers.llm import claims, compare, runs
    from talr_theory.tiers.llm.config import Config

    verdicts = {}
    for full in (False, True):
        cfg = Config(seeds=(0, 1, 2), full_model=full, n_boot=500)
        env = runs.setup(cfg, formats=("label",))
        keys = [{"run": m, "lr": cfg.resolved_paper_lr(), "seed": s, "optimizer": "adamw", "format": "label"}
                for m in ("sft", "talr") for s in cfg.seeds]
        traj = runs.trajectories(env, cfg, None, False, keys)
        verdicts[full] = claims.talr_paper(compare.final_rows(traj), cfg)
        assert all(v.n_seeds == 3 for v in verdicts[full])
        assert all(("Every parameter" in v.note) == full for v in verdicts[full])
    for a, b in zip(verdicts[False], verdicts[True]):
        print(f"{a.claim}: proxy {a.estimate:.3g} [{a.ci_lo:.3g}, {a.ci_hi:.3g}] {a.verdict}; "
              f"full model {b.estimate:.3g} [{b.ci_lo:.3g}, {b.ci_hi:.3g}] {b.verdict}")


def test_a_copy_of_the_tail_trains_alone_and_shares_the_frozen_base(tiny, one_thread):
    from talr_theory.training.tail import TailLM

    tail = TailLM(tiny.model, 1)
    twin = copy.deepcopy(tail)
    assert twin._base is tail._base and twin.cache is tail.cache and twin.reads is tail.reads
    with torch.no_grad():
        next(twin.inner.model.layers.parameters()).add_(1.0)
    ids = torch.tensor([[1, 5, 9, 12]])
    assert not torch.allclose(twin(ids).logits, tail(ids).logits)  # its own blocks


def test_domain_units_read_compact_logits_as_they_read_dense_ones(tiny, one_thread):
    from talr_theory.tiers.llm.measures import domain_units

    exs = [EncodedExample("a", [1, 5, 9, 12, 7, 8], [IGNORE, IGNORE, IGNORE, 12, 7, 8]),
           EncodedExample("b", [1, 3, 4, 6], [IGNORE, IGNORE, 4, 6])]
    spans = [(3, 5), (2, 4)]
    tail = _perturbed_tail(tiny.model)
    tail.read_positions(exs)
    dense = domain_units(tail, exs, spans, pad=0, batch_size=2)
    tail.compact_eval = True
    compact = domain_units(tail, exs, spans, pad=0, batch_size=2)
    assert np.allclose(dense[0], compact[0], rtol=1e-6) and np.array_equal(dense[1], compact[1])
    assert dense[0].min() > 0


def _perturbed_tail(model):
    from talr_theory.training.tail import TailLM

    return TailLM(_perturbed(model, scale=0.5), 1)


def test_runs_in_two_processes_equal_the_same_runs_in_one(tmp_path, one_thread):
    """The forked workers (one torch thread each) train exactly what one process with one thread trains;
    each run is stored as it ends, and a rerun reads every run back without training."""
    from dataclasses import replace

    from talr_theory.tiers.llm import runs
    from talr_theory.tiers.llm.config import Config
    from talr_theory.tiers.protocol import results_table

    cfg = replace(_small(Config.quick()), compare_methods=("wise-ft",), ablation_optimizers=())
    env = runs.setup(cfg)
    keys = runs.units(cfg)[:4]
    serial = runs.trajectories(env, replace(cfg, workers=1), None, progress=False, keys=keys)
    forked_cfg = replace(cfg, workers=2)
    forked = runs.trajectories(env, forked_cfg, tmp_path, progress=False, keys=keys)
    assert len(serial) == len(forked) > len(keys)
    cols = ["run", "lr", "seed", "method", "step", "delta_star", "accuracy", "dL_kl", "dL_text"]
    pd.testing.assert_frame_equal(serial[cols], forked[cols], check_exact=True)
    stored = results_table(tmp_path, "llm_runs", forked_cfg, [*runs.KEY, "method", "step"]).load()
    assert len(stored) == len(forked) and not stored[[*runs.KEY, "method", "step"]].duplicated().any()
    # a rerun trains nothing: every run is read back from the table
    calls = []
    original = runs.train_run
    runs.train_run = lambda *a, **k: calls.append(k) or original(*a, **k)
    try:
        again = runs.trajectories(env, forked_cfg, tmp_path, progress=False, keys=keys)
    finally:
        runs.train_run = original
    assert calls == [] and len(again) == len(forked)
