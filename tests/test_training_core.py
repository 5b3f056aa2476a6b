"""Training core on tiny random-init Llama models: normalization, L2, WiSE-FT, LoRA, failures, evaluation."""

from __future__ import annotations

import copy

import pytest
import torch

from talr_theory.data.encode import EncodedExample
from talr_theory.training.core import TrainConfig, train
from talr_theory.training.params import snapshot, wise_interpolate

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB = 48


def tiny_model(seed=0):
    from transformers import LlamaForCausalLM

    from talr_theory.models import tiny_llama_config

    torch.manual_seed(seed)
    cfg = tiny_llama_config(vocab_size=VOCAB, hidden_size=32, n_layers=2, n_heads=4, n_kv_heads=2,
                            intermediate_size=64)
    return LlamaForCausalLM(cfg)


def random_examples(n=12, seed=1):
    """Random token sequences of varied length with a masked prompt of 2-4 tokens."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        length = int(torch.randint(6, 14, (1,), generator=g))
        k = int(torch.randint(2, 5, (1,), generator=g))
        ids = torch.randint(3, VOCAB, (length,), generator=g).tolist()
        out.append(EncodedExample(f"ex{i}", ids, [-100] * k + ids[k:]))
    return out


def flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def run(method="sft", model=None, examples=None, **kw):
    base = dict(method=method, lr=0.5, optimizer="sgd", steps=2, batch_size=4, grad_accum=1)
    base.update(kw)
    model = model if model is not None else tiny_model()
    return train(model, examples or random_examples(), TrainConfig(**base), progress=False)


@pytest.mark.parametrize("method,tau", [("sft", "median"), ("talr", "0.7"), ("dft", "median"), ("eaft", "median"),
                                        ("asft", "median"), ("truncate-hard", "median")])
def test_one_microbatch_of_4_equals_4_microbatches_of_1(method, tau):
    # the random model gives p ≈ 1/VOCAB: a θ there keeps some tokens and truncates others
    kw = {"tau": tau, "truncate_theta": 1.0 / VOCAB}
    a = run(method, batch_size=4, grad_accum=1, **kw)
    b = run(method, batch_size=1, grad_accum=4, **kw)
    b2 = run(method, batch_size=2, grad_accum=2, **kw)
    assert torch.allclose(flat(a.model), flat(b.model), rtol=1e-5, atol=1e-7)
    assert torch.allclose(flat(a.model), flat(b2.model), rtol=1e-5, atol=1e-7)
    moved = (flat(a.model) - flat(tiny_model())).abs().max()
    assert moved > 1e-4  # training moved the weights far more than the tolerance above
    assert a.log[0]["n_tokens"] == b.log[0]["n_tokens"]
    if method == "truncate-hard":  # some tokens kept, some truncated
        assert 0 < a.log[0]["sum_weight"] < a.log[0]["n_tokens"]


def test_talr_median_tau_is_per_microbatch():
    """The documented caveat: with the median rule, splitting the step changes τ and the update."""
    a = run("talr", batch_size=4, grad_accum=1, tau="median")
    b = run("talr", batch_size=1, grad_accum=4, tau="median")
    assert not torch.allclose(flat(a.model), flat(b.model), rtol=1e-4, atol=1e-6)


def test_l2_with_zero_coefficient_equals_sft_and_positive_pulls_to_init():
    init = flat(tiny_model())
    sft = run("sft", optimizer="adamw", lr=1e-2, steps=4)
    l2_zero = run("l2", optimizer="adamw", lr=1e-2, steps=4, l2_coeff=0.0)
    assert torch.equal(flat(sft.model), flat(l2_zero.model))
    l2_strong = run("l2", optimizer="sgd", lr=0.05, steps=4, l2_coeff=5.0)
    sft_sgd = run("sft", optimizer="sgd", lr=0.05, steps=4)
    assert (flat(l2_strong.model) - init).norm() < (flat(sft_sgd.model) - init).norm()
    assert l2_strong.log[-1]["l2_penalty"] > 0


def test_new_objectives_reduce_to_known_ones_at_their_limits():
    """EAFT with α=0 is SFT, ASFT with β=0 is DFT, truncate-hard with θ below every p is SFT (same updates)."""
    sft, dft = flat(run("sft").model), flat(run("dft").model)
    assert (sft - dft).abs().max() > 1e-4  # the two references differ, so each equality below is informative
    assert torch.allclose(flat(run("eaft", eaft_alpha=0.0).model), sft, rtol=1e-5, atol=1e-7)
    assert torch.allclose(flat(run("asft", asft_beta=0.0).model), dft, rtol=1e-5, atol=1e-7)
    assert torch.allclose(flat(run("truncate-hard", truncate_theta=1e-30).model), sft, rtol=1e-5, atol=1e-7)
    # and away from the limits each one trains differently from both
    for method in ("eaft", "asft", "truncate-hard"):
        # ASFT's KL gradient is zero at the first step (model = base), so a large β shows it at the second
        kw = {"truncate-hard": {"truncate_theta": 1.0 / VOCAB}, "asft": {"asft_beta": 10.0}}.get(method, {})
        moved = flat(run(method, **kw).model)
        assert (moved - sft).abs().max() > 1e-5 and (moved - dft).abs().max() > 1e-5, method


def test_asft_anchors_to_the_frozen_initial_model():
    """The KL term is measured against the model before training: zero at the first step, positive later."""
    res = run("asft", steps=3, eval_every=1, asft_beta=1.0)
    kls = [h["mean_kl_to_base"] for h in res.history if h["step"] > 0]
    assert kls[0] == pytest.approx(0.0, abs=1e-6)  # step 1 is computed before any update
    assert kls[-1] > 1e-6  # a live (not frozen) reference would keep it at 0


def test_wise_ft_endpoints_and_midpoint():
    captured = {}

    def evaluator(model, step):
        captured[(step, len(captured))] = flat(model).clone()
        return {"param_norm": float(flat(model).norm())}

    init = flat(tiny_model())
    rows = []
    wise = train(tiny_model(), random_examples(), TrainConfig(method="wise-ft", lr=0.05, optimizer="sgd",
                                                              steps=3, batch_size=4,
                                                              wise_alphas=(0.0, 0.5, 1.0)),
                 evaluator=evaluator, on_checkpoint=lambda row, m: rows.append(row), progress=False)
    sft = run("sft", steps=3, lr=0.05)
    final = [v for (s, _), v in sorted(captured.items(), key=lambda kv: kv[0][1]) if s == 3]
    assert torch.equal(final[0], init)                          # α = 0: the initial weights
    assert torch.equal(final[2], flat(sft.model))               # α = 1: plain SFT
    assert torch.allclose(final[1], 0.5 * (init + flat(sft.model)), atol=1e-6)
    assert torch.equal(flat(wise.model), flat(sft.model))        # the trained weights are restored
    assert [(r["step"], r["wise_alpha"]) for r in rows] == [(s, a) for s in (0, 3) for a in (0.0, 0.5, 1.0)]
    # the module-level function on its own
    m = tiny_model()
    t0, t1 = snapshot(m), {k: v + 1.0 for k, v in snapshot(m).items()}
    wise_interpolate(m, t0, t1, 0.25)
    assert torch.allclose(flat(m), init + 0.25, atol=1e-6)
    with pytest.raises(ValueError, match="alpha"):
        wise_interpolate(m, t0, t1, 1.5)


def test_lora_trains_only_adapters():
    base = tiny_model()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    res = run("lora", model=base, optimizer="adamw", lr=1e-2, steps=5, lora_rank=4)
    named = dict(res.model.named_parameters())
    trainable = [n for n, p in named.items() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    merged_names = {n.replace("base_model.model.", "").replace(".base_layer", ""): p
                    for n, p in named.items() if "lora_" not in n}
    for name, value in before.items():
        assert torch.equal(merged_names[name].detach(), value), name
    assert res.log[-1]["sum_nll"] / res.log[-1]["n_tokens"] < res.log[0]["sum_nll"] / res.log[0]["n_tokens"]


def test_nonfinite_loss_stops_with_a_failure_row():
    model = tiny_model()
    calls = {"n": 0}

    def poison(_module, _inputs, output):
        calls["n"] += 1
        if calls["n"] >= 3:
            output.logits = output.logits * float("nan")
        return output

    model.register_forward_hook(poison)
    rows = []
    res = train(model, random_examples(), TrainConfig(method="talr", lr=0.05, optimizer="sgd", steps=10,
                                                      batch_size=4, eval_every=4),
                evaluator=lambda m, s: {"domain_nll": 1.0},
                on_checkpoint=lambda row, m: rows.append(row), progress=False)
    assert res.status == "failed" and res.failed_step == 3 and "non-finite" in res.failure
    assert [(r["step"], r["status"]) for r in rows] == [(0, "ok"), (4, "failed")]
    assert "domain_nll" not in rows[-1]  # no measurement is written for a broken model


def test_seeded_runs_are_deterministic_and_learn():
    cfg = dict(optimizer="adamw", lr=1e-2, steps=15, batch_size=4)
    a, b = run("talr", **cfg), run("talr", **cfg)
    assert torch.equal(flat(a.model), flat(b.model))
    first, last = a.log[0], a.log[-1]
    assert last["sum_nll"] / last["n_tokens"] < first["sum_nll"] / first["n_tokens"] - 0.3
    assert 0 < last["sum_weight"] / last["n_tokens"] < 1  # TALR down-weights tokens


def test_schedule_and_checkpoints():
    from talr_theory.training.config import checkpoint_steps, lr_factor

    assert checkpoint_steps(10, 4) == [0, 4, 8, 10]
    assert checkpoint_steps(5, 0) == [0, 5]
    cfg = TrainConfig(steps=10, warmup_steps=2, schedule="linear")
    assert [round(lr_factor(s, cfg), 6) for s in (0, 1, 2, 6, 10)] == [0.5, 1.0, 1.0, 0.5, 0.0]
    res = run("sft", steps=4, eval_every=2, warmup_steps=2, schedule="cosine")
    assert [h["step"] for h in res.history] == [0, 2, 4]


@pytest.mark.parametrize("field,value,match", [
    ("method", "adam-magic", "method"), ("tau", "0", "tau"), ("tau", "-1", "tau"), ("tau", "mean", "tau"),
    ("w_min", 1.5, "w_min"), ("w_min", -0.1, "w_min"), ("lr", 0.0, "lr"), ("lr", -1e-4, "lr"),
    ("lr", float("nan"), "lr"), ("steps", 0, "steps"), ("wise_alphas", (1.2,), "wise_alphas"),
    ("eaft_k", 1, "eaft_k"), ("eaft_alpha", -1.0, "eaft_alpha"), ("asft_beta", -0.1, "asft_beta"),
    ("truncate_theta", 0.0, "truncate_theta"), ("truncate_theta", 1.0, "truncate_theta"),
])
def test_invalid_configs_are_rejected(field, value, match):
    # the message names the option as the user types it (--w-min), whether set by flag or in code
    with pytest.raises(ValueError, match="--" + match.replace("_", "-")):
        TrainConfig(**{field: value}).validate()


def test_evaluator_baseline_kl_and_domain_gain():
    from transformers import LlamaForCausalLM

    from talr_theory.data.general import load_general_text
    from talr_theory.models import build_byte_tokenizer, tiny_llama_config
    from talr_theory.training.evaluation import CheckpointEvaluator
    from talr_theory.training.samples import sample_from_model

    tok = build_byte_tokenizer()
    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_llama_config(vocab_size=len(tok), hidden_size=32, n_layers=1,
                                               intermediate_size=64))
    general = load_general_text(tok, "fallback", n_blocks=3, block_len=48)
    assert general.is_fallback and len(general.examples) == 3
    assert all(len(e.input_ids) == 49 and e.input_ids[0] == tok.bos_token_id for e in general.examples)
    samples = sample_from_model(model, tok, n_samples=6, max_new_tokens=12, seed=0, batch_size=3)
    assert len(samples.examples) == 6 and all(1 <= n <= 12 for n in samples.n_tokens)
    text = "The dose is 5 mg per kg. "
    ids = tok(text * 3).input_ids
    domain = [EncodedExample(f"d{i}", ids, [-100] * 4 + ids[4:]) for i in range(4)]
    ev = CheckpointEvaluator(domain, general.examples, samples, train_probe=domain[:2], pad_id=0, batch_size=4)
    ev.set_baseline(model)
    m0 = ev(model, 0)
    assert m0["kl_base"] == 0.0 and m0["delta_star"] == 0.0 and m0["delta_L_text"] == 0.0
    trained = copy.deepcopy(model)
    train(trained, domain, TrainConfig(method="sft", lr=1e-2, steps=10, batch_size=4), progress=False)
    m1 = ev(trained, 10)
    assert m1["delta_star"] > 0 and m1["delta_star_per_token"] > 0
    assert m1["kl_base"] > 0 and m1["kl_base_se"] > 0
    assert m1["train_frac_p_gt_0.2"] >= m0["train_frac_p_gt_0.2"]


def test_model_samples_are_exact_draws_from_the_base_model():
    """First-token frequencies of many samples match the model's softmax after BOS (small vocab)."""
    from types import SimpleNamespace

    from transformers import LlamaForCausalLM

    from talr_theory.models import tiny_llama_config
    from talr_theory.training.samples import sample_from_model

    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_llama_config(vocab_size=8, hidden_size=16, n_layers=1, n_heads=2, n_kv_heads=1,
                                               intermediate_size=32))
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)  # a clearly non-uniform next-token distribution
    tok = SimpleNamespace(bos_token_id=1, eos_token_id=2, pad_token_id=0)
    samples = sample_from_model(model, tok, n_samples=3000, max_new_tokens=1, seed=0, batch_size=1000)
    with torch.no_grad():
        p = torch.softmax(model(input_ids=torch.tensor([[1]])).logits[0, -1].double(), -1)
    counts = torch.bincount(torch.tensor([e.input_ids[1] for e in samples.examples]), minlength=8).double()
    tv = 0.5 * (counts / counts.sum() - p).abs().sum().item()
    assert tv < 0.04, tv  # sampling noise at n=3000 is ~0.01-0.02
    assert p.max() < 0.8 and (p > 0.02).sum() >= 3  # truncating to the top token would fail the check above
    logp = torch.tensor([p[e.input_ids[1]].log().item() for e in samples.examples[:50]])
    assert torch.allclose(torch.from_numpy(samples.base_sum_logprob[:50]), logp.double(), atol=1e-5)


def test_model_samples_use_the_kv_cache_correctly_and_without_warnings():
    """Multi-token samples equal a no-cache sampler's draws (same seed), with no deprecation warning."""
    import warnings
    from types import SimpleNamespace

    from transformers import LlamaForCausalLM

    from talr_theory.models import tiny_llama_config
    from talr_theory.training.samples import sample_from_model

    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_llama_config(vocab_size=8, hidden_size=16, n_layers=1, n_heads=2, n_kv_heads=1,
                                               intermediate_size=32)).eval()
    tok = SimpleNamespace(bos_token_id=1, eos_token_id=None, pad_token_id=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        samples = sample_from_model(model, tok, n_samples=4, max_new_tokens=5, seed=3, batch_size=4)
    # reference: the whole prefix re-run at every step (no cache), the same multinomial stream
    ids = torch.full((4, 1), 1)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        for _ in range(5):
            probs = torch.softmax(model(input_ids=ids).logits[:, -1, :].float(), dim=-1)
            ids = torch.cat([ids, torch.multinomial(probs, 1)], dim=1)
    assert [e.input_ids for e in samples.examples] == ids.tolist()


@pytest.mark.shared
def test_general_text_blocks_from_wikitext():
    from talr_theory.data.general import load_general_text
    from talr_theory.models import build_byte_tokenizer
    from talr_theory.paths import shared_file

    if shared_file("data/general-text/wikitext-2-valid.txt") is None:
        pytest.skip("../shared/data/general-text/wikitext-2-valid.txt is absent")
    tok = build_byte_tokenizer()
    text = load_general_text(tok, "wikitext", n_blocks=8, block_len=64, seed=1)
    assert not text.is_fallback and "wikitext" in text.source and len(text.examples) == 8
    assert all(len(e.input_ids) == 65 and e.labels == e.input_ids for e in text.examples)
    assert len({tuple(e.input_ids) for e in text.examples}) == 8  # disjoint places in the file
    again = load_general_text(tok, "wikitext", n_blocks=8, block_len=64, seed=1)
    assert [e.input_ids for e in again.examples] == [e.input_ids for e in text.examples]
    with pytest.raises(FileNotFoundError, match="expected 'auto'"):
        load_general_text(tok, "/no/such/file.txt")


def test_sweep_runs_the_token_objectives_by_name(tmp_path):
    """``sweep --methods sft,talr,eaft,asft,truncate-hard`` trains each and writes rows for all five."""
    import json

    import pandas as pd

    from talr_theory.cli import main

    data, out = tmp_path / "toy.jsonl", tmp_path / "sweep"
    data.write_text("".join(json.dumps({"prompt": f"Q{i}: say {w}.", "response": f" {w} {i % 5}"}) + "\n"
                            for i, w in enumerate(["alpha", "beta", "gamma", "delta", "omega", "kappa"] * 2)))
    methods = ["sft", "talr", "eaft", "asft", "truncate-hard"]
    rc = main(["sweep", "--model", "tiny-random", "--data", str(data), "--methods", ",".join(methods),
               "--lrs", "1e-3", "--seeds", "0", "--steps", "2", "--eval-every", "1", "--batch-size", "2",
               "--n-train", "6", "--n-eval", "3", "--general-text", "fallback", "--general-blocks", "2",
               "--block-len", "16", "--n-samples", "2", "--sample-len", "4", "--train-probe", "2",
               "--out", str(out), "--no-progress", "--no-figures"])
    assert rc == 0
    table = pd.read_parquet(out / "results.parquet")
    assert sorted(table["method"].unique()) == sorted(methods)
    steps = {m: sorted(g["step"].tolist()) for m, g in table.groupby("method")}
    assert steps == {m: [0, 1, 2] for m in methods}
    assert (table["status"] == "ok").all()
