"""The real-model tier: its pieces (KL, tail model, probes, masks, λ_max interpolation) and the protocol contract."""

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


def test_tier_runs_to_the_protocol_on_tiny_random(tmp_path, one_thread):
    from talr_theory.tiers import llm

    cfg = llm.Config.quick()
    cfg.lrs, cfg.steps, cfg.compare_methods, cfg.n_groups, cfg.s_values = (3e-3, 1e-2), 3, ("l2",), 3, (1, 2)
    cfg.advisor_grid_lrs, cfg.advisor_eps_fracs = (5e-3,), (0.3, 0.7)
    res = llm.run(cfg, out=tmp_path, progress=False)
    assert res.tier == llm.NAME == "llm"
    claims = {v.claim.split("[")[0] for v in res.verdicts}
    assert {"thm3.1_lr_at_equal_gain", "talr_vs_sft_at_equal_gain", "hard_tokens_drive_degradation",
            "thm3.2_eps_exponent"} <= claims
    assert set(res.info["accuracy"]) >= {"base", "best"}
    traj = res.frames["trajectories"]
    # every trajectory is measured at every step; KL and text change are exactly zero at step 0
    assert set(traj["step"]) == set(range(cfg.steps + 1))
    zero = traj[traj["step"] == 0]
    assert (zero["dL_kl"] == 0).all() and (zero["dL_text"] == 0).all() and (zero["delta_star"] == 0).all()
    assert set(traj["method"]) == {"sft", "talr", "l2", "hard-only", "easy-only"}
    # resuming reads the persisted rows back instead of recomputing them
    again = llm.run(cfg, out=tmp_path, progress=False)
    pd.testing.assert_frame_equal(again.frames["trajectories"].reset_index(drop=True), traj.reset_index(drop=True),
                                  check_like=True)
    _check_advisor_part(res, cfg)
    pd.testing.assert_frame_equal(again.frames["advisor_cases"], res.frames["advisor_cases"])
    pd.testing.assert_frame_equal(again.frames["advisor_runs"], res.frames["advisor_runs"])
    figs = []
    llm.figures(res, lambda fig, name: figs.append(name))
    assert len(figs) == 6 and "llm_advisor_held_out" in figs


def _check_advisor_part(res, cfg):
    """Pilots are the SFT runs at lrs × seeds (upper envelope over seeds); the held-out grid and the checks are
    new runs with advisor_held_out_seed; ε lies within the grid's ΔL."""
    from talr_theory.lab.advisor import observed_at_gain

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
    sft = traj[traj["method"].eq("sft") & traj["seed"].isin(cfg.seeds) & traj["lr"].isin(cfg.lrs)]
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
        c.model, c.lrs, c.compare_lr, c.steps = "no-such-model", (3e-3, 1e-2), 1e-2, 2
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
    assert got["model"] == "tiny-random" and got["n_cases"] == 3 and got["n_cases"] == len(got["cases"])
    assert list((tmp_path / "o" / "results").glob("llm_advisor_runs-*"))  # every new run is stored
    assert cli.main(args) == 0  # a rerun with the same --out reads the stored runs: the same cases
    again = json.loads(path.read_text())
    assert again["cases"] == got["cases"]


@pytest.mark.slow
def test_tier_is_deterministic_for_a_seed(one_thread):
    from talr_theory.tiers import llm

    cfg = llm.Config.quick()
    cfg.lrs, cfg.steps, cfg.compare_methods, cfg.n_groups, cfg.s_values = (3e-3, 1e-2), 2, (), 3, (1, 2)
    a, b = llm.run(cfg, progress=False), llm.run(cfg, progress=False)
    for name in ("trajectories", "lambda_max", "probe_check"):
        pd.testing.assert_frame_equal(a.frames[name], b.frames[name])
    assert [v.to_dict() for v in a.verdicts] == [v.to_dict() for v in b.verdicts]


def test_config_errors_name_the_field():
    from talr_theory.tiers import llm

    cfg = llm.Config.quick()
    cfg.compare_lr = 0.5
    with pytest.raises(ValueError, match="compare_lr"):
        llm.run(cfg, progress=False)


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
