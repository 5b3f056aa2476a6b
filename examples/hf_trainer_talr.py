"""TALR inside the Hugging Face Trainer, single process or multi-GPU through accelerate, unchanged.

    # one process (CPU or one GPU)
    python examples/hf_trainer_talr.py --model tiny-random --data medcalc-synth:64 --steps 5
    # several GPUs (or, for a CPU smoke test, torchrun with gloo)
    accelerate launch --num_processes 2 examples/hf_trainer_talr.py --model smollm2-135m --steps 100
    torchrun --nproc_per_node 2 examples/hf_trainer_talr.py --model tiny-random --steps 3 --max-length 2048

The only TALR-specific line is ``compute_loss_func=TokenLoss("talr", ...)``. The Trainer passes the
number of supervised tokens of the whole accumulated batch, summed over processes, and scales the
loss for DDP, so the gradient is the token mean over the global batch (see training/hf.py). TALR's
median τ is per micro-batch and per process.
"""

from __future__ import annotations

import argparse

import torch
from transformers import Trainer, TrainingArguments

from talr_theory.data.encode import EncodedExample, collate, encode_examples
from talr_theory.data.sft import load_sft
from talr_theory.models import load_model, pad_token_id
from talr_theory.training.hf import TokenLoss


class EncodedDataset(torch.utils.data.Dataset):
    def __init__(self, examples: list[EncodedExample]):
        self.examples = examples

    def __len__(self):
        return len(self.examples)

    def __getitem__(self, i):
        ex = self.examples[i]
        return {"example_id": ex.example_id, "input_ids": ex.input_ids, "labels": ex.labels}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--data", default="medcalc-synth")
    parser.add_argument("--format", default="cot", choices=("cot", "label"))
    parser.add_argument("--method", default="talr", choices=("sft", "talr", "dft"))
    parser.add_argument("--tau", default="median")
    parser.add_argument("--w-min", type=float, default=0.01)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=4, help="per device")
    parser.add_argument("--grad-accum", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--output-dir", default="runs/hf_trainer_talr")
    args = parser.parse_args()

    loaded = load_model(args.model, device="cpu", dtype="float32")  # the Trainer moves it to its device
    pad = pad_token_id(loaded.tokenizer)
    encoded = encode_examples(load_sft(args.data, format=args.format, split="train"), loaded.tokenizer,
                              max_length=args.max_length)
    if not encoded.examples:
        raise SystemExit(f"no training example left after encoding (max_length={args.max_length} cut every response)")
    loss = TokenLoss(args.method, tau=args.tau, w_min=args.w_min)
    targs = TrainingArguments(
        output_dir=args.output_dir, per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum, max_steps=args.steps, learning_rate=args.lr,
        lr_scheduler_type="constant", logging_steps=1, save_strategy="no", report_to=[],
        remove_unused_columns=False, bf16=torch.cuda.is_available(),
        # without GPUs (CPU smoke test under torchrun) processes talk through gloo
        use_cpu=not torch.cuda.is_available(), ddp_backend=None if torch.cuda.is_available() else "gloo")
    trainer = Trainer(
        model=loaded.model, args=targs, train_dataset=EncodedDataset(encoded.examples),
        data_collator=lambda feats: collate(
            [EncodedExample(f["example_id"], f["input_ids"], f["labels"]) for f in feats], pad),
        compute_loss_func=loss)
    trainer.train()
    if trainer.is_world_process_zero():
        print(f"processes: {trainer.args.world_size}; last micro-batch: {loss.last_info.get('n_tokens')} tokens, "
              f"TALR mean weight {loss.last_info.get('mean_weight'):.3f}, tau {loss.last_info.get('tau')}")


if __name__ == "__main__":
    main()
