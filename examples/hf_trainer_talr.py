"""TALR (or DFT, CE, FLOW) inside the Hugging Face Trainer, single process or several through accelerate.

    # one process (CPU or one GPU)
    python examples/hf_trainer_talr.py --model tiny-random --data medcalc-synth:64 --steps 5 --out runs/one
    # two CPU processes through accelerate (gloo), e.g. a smoke test of the multi-process path
    accelerate launch --config_file examples/accelerate_cpu2.yaml examples/hf_trainer_talr.py \\
        --model tiny-random --steps 2 --out runs/cpu2
    # several GPUs
    accelerate launch --num_processes 8 examples/hf_trainer_talr.py --model smollm2-135m --steps 100
    torchrun --nproc_per_node 2 examples/hf_trainer_talr.py --model tiny-random --steps 3

The TALR-specific part is ``make_trainer(TokenLoss("talr", ...), ...)`` (equivalently
``Trainer(compute_loss_func=TokenLoss(...))`` for the token losses). The Trainer passes the number of
supervised tokens of the whole accumulated batch, summed over processes, and scales the loss for DDP,
so the gradient is the token mean over the global batch (see training/hf.py). TALR's median τ is per
micro-batch and per process. ``--method flow`` adds the per-example FLOW weights as a dataset column
that ``WeightCollator`` puts into the batch.

Why ``accelerate launch --cpu --num_processes 2`` is not two processes: with ``--cpu`` accelerate takes
its single-process launcher, which exports no rank variables (the script used to ask for gloo anyway
and died with "Default process group has not been initialized"; now it runs as one process and says
so). ``examples/accelerate_cpu2.yaml`` takes the multi-process (torchrun) launcher with ``use_cpu:
true`` instead; the script asks for gloo only when a launcher started several processes, and creates
the distributed state through ``TrainingArguments`` before loading anything.
``--out DIR`` writes ``DIR/metrics.json`` (world size, steps, final loss) from the main process.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import torch
from transformers import TrainingArguments

from talr_theory.data.encode import EncodedExample, collate, encode_examples
from talr_theory.data.sft import load_sft
from talr_theory.models import load_model, pad_token_id
from talr_theory.training.hf import (
    EXAMPLE_WEIGHT_COLUMN,
    TokenLoss,
    WeightCollator,
    flow_weight_column,
    make_trainer,
)


class EncodedDataset(torch.utils.data.Dataset):
    def __init__(self, examples: list[EncodedExample], weights: list[float] | None = None):
        self.examples, self.weights = examples, weights

    def __len__(self):
        return len(self.examples)

    def __getitem__(self, i):
        ex = self.examples[i]
        row = {"example_id": ex.example_id, "input_ids": ex.input_ids, "labels": ex.labels}
        if self.weights is not None:
            row[EXAMPLE_WEIGHT_COLUMN] = self.weights[i]
        return row


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--data", default="medcalc-synth")
    parser.add_argument("--format", default="cot", choices=("cot", "label"))
    parser.add_argument("--method", default="talr", choices=("sft", "talr", "dft", "flow"))
    parser.add_argument("--tau", default="median")
    parser.add_argument("--w-min", type=float, default=0.01)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=4, help="per device")
    parser.add_argument("--grad-accum", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--output-dir", default="runs/hf_trainer_talr", help="Trainer output_dir")
    parser.add_argument("--out", default=None, help="write metrics.json (world size, steps, final loss) here")
    args = parser.parse_args()

    use_cpu = not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() == "true"
    # A multi-process launcher (torchrun, accelerate's multi-process launcher) exports WORLD_SIZE; asking for
    # gloo without it is what made `accelerate launch --cpu --num_processes 2` fail with "Default process
    # group has not been initialized": that launcher starts a single process and sets no rank variables.
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if os.environ.get("ACCELERATE_USE_CPU", "").lower() == "true" and "WORLD_SIZE" not in os.environ:
        print("note: `accelerate launch --cpu` starts one process; for several CPU processes use "
              "--config_file examples/accelerate_cpu2.yaml", file=sys.stderr)
    # Built first: TrainingArguments sets up the distributed state (process group) for every launcher.
    targs = TrainingArguments(
        output_dir=args.output_dir, per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum, max_steps=args.steps, learning_rate=args.lr,
        lr_scheduler_type="constant", logging_steps=1, save_strategy="no", report_to=[],
        remove_unused_columns=False, bf16=not use_cpu,
        # without GPUs processes talk through gloo
        use_cpu=use_cpu, ddp_backend="gloo" if use_cpu and launched > 1 else None)

    loaded = load_model(args.model, device="cpu", dtype="float32")  # the Trainer moves it to its device
    pad = pad_token_id(loaded.tokenizer)
    encoded = encode_examples(load_sft(args.data, format=args.format, split="train"), loaded.tokenizer,
                              max_length=args.max_length)
    if not encoded.examples:
        raise SystemExit(f"no training example left after encoding (max_length={args.max_length} cut every response)")
    weights = None
    if args.method == "flow":
        # every process computes the same weights from the same base model and data
        weights, _tau = flow_weight_column(loaded.model, encoded.examples, pad_id=pad, batch_size=args.batch_size)
    loss = TokenLoss(args.method, tau=args.tau, w_min=args.w_min)
    trainer = make_trainer(
        loss, model=loaded.model, args=targs, train_dataset=EncodedDataset(encoded.examples, weights),
        data_collator=WeightCollator(lambda feats: collate(
            [EncodedExample(f["example_id"], f["input_ids"], f["labels"]) for f in feats], pad)))
    result = trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    if trainer.is_world_process_zero():
        metrics = {"world_size": trainer.args.world_size, "method": args.method, "steps": trainer.state.global_step,
                   "final_loss": losses[-1] if losses else math.nan, "train_loss": result.training_loss,
                   "last_micro_batch": {k: v for k, v in loss.last_info.items() if isinstance(v, (int, float))}}
        print(json.dumps(metrics))
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")


if __name__ == "__main__":
    main()
