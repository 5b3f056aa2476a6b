"""TRL's SFTTrainer with our losses, and our DFT/CE cross-checked against TRL's own (the ``trl`` extra).

What the cross-checks compare, on the same model (tiny-random, float64) and the same collated batch
that TRL's own data pipeline built: the loss value and the gradient of every parameter, with an
absolute tolerance of 1e-6 (loss) and 1e-6 (max |Δgrad| over all parameters).

- ``TokenLoss("dft")`` vs TRL ``loss_type="dft"``: both are Σ_i sg(p_i)·(-log p_i) / N over the
  supervised (shifted) tokens, with N = ``num_items_in_batch`` (the whole accumulated batch) when the
  Trainer passes it, else the tokens of the micro-batch. No difference by design.
- ``TokenLoss("sft")`` vs TRL's default loss (``loss_type="nll"``): Σ_i -log p_i / N, the same N.
- End to end: one SGD step with 2 micro-batches of gradient accumulation through TRL's ``dft`` and
  through ``make_sft_trainer(TokenLoss("dft"))`` gives the same parameters (so TRL's token
  normalization across micro-batches is the one our loss assumes).
"""

from __future__ import annotations

import warnings

import pytest
import torch

trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

from talr_theory.models import load_model  # noqa: E402
from talr_theory.training.hf import (  # noqa: E402
    EXAMPLE_WEIGHT_COLUMN,
    TokenLoss,
    WeightCollator,
    make_sft_trainer,
)

pytestmark = pytest.mark.usefixtures("one_thread")
TOL = 1e-6


def _rows(n=8):
    words = ["alpha", "beta", "gamma", "delta", "omega", "kappa"]
    return [{"prompt": f"Q{i}: say {words[i % 6]} twice.", "completion": f" {words[i % 6]} {words[(i * 5) % 6]}"}
            for i in range(n)]


def _args(tmp_path, name, **kw):
    from trl import SFTConfig

    base = dict(output_dir=str(tmp_path / name), report_to=[], use_cpu=True, save_strategy="no",
                logging_strategy="no", disable_tqdm=True, seed=0, dataloader_num_workers=0)
    base.update(kw)
    return SFTConfig(**base)


def _model(dtype="float32"):
    lm = load_model("tiny-random", device="cpu", dtype="float32")
    if dtype == "float64":
        lm.model.double()
    return lm


def _flat_grad(model):
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                      for p in model.parameters()])


def test_make_sft_trainer_trains_two_steps(tmp_path):
    lm = _model()
    before = [p.detach().clone() for p in lm.model.parameters()]
    loss = TokenLoss("talr", tau="median", w_min=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TRL: compute_loss_func deprecation notice
        trainer = make_sft_trainer(loss, model=lm.model, processing_class=lm.tokenizer,
                                   train_dataset=datasets.Dataset.from_list(_rows()),
                                   args=_args(tmp_path, "talr", max_steps=2, per_device_train_batch_size=4,
                                              learning_rate=1e-2))
    assert isinstance(trainer, trl.SFTTrainer)
    out = trainer.train()
    assert trainer.state.global_step == 2 and torch.isfinite(torch.tensor(out.training_loss))
    # our loss ran (TALR weights strictly between the floor and 1) and moved the weights
    assert 0.01 < loss.last_info["mean_weight"] < 1 and loss.last_info["n_tokens"] > 0
    moved = max(float((p.detach() - b).abs().max()) for p, b in zip(lm.model.parameters(), before))
    assert moved > 1e-4


def _trl_batch_and_trainers(tmp_path, our_method, trl_loss_type):
    """One float64 model, TRL's own prepared batch, and (ours, TRL's) SFTTrainers over that model."""
    lm = _model("float64")
    ds = datasets.Dataset.from_list(_rows())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        theirs = trl.SFTTrainer(model=lm.model, processing_class=lm.tokenizer, train_dataset=ds,
                                args=_args(tmp_path, "trl", loss_type=trl_loss_type, per_device_train_batch_size=8))
        ours = make_sft_trainer(TokenLoss(our_method, tau="median"), model=lm.model, processing_class=lm.tokenizer,
                                train_dataset=ds, args=_args(tmp_path, "ours", per_device_train_batch_size=8))
    batch = next(iter(theirs.get_train_dataloader()))
    batch = {k: v for k, v in batch.items()}
    return lm.model, batch, ours, theirs


def _loss_and_grad(trainer, model, batch, n_items):
    model.zero_grad(set_to_none=True)
    model.train()
    loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=n_items)
    loss.backward()
    return float(loss.detach()), _flat_grad(model).detach().clone()


@pytest.mark.parametrize("our_method,trl_loss_type", [("dft", "dft"), ("sft", "nll")])
@pytest.mark.parametrize("n_items", ["none", "global"])
def test_loss_and_gradient_equal_trl(tmp_path, our_method, trl_loss_type, n_items):
    model, batch, ours, theirs = _trl_batch_and_trainers(tmp_path, our_method, trl_loss_type)
    labels = batch["labels"]
    assert (labels == -100).any() and (labels != -100).any()  # prompt masked, completion supervised
    # "global": a made-up whole-batch count larger than this micro-batch's, as under accumulation/DDP
    n = None if n_items == "none" else torch.tensor(int((labels[:, 1:] != -100).sum()) * 3)
    loss_ours, grad_ours = _loss_and_grad(ours, model, batch, n)
    loss_trl, grad_trl = _loss_and_grad(theirs, model, batch, n)
    assert loss_ours > 0 and grad_ours.abs().max() > 1e-4
    assert abs(loss_ours - loss_trl) <= TOL, (loss_ours, loss_trl)
    assert (grad_ours - grad_trl).abs().max() <= TOL


def test_dft_differs_from_ce_so_the_cross_check_can_fail(tmp_path):
    # the comparison above distinguishes the losses: our DFT against TRL's plain NLL does not match
    model, batch, ours, theirs = _trl_batch_and_trainers(tmp_path, "dft", "nll")
    loss_ours, _ = _loss_and_grad(ours, model, batch, None)
    loss_trl, _ = _loss_and_grad(theirs, model, batch, None)
    assert abs(loss_ours - loss_trl) > 1e-2


def test_one_accumulated_sgd_step_equals_trl_dft(tmp_path):
    params = {}
    for name, make in (("trl", lambda m, tok, ds, a: trl.SFTTrainer(model=m, processing_class=tok,
                                                                   train_dataset=ds, args=a)),
                       ("ours", lambda m, tok, ds, a: make_sft_trainer(TokenLoss("dft"), model=m,
                                                                       processing_class=tok, train_dataset=ds,
                                                                       args=a))):
        lm = _model("float64")
        args = _args(tmp_path, name, loss_type="dft" if name == "trl" else "nll", max_steps=1,
                     per_device_train_batch_size=2, gradient_accumulation_steps=2, learning_rate=0.5, optim="sgd",
                     lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=0.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            trainer = make(lm.model, lm.tokenizer, datasets.Dataset.from_list(_rows()), args)
        trainer.train()
        params[name] = torch.cat([p.detach().reshape(-1) for p in lm.model.parameters()])
    init = torch.cat([p.detach().reshape(-1) for p in _model("float64").model.parameters()])
    assert (params["trl"] - init).abs().max() > 1e-4
    assert (params["ours"] - params["trl"]).abs().max() <= TOL


def test_flow_weights_travel_through_trl_collator(tmp_path):
    """FLOW in SFTTrainer: an example_weight column survives TRL's preprocessing and reaches TokenLoss."""
    lm = _model()
    rows = [dict(r, **{EXAMPLE_WEIGHT_COLUMN: 0.1 * (i + 1)}) for i, r in enumerate(_rows())]
    loss = TokenLoss("flow")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        trainer = make_sft_trainer(loss, model=lm.model, processing_class=lm.tokenizer,
                                   train_dataset=datasets.Dataset.from_list(rows),
                                   args=_args(tmp_path, "flow", max_steps=1, per_device_train_batch_size=8,
                                              remove_unused_columns=False, shuffle_dataset=False))
    trainer.data_collator = WeightCollator(trainer.data_collator)
    batch = next(iter(trainer.get_train_dataloader()))
    assert sorted(batch["example_weights"].tolist()) == pytest.approx([0.1 * (i + 1) for i in range(8)])
    trainer.train()
    # mean token weight is a token-weighted average of the 8 example weights: strictly inside (0.1, 0.8)
    assert 0.1 < loss.last_info["mean_weight"] < 0.8


def _perturbed_reference(model, scale=0.05):
    """A frozen copy of ``model`` with its weights moved, so ASFT's KL term is not zero at the first step."""
    from talr_theory.training.params import frozen_copy

    ref = frozen_copy(model)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return ref


def _token_loss(method, ref=None):
    opts = {"talr": {"tau": 0.7}, "eaft": {"eaft_k": 5, "eaft_alpha": 1.5}, "asft": {"asft_beta": 0.3}}[method]
    return TokenLoss(method, ref_model=ref, **opts)


@pytest.mark.parametrize("method", ["talr", "eaft", "asft"])
def test_new_losses_through_the_drop_in_equal_the_core(tmp_path, method):
    from talr_theory.training import objectives as obj

    lm = _model("float64")
    ref = _perturbed_reference(lm.model) if method == "asft" else None
    loss = _token_loss(method, ref)
    with pytest.warns(UserWarning, match="chunked NLL"):  # what the drop-in changes, said at construction
        trainer = make_sft_trainer(loss, model=lm.model, processing_class=lm.tokenizer,
                                   train_dataset=datasets.Dataset.from_list(_rows()),
                                   args=_args(tmp_path, method, per_device_train_batch_size=8))
    batch = dict(next(iter(trainer.get_train_dataloader())))
    n = torch.tensor(int((batch["labels"][:, 1:] != -100).sum()) * 2)  # as if accumulated over 2 micro-batches
    got, _ = _loss_and_grad(trainer, lm.model, batch, n)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = lm.model(**inputs).logits
    extra = {"ref_logits": ref(**inputs).logits} if method == "asft" else {}
    expected, info = obj.OBJECTIVES[method](logits, batch["labels"], n, **loss.opts, **extra)
    assert abs(got - float(expected.detach())) <= TOL
    if method == "asft":
        assert info["sum_kl"] > 1e-4  # the anchor term is really in the compared loss


@pytest.mark.parametrize("method", ["talr", "eaft", "asft"])
def test_accumulation_in_the_drop_in_equals_one_large_batch(tmp_path, method):
    params = {}
    for split, (bs, ga) in {"4x1": (4, 1), "2x2": (2, 2)}.items():
        lm = _model("float64")
        ref = _perturbed_reference(lm.model) if method == "asft" else None
        args = _args(tmp_path, f"{method}-{split}", max_steps=1, per_device_train_batch_size=bs,
                     gradient_accumulation_steps=ga, learning_rate=0.5, optim="sgd", lr_scheduler_type="constant",
                     warmup_steps=0, weight_decay=0.0, max_grad_norm=0.0)
        with pytest.warns(UserWarning, match="chunked NLL"):
            trainer = make_sft_trainer(_token_loss(method, ref), model=lm.model, processing_class=lm.tokenizer,
                                       train_dataset=datasets.Dataset.from_list(_rows(4)), args=args)
        trainer.train()
        params[split] = torch.cat([p.detach().reshape(-1) for p in lm.model.parameters()])
    init = torch.cat([p.detach().reshape(-1) for p in _model("float64").model.parameters()])
    assert (params["4x1"] - init).abs().max() > 1e-4
    assert (params["4x1"] - params["2x2"]).abs().max() <= TOL


def test_sft_trainer_settings_a_token_loss_would_override_are_refused(tmp_path):
    lm = _model()
    for setting, match in (({"loss_type": "dft"}, "loss_type"), ({"label_smoothing_factor": 0.1}, "label_smoothing")):
        with pytest.raises(ValueError, match=match):
            make_sft_trainer(TokenLoss("talr"), model=lm.model, processing_class=lm.tokenizer,
                             train_dataset=datasets.Dataset.from_list(_rows()),
                             args=_args(tmp_path, "bad", **setting))


def test_drop_in_logs_trls_metrics_from_its_own_logits(tmp_path):
    lm = _model()
    with pytest.warns(UserWarning, match="chunked NLL"):
        trainer = make_sft_trainer(TokenLoss("eaft"), model=lm.model, processing_class=lm.tokenizer,
                                   train_dataset=datasets.Dataset.from_list(_rows()),
                                   args=_args(tmp_path, "log", max_steps=1, per_device_train_batch_size=8,
                                              logging_strategy="steps", logging_steps=1))
    trainer.train()
    logged = trainer.state.log_history[0]
    vocab = lm.model.config.vocab_size
    assert 0 < logged["entropy"] <= torch.log(torch.tensor(float(vocab))) + 1e-6
    assert 0 <= logged["mean_token_accuracy"] <= 1 and logged["num_tokens"] > 0
