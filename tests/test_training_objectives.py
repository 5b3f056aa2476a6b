"""Objectives: TALR limits (τ→∞ = CE, τ=1 & w_min=0 = DFT), weights, τ rules, masking, normalization."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from talr_theory.training import objectives as obj

pytestmark = pytest.mark.usefixtures("one_thread")



def _random_batch(seed=0, B=3, T=7, V=11, masked_prefix=2):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, V, generator=g) * 2.0
    labels = torch.randint(0, V, (B, T), generator=g)
    labels[:, :masked_prefix] = -100
    labels[1, -2:] = -100  # some padding
    return logits.requires_grad_(True), labels


def _loss_and_grad(fn, logits, labels, **opts):
    leaf = logits.detach().clone().requires_grad_(True)
    loss, info = fn(leaf, labels, None, **opts)
    (grad,) = torch.autograd.grad(loss, leaf)
    return loss.detach(), grad, info


def _manual_probs(logits, labels):
    """Probabilities of the shifted targets, computed independently with softmax + gather."""
    lg, lb = logits[:, :-1], labels[:, 1:]
    mask = lb.ne(-100)
    p = torch.softmax(lg.double(), -1).gather(-1, lb.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return p, mask


def test_talr_infinite_tau_is_ce():
    logits, labels = _random_batch()
    l_ce, g_ce, _ = _loss_and_grad(obj.ce_loss, logits, labels)
    l_t, g_t, info = _loss_and_grad(obj.talr_loss, logits, labels, tau=math.inf, w_min=0.01)
    assert torch.equal(l_ce, l_t) and torch.equal(g_ce, g_t)
    assert info["mean_weight"] == 1.0
    # and the limit is approached continuously: a huge finite τ is within rounding of CE
    l_big, g_big, _ = _loss_and_grad(obj.talr_loss, logits, labels, tau=1e9, w_min=0.01)
    assert torch.allclose(l_big, l_ce, rtol=1e-6) and torch.allclose(g_big, g_ce, rtol=1e-5, atol=1e-9)
    # while a moderate τ really changes the loss (the test above could not pass by accident)
    l_mod, _, _ = _loss_and_grad(obj.talr_loss, logits, labels, tau=1.0, w_min=0.01)
    assert l_mod < 0.9 * l_ce


def test_talr_tau1_wmin0_equals_dft_values_and_gradients():
    logits, labels = _random_batch(seed=3)
    l_t, g_t, i_t = _loss_and_grad(obj.talr_loss, logits, labels, tau=1.0, w_min=0.0)
    l_d, g_d, i_d = _loss_and_grad(obj.dft_loss, logits, labels)
    assert torch.allclose(l_t, l_d, rtol=1e-6, atol=1e-7)
    assert torch.allclose(g_t, g_d, rtol=1e-5, atol=1e-8)
    assert i_t["n_tokens"] == i_d["n_tokens"]
    # DFT's value is the mean of sg(p)·(-log p) over supervised tokens, checked from scratch in float64
    p, mask = _manual_probs(logits.detach(), labels)
    expected = float((p * -p.log())[mask].mean())
    assert l_d.item() == pytest.approx(expected, rel=1e-5)


def test_talr_weights_and_gradient_are_stop_gradient_weighted_ce():
    logits, labels = _random_batch(seed=5)
    tau, w_min = 0.7, 0.05
    loss, grad, info = _loss_and_grad(obj.talr_loss, logits, labels, tau=tau, w_min=w_min)
    p, mask = _manual_probs(logits.detach(), labels)
    w = np.maximum(p.numpy() ** (1 / tau), w_min)
    expected = float((torch.from_numpy(w) * -p.log())[mask].sum() / mask.sum())
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert info["mean_weight"] == pytest.approx(float(torch.from_numpy(w)[mask].mean()), rel=1e-5)
    # gradient = weights (constants) times the CE gradient: compare with autograd on a weighted CE
    leaf = logits.detach().clone().requires_grad_(True)
    nll, m = obj.token_nll(leaf, labels)
    manual = (nll * torch.from_numpy(w).float()).sum() / m.sum()
    (g_manual,) = torch.autograd.grad(manual, leaf)
    assert torch.allclose(grad, g_manual, rtol=1e-5, atol=1e-8)


def test_weights_need_no_second_softmax_pass():
    """Profile the TALR forward: exactly one log-softmax kernel (inside cross-entropy), no softmax."""
    logits, labels = _random_batch(seed=1)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        obj.talr_loss(logits, labels, None, tau="median", w_min=0.01)
    names = [e.name for e in prof.events()]
    assert names.count("aten::_log_softmax") == 1
    assert "aten::_softmax" not in names
    # the DFT reference path also uses one pass (its own log_softmax)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        obj.dft_loss(logits, labels, None)
    assert [e.name for e in prof.events()].count("aten::_log_softmax") == 1


def test_tau_rules_median_over_tokens_and_sequences():
    logits, labels = _random_batch(seed=7, B=4, T=9)
    nll, mask = obj.token_nll(logits.detach(), labels)
    tokens = nll[mask].double().numpy()
    assert obj.resolve_tau(nll, mask, "median") == pytest.approx(np.median(tokens), rel=1e-12)
    seq_means = [nll[b][mask[b]].double().mean().item() for b in range(4)]
    assert obj.resolve_tau(nll, mask, "median-seq") == pytest.approx(np.median(seq_means), rel=1e-12)
    assert obj.resolve_tau(nll, mask, 0.3) == 0.3
    with pytest.raises(ValueError, match="tau must be > 0"):
        obj.resolve_tau(nll, mask, 0.0)
    with pytest.raises(ValueError):
        obj.resolve_tau(nll, mask, "mean")
    _, info = obj.talr_loss(logits, labels, None, tau="median")
    assert info["tau"] == pytest.approx(np.median(tokens), rel=1e-9)


@pytest.mark.parametrize("name", ["ce", "talr", "dft", "flow"])
def test_all_masked_micro_batch_backpropagates(name):
    from transformers import LlamaForCausalLM

    from talr_theory.models import tiny_llama_config

    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_llama_config(vocab_size=32, hidden_size=16, n_layers=1, n_heads=2,
                                               n_kv_heads=1, intermediate_size=32))
    ids = torch.randint(0, 32, (2, 6))
    labels = torch.full_like(ids, -100)
    opts = {"example_weights": torch.ones(2)} if name == "flow" else {}
    logits = model(input_ids=ids).logits
    loss, info = obj.OBJECTIVES[name](logits, labels, 10, **opts)
    assert loss.item() == 0.0 and loss.requires_grad and info["n_tokens"] == 0
    loss.backward()
    assert all(p.grad is not None and torch.count_nonzero(p.grad) == 0 for p in model.parameters())


def test_normalization_by_global_count_sums_to_full_batch():
    """Per-micro-batch losses divided by the global count add up to the full-batch token mean."""
    logits, labels = _random_batch(seed=11, B=4)
    n_global = obj.count_supervised(labels)
    for name, opts in (("ce", {}), ("talr", {"tau": 0.8}), ("dft", {})):
        full, g_full, _ = _loss_and_grad(obj.OBJECTIVES[name], logits, labels, **opts)
        leaf = logits.detach().clone().requires_grad_(True)
        parts = [obj.OBJECTIVES[name](leaf[i:i + 1], labels[i:i + 1], n_global, **opts)[0] for i in range(4)]
        total = sum(parts)
        (g_parts,) = torch.autograd.grad(total, leaf)
        assert torch.allclose(total.detach(), full, rtol=1e-6)
        assert torch.allclose(g_parts, g_full, rtol=1e-5, atol=1e-9)
        # a per-micro-batch mean (the classic accumulation bug) would NOT match: sequences differ in length
        naive = sum(obj.OBJECTIVES[name](leaf[i:i + 1], labels[i:i + 1], None, **opts)[0] for i in range(4)) / 4
        assert not torch.allclose(naive.detach(), full, rtol=1e-4)


def test_flow_weights_and_loss():
    w, tau = obj.flow_example_weights([1.0, 2.0, 3.0, 10.0])
    assert tau == pytest.approx(2.5)
    assert torch.allclose(w, torch.exp(-torch.tensor([1.0, 2.0, 3.0, 10.0], dtype=torch.float64) / 2.5))
    logits, labels = _random_batch(seed=2)
    l_ce, g_ce, _ = _loss_and_grad(obj.ce_loss, logits, labels)
    l_f, g_f, _ = _loss_and_grad(obj.flow_loss, logits, labels, example_weights=torch.ones(3))
    assert torch.allclose(l_ce, l_f) and torch.allclose(g_ce, g_f)
    l_h, _, info = _loss_and_grad(obj.flow_loss, logits, labels, example_weights=torch.tensor([0.5, 0.5, 0.5]))
    assert l_h.item() == pytest.approx(0.5 * l_ce.item(), rel=1e-6) and info["mean_weight"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="example_weights"):
        obj.flow_loss(logits, labels, None)
    with pytest.raises(ValueError, match="tau must be > 0"):
        obj.flow_example_weights([0.0, 0.0, 0.0])


def test_hf_token_loss_matches_objective():
    from talr_theory.training.hf import TokenLoss

    logits, labels = _random_batch(seed=4)
    loss = TokenLoss("talr", tau=0.5, w_min=0.02)({"logits": logits}, labels, num_items_in_batch=13)
    ref, _ = obj.talr_loss(logits, labels, 13, tau=0.5, w_min=0.02)
    assert torch.equal(loss, ref)
    with pytest.raises(ValueError, match="w-min"):
        TokenLoss("talr", w_min=2.0)
    with pytest.raises(ValueError, match="tau"):
        TokenLoss("talr", tau=-1.0)


def test_flow_weights_for_uses_base_mean_losses(one_thread):
    """FLOW's weights, computed once for train() and the sweep: exp(-mean NLL_e / median) per example id."""
    from talr_theory.data.encode import EncodedExample
    from talr_theory.models import load_model
    from talr_theory.training.core import flow_weights_for
    from talr_theory.training.evaluation import per_example_nll

    loaded = load_model("tiny-random")
    ids = loaded.tokenizer("The dose is 5 mg per kg, twice daily.").input_ids
    examples = [EncodedExample(f"e{i}", ids[: 8 + 3 * i], [-100] * 3 + ids[3: 8 + 3 * i]) for i in range(5)]
    weights = flow_weights_for(loaded.model, examples, pad_id=0, batch_size=2)
    base = per_example_nll(loaded.model, examples, pad_id=0, batch_size=5).set_index("example_id")["mean_nll"]
    tau = float(np.median(base.to_numpy()))
    assert list(weights) == [e.example_id for e in examples]
    for k, w in weights.items():
        assert w == pytest.approx(math.exp(-base[k] / tau), rel=1e-6)


# --- EAFT, ASFT, truncate-hard on a hand-computed 2-sequence batch (float64) ---------------------------
# Shifted supervised positions (the logits at t predict the label at t+1):
#   seq 0, t=0: logits [0, 0, 0]          target 0  p = 1/3             q = (1/3, 1/3, 1/3)
#   seq 0, t=1: logits [ln 2, 0, 0]       target 2  p = 1/4             q = (1/2, 1/4, 1/4)
#   seq 1, t=0: logits [ln 6, ln 3, 0]    target 1  p = 3/10            q = (6/10, 3/10, 1/10)
#   seq 1, t=1: label -100 (padding); the t=2 logits predict nothing. N = 3 supervised tokens.
LN2, LN3 = math.log(2.0), math.log(3.0)
P = (1 / 3, 1 / 4, 3 / 10)
NLL = (LN3, math.log(4.0), math.log(10 / 3))
Q = ((1 / 3, 1 / 3, 1 / 3), (1 / 2, 1 / 4, 1 / 4), (6 / 10, 3 / 10, 1 / 10))


def _hand_batch():
    logits = torch.tensor([[[0.0, 0.0, 0.0], [LN2, 0.0, 0.0], [9.0, -2.0, 4.0]],
                           [[math.log(6.0), LN3, 0.0], [5.0, -5.0, 0.0], [1.0, 2.0, 3.0]]], dtype=torch.float64)
    labels = torch.tensor([[-100, 0, 2], [-100, 1, -100]])
    return logits, labels


def _entropy(q):
    return -sum(x * math.log(x) for x in q)


def _ref_nll(leaf, labels):
    """-log softmax at the targets, by hand (log-sum-exp), for the reference formulas' autograd."""
    lg, lb = leaf[:, :-1], labels[:, 1:]
    mask = lb.ne(-100)
    logp = lg - torch.logsumexp(lg, dim=-1, keepdim=True)
    return -logp.gather(-1, lb.clamp_min(0).unsqueeze(-1)).squeeze(-1) * mask, mask, logp


def test_eaft_hand_computed_weights_loss_and_gradient():
    logits, labels = _hand_batch()
    # K = 2: the top-2 logits renormalized; position a ties (q = 1/2, 1/2), b and c both give (2/3, 1/3)
    h2_bc = LN3 - (2 / 3) * LN2  # entropy of (2/3, 1/3)
    alpha = 2.0
    w = (1.0, (h2_bc / LN2) ** alpha, (h2_bc / LN2) ** alpha)
    expected = sum(wi * li for wi, li in zip(w, NLL)) / 3
    shift = logits[:, :-1]
    weights = obj.eaft_weights(shift, k=2, alpha=alpha)
    got_w = (float(weights[0, 0]), float(weights[0, 1]), float(weights[1, 0]))
    assert got_w == pytest.approx(w, abs=1e-10)
    leaf = logits.clone().requires_grad_(True)
    loss, info = obj.eaft_loss(leaf, labels, None, k=2, alpha=alpha)
    assert loss.dtype == torch.float64 and abs(float(loss.detach()) - expected) < 1e-10
    assert info["n_tokens"] == 3 and abs(info["sum_weight"] - sum(w)) < 1e-10
    # the gradient is that of Σ w_i·(-log p_i)/N with the weights as constants (stop-gradient)
    (grad,) = torch.autograd.grad(loss, leaf)
    ref_leaf = logits.clone().requires_grad_(True)
    nll, _, _ = _ref_nll(ref_leaf, labels)
    wt = torch.tensor([[w[0], w[1]], [w[2], 0.0]], dtype=torch.float64)
    (ref_grad,) = torch.autograd.grad((wt * nll).sum() / 3, ref_leaf)
    assert (grad - ref_grad).abs().max() < 1e-12
    # K = V = 3: the top-K entropy is the full entropy, normalized by ln 3
    w3 = tuple((_entropy(q) / LN3) ** 1.0 for q in Q)
    l3, _ = obj.eaft_loss(logits, labels, None, k=3, alpha=1.0)
    assert abs(float(l3) - sum(a * b for a, b in zip(w3, NLL)) / 3) < 1e-10


def test_eaft_topk_entropy_equals_full_entropy_when_vocabulary_is_k():
    from test_training_core import tiny_model

    from talr_theory.tokens import entropy

    model = tiny_model().double()
    vocab = model.config.vocab_size
    ids = torch.arange(3, 3 + 8).reshape(1, 8) % vocab
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    q = torch.softmax(logits, -1).numpy()
    full = -(q * np.log(q)).sum(-1)  # entropy over the whole vocabulary, computed here in numpy
    for k in (vocab, vocab + 50):  # K capped at the vocabulary
        got = entropy.normalized_topk_entropy(logits, k).numpy()
        assert np.abs(got - full / math.log(vocab)).max() < 1e-10
    # a smaller K really is a different (truncated) estimate
    assert np.abs(entropy.topk_entropy(logits, 2).numpy() - full).max() > 1e-3
    with pytest.raises(ValueError, match="K >= 2"):
        entropy.normalized_topk_entropy(logits, 1)


def test_asft_hand_computed_loss_kl_and_gradient():
    logits, labels = _hand_batch()
    ref_logits = torch.zeros_like(logits)  # the base model is uniform: KL(u || q) = -ln 3 - (1/3) Σ_v ln q_v
    kl = tuple(-LN3 - sum(math.log(x) for x in q) / 3 for q in Q)
    assert kl[0] == pytest.approx(0.0, abs=1e-15) and kl[1] == pytest.approx((5 / 3) * LN2 - LN3)
    beta = 0.5
    dft = sum(p * li for p, li in zip(P, NLL))
    expected = (dft + beta * sum(kl)) / 3
    leaf = logits.clone().requires_grad_(True)
    loss, info = obj.asft_loss(leaf, labels, None, ref_logits=ref_logits, beta=beta)
    assert abs(float(loss.detach()) - expected) < 1e-10
    assert abs(info["sum_kl"] - sum(kl)) < 1e-10 and abs(info["sum_weight"] - sum(P)) < 1e-10
    (grad,) = torch.autograd.grad(loss, leaf)
    # reference formula: (1/N) Σ_i [sg(p_i)(-log p_i) + β Σ_v u_v (log u_v - log q_v)], autograd through q only
    ref_leaf = logits.clone().requires_grad_(True)
    nll, mask, logp = _ref_nll(ref_leaf, labels)
    u = torch.full_like(logp, 1 / 3)
    kl_tok = (u * (u.log() - logp)).sum(-1) * mask
    ref_loss = ((torch.exp(-nll).detach() * mask) * nll).sum() / 3 + beta * kl_tok.sum() / 3
    (ref_grad,) = torch.autograd.grad(ref_loss, ref_leaf)
    assert (grad - ref_grad).abs().max() < 1e-12
    # the base logits get no gradient, and ASFT without them is an error
    with pytest.raises(ValueError, match="ref_logits"):
        obj.asft_loss(logits, labels, None)


def test_asft_kl_direction_is_base_to_model():
    # KL(base || model) differs from KL(model || base) on a skewed pair; the loss uses the first
    logits, labels = _hand_batch()
    ref = torch.zeros_like(logits)
    ref[1, 0] = torch.tensor([0.0, 0.0, math.log(8.0)], dtype=torch.float64)  # base q = (0.1, 0.1, 0.8) at seq 1
    base, model_q = (0.1, 0.1, 0.8), Q[2]
    forward = sum(b * math.log(b / m) for b, m in zip(base, model_q))
    reverse = sum(m * math.log(m / b) for b, m in zip(base, model_q))
    assert abs(forward - reverse) > 0.1
    _, info = obj.asft_loss(logits, labels, None, ref_logits=ref, beta=1.0)
    kl_rest = -LN3 - sum(math.log(x) for x in Q[1]) / 3  # positions a (0) and b against the uniform base
    assert abs(info["sum_kl"] - (forward + kl_rest)) < 1e-10


def test_truncate_hard_hand_computed_and_limits():
    logits, labels = _hand_batch()
    # θ = 0.28: p = 1/3 and 3/10 are kept, p = 1/4 is truncated; the sum is divided by all N = 3 tokens
    leaf = logits.clone().requires_grad_(True)
    loss, info = obj.truncate_hard_loss(leaf, labels, None, theta=0.28)
    assert abs(float(loss.detach()) - (NLL[0] + NLL[2]) / 3) < 1e-10
    assert info["n_truncated"] == 1 and info["sum_weight"] == 2
    (grad,) = torch.autograd.grad(loss, leaf)
    ref_leaf = logits.clone().requires_grad_(True)
    nll, _, _ = _ref_nll(ref_leaf, labels)
    (ref_grad,) = torch.autograd.grad((nll[0, 0] + nll[1, 0]) / 3, ref_leaf)
    assert (grad - ref_grad).abs().max() < 1e-12
    # θ below every p is CE; θ above every p leaves a zero loss that is still connected to the graph
    ce, _ = obj.ce_loss(logits, labels)
    low, _ = obj.truncate_hard_loss(logits, labels, theta=0.2)
    assert abs(float(low) - float(ce)) < 1e-12
    high_leaf = logits.clone().requires_grad_(True)
    high, info_high = obj.truncate_hard_loss(high_leaf, labels, theta=0.9)
    (g_high,) = torch.autograd.grad(high, high_leaf)
    assert float(high.detach()) == 0.0 and info_high["n_truncated"] == 3 and float(g_high.abs().max()) == 0.0


def test_new_objectives_normalize_by_the_global_token_count():
    logits, labels = _hand_batch()
    ref = torch.zeros_like(logits)
    for name, opts in (("eaft", {"k": 3}), ("asft", {"ref_logits": ref}), ("truncate-hard", {"theta": 0.28})):
        local, _ = obj.OBJECTIVES[name](logits, labels, None, **opts)
        global_, _ = obj.OBJECTIVES[name](logits, labels, torch.tensor(12), **opts)
        assert abs(float(global_) * 12 - float(local) * 3) < 1e-10, name
