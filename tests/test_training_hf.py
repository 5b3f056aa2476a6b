"""The Hugging Face Trainer drop-in: compute_loss_func=TokenLoss under gradient accumulation."""

from __future__ import annotations

import pytest
import torch

from talr_theory.data.encode import EncodedExample, collate
from talr_theory.training.core import TrainConfig, train
from talr_theory.training.hf import (
    EXAMPLE_WEIGHT_COLUMN,
    TokenLoss,
    WeightCollator,
    flow_weight_column,
    make_trainer,
)

pytestmark = pytest.mark.usefixtures("one_thread")



class _ListDataset(torch.utils.data.Dataset):
    def __init__(self, examples):
        self.examples = examples

    def __len__(self):
        return len(self.examples)

    def __getitem__(self, i):
        ex = self.examples[i]
        return {"input_ids": ex.input_ids, "labels": ex.labels, "example_id": ex.example_id}


class _WeightedDataset(_ListDataset):
    def __init__(self, examples, weights):
        super().__init__(examples)
        self.weights = weights

    def __getitem__(self, i):
        return dict(super().__getitem__(i), **{EXAMPLE_WEIGHT_COLUMN: self.weights[i]})


def _collator(features):
    return collate([EncodedExample(f["example_id"], f["input_ids"], f["labels"]) for f in features], 0)


def _hf_train(tmp_path, examples, loss, batch_size, grad_accum, weights=None):
    from test_training_core import tiny_model
    from transformers import TrainingArguments

    args = TrainingArguments(
        output_dir=str(tmp_path / f"hf-{batch_size}x{grad_accum}"), per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=grad_accum, max_steps=1, learning_rate=0.5, optim="sgd",
        lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=0.0, report_to=[],
        save_strategy="no", logging_strategy="no", use_cpu=True, remove_unused_columns=False, seed=0,
        dataloader_num_workers=0, disable_tqdm=True)
    model = tiny_model()
    dataset = _ListDataset(examples) if weights is None else _WeightedDataset(examples, weights)
    trainer = make_trainer(loss, model=model, args=args, train_dataset=dataset,
                           data_collator=WeightCollator(_collator))
    trainer.train()
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


@pytest.mark.parametrize("method,tau", [("sft", "median"), ("talr", 0.7), ("eaft", "median"), ("asft", "median")])
def test_trainer_drop_in_with_gradient_accumulation(tmp_path, method, tau):
    from test_training_core import random_examples, tiny_model

    examples = random_examples(n=4, seed=5)
    loss = TokenLoss(method, tau=tau, w_min=0.01)
    one_by_four = _hf_train(tmp_path, examples, loss, batch_size=4, grad_accum=1)
    four_by_one = _hf_train(tmp_path, examples, loss, batch_size=1, grad_accum=4)
    assert torch.allclose(one_by_four, four_by_one, rtol=1e-5, atol=1e-6)
    # and the same update as our own core (SGD, same loss, same four examples in one step)
    ours = train(tiny_model(), examples, TrainConfig(method=method, tau=str(tau), lr=0.5, optimizer="sgd",
                                                     steps=1, batch_size=4), progress=False)
    flat_ours = torch.cat([p.detach().reshape(-1) for p in ours.model.parameters()])
    assert torch.allclose(one_by_four, flat_ours, rtol=1e-5, atol=1e-6)
    init = torch.cat([p.detach().reshape(-1) for p in tiny_model().parameters()])
    assert (one_by_four - init).abs().max() > 1e-4
    if method == "talr":
        assert 0 < loss.last_info["mean_weight"] < 1


def test_make_sft_trainer_explains_missing_trl():
    from talr_theory.training.hf import make_sft_trainer

    try:
        import trl  # noqa: F401
    except ImportError:  # with the trl extra installed, tests/test_training_trl.py covers make_sft_trainer
        with pytest.raises(ImportError, match="TRL is not installed"):
            make_sft_trainer(TokenLoss("talr"))
    else:
        pytest.skip("TRL is installed; the missing-TRL message does not apply")


def test_flow_through_the_trainer_equals_core_flow(tmp_path):
    """FLOW weights travel as a dataset column through WeightCollator; the update equals training.core's FLOW."""
    from test_training_core import random_examples, tiny_model

    examples = random_examples(n=4, seed=5)
    weights, tau = flow_weight_column(tiny_model(), examples, pad_id=0)
    assert tau > 0 and len(set(weights)) == 4  # distinct per-example weights, so a mix-up would show
    loss = TokenLoss("flow")
    one_by_four = _hf_train(tmp_path, examples, loss, batch_size=4, grad_accum=1, weights=weights)
    four_by_one = _hf_train(tmp_path, examples, loss, batch_size=1, grad_accum=4, weights=weights)
    assert torch.allclose(one_by_four, four_by_one, rtol=1e-5, atol=1e-6)
    ours = train(tiny_model(), examples, TrainConfig(method="flow", lr=0.5, optimizer="sgd", steps=1, batch_size=4),
                 progress=False)  # core computes the FLOW weights itself from the same base model
    flat_ours = torch.cat([p.detach().reshape(-1) for p in ours.model.parameters()])
    assert torch.allclose(one_by_four, flat_ours, rtol=1e-5, atol=1e-6)
    # the weights matter: plain SFT on the same batch gives a different update
    sft = _hf_train(tmp_path, examples, TokenLoss("sft"), batch_size=4, grad_accum=1)
    assert (sft - one_by_four).abs().max() > 1e-4


def test_flow_loss_without_weights_is_a_clear_error(tmp_path):
    from test_training_core import random_examples

    with pytest.raises(ValueError, match="example_weight"):
        _hf_train(tmp_path, random_examples(n=4, seed=5), TokenLoss("flow"), batch_size=4, grad_accum=1)
    with pytest.raises(ValueError, match="lack 'example_weight'"):
        WeightCollator(_collator)([{"input_ids": [1, 2], "labels": [1, 2], "example_id": "a",
                                    EXAMPLE_WEIGHT_COLUMN: 0.5},
                                   {"input_ids": [1, 2], "labels": [1, 2], "example_id": "b"}])


def test_asft_needs_its_base_logits_and_says_how(tmp_path):
    from test_training_core import random_examples, tiny_model

    examples = random_examples(n=2, seed=5)
    batch = collate(examples, 0)
    logits = tiny_model()(input_ids=batch["input_ids"]).logits
    with pytest.raises(ValueError, match="make_trainer"):
        TokenLoss("asft")({"logits": logits}, batch["labels"])
    with pytest.raises(ValueError, match="eaft-k"):
        TokenLoss("eaft", eaft_k=1)
