"""The training core: one loop, every method an option.

- ``config``      ``TrainConfig`` (no torch import; the CLI builds its flags from it).
- ``objectives``  per-token losses: ``ce_loss``, ``talr_loss``, ``dft_loss``, ``flow_loss``, ``eaft_loss``,
                  ``asft_loss``, ``truncate_hard_loss`` (docs/objectives.md).
- ``params``      L2-to-init, LoRA (peft), WiSE-FT interpolation.
- ``core``        ``train(model, examples, config, evaluator, on_checkpoint) -> TrainResult``.
- ``evaluation``  ``CheckpointEvaluator``: Δ*, ΔL(P1) on real text and KL(q0||qθ) on base samples, accuracy.
- ``hf``          ``TokenLoss`` for ``transformers.Trainer(compute_loss_func=...)``; FLOW weights through the
                  batch (``WeightCollator``, ``make_trainer``); TRL's ``SFTTrainer`` (``make_sft_trainer``).
- ``lmeval``      lm-eval-harness scores of the in-memory model at checkpoints (optional extra).
- ``sweep``       resumable, shardable methods × LRs × seeds sweeps (``talr-theory sweep``, ``--shard K/N``).
"""
