"""`talr-theory tokens`: teacher-forced token probabilities of an SFT dataset and the estimate of s.

Examples:
    talr-theory tokens --model smollm2-135m --data medcalc-synth:52 --format label --json -
    talr-theory tokens --model stories260k --data my.jsonl --html view.html        # coloured token view
    talr-theory tokens --model BASE --compare-model runs/s/checkpoints/sft_lr0.001_seed0 --html delta.html
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

from talr_theory.commands._common import add_json_flag, human_stream, write_json
from talr_theory.configs import (
    AT_LEAST_ONE,
    COUNT,
    N_BOOT,
    PROBABILITY,
    Range,
    add_dataclass_args,
    check_fields,
    dataclass_from_args,
    to_dict,
)

AT_LEAST_TWO = Range(lo=2, integer=True)  # a top-K entropy needs K >= 2


@dataclass
class TokensConfig:
    model: str = field(default="smollm2-135m", metadata={
        "help": "model spec: smollm2-135m, stories260k, tiny-random[:SEED], a .gguf path, a HF folder or hub id"})
    data: str = field(default="medcalc-synth", metadata={
        "help": "data spec: medcalc-synth[:N], medcalc-bench, or a .csv/.jsonl path"})
    format: Literal["cot", "label"] = field(default="cot", metadata={
        "help": "medical datasets: 'cot' = explanation then 'Answer: X'; 'label' = 'Answer: X' only"})
    template: Literal["none", "chat"] = field(default="none", metadata={
        "help": "'none': ids = tokenizer(prompt) + tokenizer(response, no special tokens); 'chat': chat template"})
    prompt_field: str | None = field(default=None, metadata={
        "help": "prompt field/column of a .jsonl/.csv", "default_text": "prompt"})
    response_field: str | None = field(default=None, metadata={
        "help": "response field/column of a .jsonl/.csv", "default_text": "response"})
    split: Literal["train", "eval"] | None = field(default=None, metadata={
        "help": "keep only the train or the eval side of the deterministic split", "default_text": "all examples"})
    limit: int | None = field(default=None, metadata={"help": "keep at most N examples", "check": AT_LEAST_ONE,
                                                      "default_text": "all"})
    max_length: int = field(default=0, metadata={
        "help": "truncate sequences to N tokens, truncations counted and reported (0: no limit)", "check": COUNT})
    thresholds: tuple[float, ...] = field(default=(0.05, 0.1, 0.2, 0.5), metadata={
        "help": "probability thresholds θ for s(θ)", "check": PROBABILITY})
    batch_size: int = field(default=8, metadata={"help": "examples per forward pass", "check": AT_LEAST_ONE})
    bf16_autocast: bool = field(default=False, metadata={"help": "bf16 autocast for the forward (statistics are computed in fp32 otherwise)"})
    entropy: bool = field(default=True, metadata={
        "help": "record the predictive entropy at each target position (full vocabulary, and EAFT's top-K) and "
                "count confident conflicts"})
    entropy_k: int = field(default=20, metadata={"help": "K of the top-K entropy (EAFT's default 20)", "check": AT_LEAST_TWO})
    conflict_p: float = field(default=0.2, metadata={"help": "confident conflict: target p below this ...",
                                                     "check": PROBABILITY})
    conflict_entropy: float = field(default=0.5, metadata={
        "help": "... and top-K entropy / ln K below this", "check": PROBABILITY})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, ...", "default_text": "cuda when present"})
    n_boot: int = field(default=1000, metadata={"help": "bootstrap resamples for the CIs", "check": N_BOOT})
    seed: int = field(default=0, metadata={"help": "seed for data generation/ordering/split and the bootstrap"})
    hardest: int = field(default=10, metadata={"help": "how many hardest tokens to list", "check": COUNT})
    out: str | None = field(default=None, metadata={
        "help": "folder for tokens.parquet, per_example.csv, hardest.csv and summary.json",
        "default_text": "none, no tables are written"})
    html: str | None = field(default=None, metadata={
        "help": "write a self-contained HTML token view to this file (coloured by p; by Δ log p with --compare-model)",
        "default_text": "none, no page"})
    compare_model: str | None = field(default=None, metadata={
        "help": "a second (e.g. fine-tuned) model spec or sweep checkpoint folder, scored on the same encoding "
                "as --model: Δ log p per token and the paired change of s(θ)"})
    top_k: int = field(default=3, metadata={"help": "top alternatives per token shown in the HTML view",
                                            "check": COUNT})


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "tokens", help="token-difficulty scan of an SFT dataset and the estimate of s",
        description="Teacher-forced probability of every supervised response token, s(θ) = mean number of "
        "tokens with p < θ per example (bootstrap CIs over examples), quantiles and the hardest tokens.")
    add_dataclass_args(parser, TokensConfig)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the tables in --out even when they were computed with other options")
    add_json_flag(parser)
    parser.set_defaults(func=run)


# What ``--out`` holds; a scan with other data/model/options must not be mixed into it.
TOKENS_RESULTS = ("tokens.parquet", "per_example.csv", "hardest.csv", "summary.json", "tokens_compare.parquet",
                  "per_example_change.csv")


def interrupted(args) -> str:
    return "the scan is not resumable, nothing was written"


def analyze(cfg: TokensConfig, progress: bool = True) -> tuple[dict, dict]:
    """Run the scan; returns (summary dict, artifacts dict with the tables)."""
    from talr_theory.data.sft import load_sft
    from talr_theory.models import load_model
    from talr_theory.tokens.analysis import scan_dataset
    from talr_theory.tokens.stats import hardest_tokens, per_example_counts, s_statistics, token_summary

    # read the data first: a malformed file fails before the (slower) model load
    load_sft(cfg.data, format=cfg.format, prompt_field=cfg.prompt_field, response_field=cfg.response_field,
             limit=cfg.limit, seed=cfg.seed, split=cfg.split)
    t0 = time.perf_counter()
    loaded = load_model(cfg.model, device=cfg.device)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    table, enc = scan_dataset(loaded, cfg.data, format=cfg.format, template=cfg.template, limit=cfg.limit,
                              seed=cfg.seed, split=cfg.split, prompt_field=cfg.prompt_field,
                              response_field=cfg.response_field, max_length=cfg.max_length or None,
                              batch_size=cfg.batch_size, bf16_autocast=cfg.bf16_autocast,
                              with_entropy=cfg.entropy, progress=progress,
                              top_k=cfg.top_k if (cfg.html or cfg.compare_model) else 0, entropy_k=cfg.entropy_k)
    scan_s = time.perf_counter() - t0
    s = s_statistics(table, cfg.thresholds, n_boot=cfg.n_boot, seed=cfg.seed)
    summ = token_summary(table, n_boot=cfg.n_boot, seed=cfg.seed)
    hard = hardest_tokens(table, enc.examples, loaded.tokenizer, k=cfg.hardest)
    summary = {
        "n_examples": summ["n_examples"],
        "n_target_tokens": summ["n_target_tokens"],
        "s": {f"{th:g}": {"mean": v["mean"], "ci": list(v["ci"])} for th, v in s.items()},
        "median_p": summ["median_p"],
        "frac_p_gt_0.2": summ["frac_p_gt_0.2"],
        "frac_p_gt_0.2_ci": list(summ["frac_p_gt_0.2_ci"]),
        "quantiles_p": summ["quantiles_p"],
        "mean_nll": summ["mean_nll"],
        "tokens_per_example": summ["tokens_per_example"],
        "truncated_examples": enc.n_truncated,
        "truncated_ids": enc.truncated_ids,
        "dropped_examples": len(enc.dropped_ids),
        "dropped_ids": enc.dropped_ids,
        "hardest_tokens": [{"example_id": r.example_id, "position": int(r.position), "token": r.token_text,
                            "p": float(r.p), "context": r.context} for r in hard.itertuples()],
        "model": {"spec": cfg.model, "n_params": loaded.n_params, "device": str(loaded.device),
                  "dtype": str(loaded.dtype).replace("torch.", "")},
        "scan": {**table.attrs.get("scan", {}), "seconds": scan_s, "model_load_seconds": load_s,
                 "real_tokens_per_s": table.attrs.get("scan", {}).get("n_real_tokens", 0) / scan_s if scan_s else None},
        "config": to_dict(cfg),
    }
    art = {"tokens": table, "per_example": per_example_counts(table, cfg.thresholds), "hardest": hard,
           "encoded": enc.examples, "tokenizer": loaded.tokenizer}
    if cfg.entropy:
        _entropy_outputs(cfg, table, summary, art)
    if cfg.compare_model:
        _compare(cfg, loaded, table, enc, summary, art, progress)
    return summary, art


def _entropy_outputs(cfg: TokensConfig, table, summary: dict, art: dict) -> None:
    """Entropy quantiles and confident conflicts (with intervals) into the summary and the per-example table."""
    from talr_theory.tokens.stats import confident_conflicts, entropy_summary, per_example_conflicts

    summary["entropy"] = dict(entropy_summary(table), k=cfg.entropy_k)
    summary["confident_conflicts"] = confident_conflicts(table, cfg.conflict_p, cfg.conflict_entropy,
                                                         n_boot=cfg.n_boot, seed=cfg.seed)
    counts = per_example_conflicts(table, cfg.conflict_p, cfg.conflict_entropy)
    art["per_example"]["n_confident_conflicts"] = art["per_example"]["example_id"].map(counts).to_numpy()


def _compare(cfg: TokensConfig, loaded, base_table, enc, summary: dict, art: dict, progress: bool) -> None:
    """Score ``cfg.compare_model`` on the base model's encoding; add the comparison to summary/art."""
    from talr_theory.data.encode import encode_examples
    from talr_theory.data.sft import load_sft
    from talr_theory.models import load_model
    from talr_theory.tokens.compare import compare_summary, paired_table, per_example_change
    from talr_theory.tokens.scanner import scan_tokens

    tuned = load_model(cfg.compare_model, device=cfg.device)
    # Δ log p is only meaningful token by token if both models tokenize the data identically
    examples = load_sft(cfg.data, format=cfg.format, prompt_field=cfg.prompt_field,
                        response_field=cfg.response_field, limit=cfg.limit, seed=cfg.seed, split=cfg.split)
    check = encode_examples(examples, tuned.tokenizer, template=cfg.template, max_length=cfg.max_length or None)
    for a, b in zip(enc.examples, check.examples):
        if a.input_ids != b.input_ids or a.labels != b.labels:
            raise ValueError(f"--compare-model {cfg.compare_model!r} tokenizes example {a.example_id!r} differently "
                             f"from --model {cfg.model!r}: a token-by-token comparison needs the same tokenizer")
    if len(check.examples) != len(enc.examples):
        raise ValueError(f"--compare-model {cfg.compare_model!r} encodes a different number of examples")
    tuned_table = scan_tokens(tuned, enc.examples, batch_size=cfg.batch_size, bf16_autocast=cfg.bf16_autocast,
                              with_entropy=cfg.entropy, progress=progress, top_k=cfg.top_k,
                              entropy_k=cfg.entropy_k)
    comp = compare_summary(base_table, tuned_table, cfg.thresholds, n_boot=cfg.n_boot, seed=cfg.seed,
                           encoded=enc.examples, tokenizer=loaded.tokenizer, k=cfg.hardest)
    summary.update(comp)
    summary["compare_model"] = {"spec": cfg.compare_model, "n_params": tuned.n_params, "device": str(tuned.device),
                                "dtype": str(tuned.dtype).replace("torch.", "")}
    paired = paired_table(base_table, tuned_table)
    art["paired"] = paired
    art["per_example_change"] = per_example_change(paired, cfg.thresholds)


def write_html(cfg: TokensConfig, summary: dict, art: dict) -> None:
    from talr_theory.outputs import atomic_write_text
    from talr_theory.tokens.view import render_token_view

    head = dict(summary, model=cfg.model, data=f"{cfg.data} ({cfg.format}, template {cfg.template})",
                compare_model=cfg.compare_model)
    table = art.get("paired", art["tokens"])
    title = (f"Token Δ log p: {cfg.compare_model} vs {cfg.model}" if cfg.compare_model
             else f"Token difficulty: {cfg.model}")
    page = render_token_view(table, art["encoded"], art["tokenizer"], head, cfg.thresholds, title=title,
                             conflict=(cfg.conflict_p, cfg.conflict_entropy))
    atomic_write_text(cfg.html, page)


def write_tables(out: str, summary: dict, art: dict) -> None:
    """The scan's tables into ``out``, each file written atomically."""
    from pathlib import Path

    from talr_theory.outputs import atomic_write

    folder = Path(out)
    table = art["tokens"]
    table.attrs = {}
    atomic_write(folder / "tokens.parquet", lambda tmp: table.to_parquet(tmp, index=False))
    atomic_write(folder / "per_example.csv", lambda tmp: art["per_example"].to_csv(tmp, index=False))
    atomic_write(folder / "hardest.csv", lambda tmp: art["hardest"].to_csv(tmp, index=False))
    if "paired" in art:
        atomic_write(folder / "tokens_compare.parquet", lambda tmp: art["paired"].to_parquet(tmp, index=False))
        atomic_write(folder / "per_example_change.csv",
                     lambda tmp: art["per_example_change"].to_csv(tmp, index=False))
    write_json(summary, str(folder / "summary.json"))


def experiment_config(cfg: TokensConfig) -> dict:
    """What determines the tables in --out (not where they or the HTML go, nor the device)."""
    return {k: v for k, v in to_dict(cfg).items() if k not in ("out", "html", "device")}


def run(args) -> int:
    import contextlib

    from talr_theory.outputs import claim_folder

    cfg = check_fields(dataclass_from_args(TokensConfig, args))
    stream = human_stream(args.json)
    claim = (claim_folder(cfg.out, "tokens", experiment_config(cfg), overwrite=args.overwrite,
                          results=TOKENS_RESULTS) if cfg.out else contextlib.nullcontext())
    with claim:  # locked and checked before the scan, so a conflict costs no work
        summary, art = analyze(cfg)
        if cfg.html:
            write_html(cfg, summary, art)
        if cfg.out:
            write_tables(cfg.out, summary, art)
    s_text = ", ".join(f"s({k})={v['mean']:.2f} [{v['ci'][0]:.2f}, {v['ci'][1]:.2f}]" for k, v in summary["s"].items())
    print(f"{cfg.model} on {cfg.data} ({cfg.format}, template {cfg.template}): {summary['n_examples']} examples, "
          f"{summary['n_target_tokens']} target tokens, median p {summary['median_p']:.3f}, "
          f"frac p>0.2 {summary['frac_p_gt_0.2']:.3f}", file=stream)
    print(f"  {s_text}", file=stream)
    if "confident_conflicts" in summary:
        cc, ent = summary["confident_conflicts"], summary["entropy"]
        print(f"  entropy median {ent['full_nats']['quantiles']['0.5']:.3f} nats (top-{ent['k']} / ln K median "
              f"{ent['topk_normalized']['quantiles']['0.5']:.3f}); confident conflicts (p < {cc['p_below']:g}, "
              f"top-K entropy < {cc['topk_entropy_below']:g}) {cc['per_example']:.2f} per example "
              f"[{cc['per_example_ci'][0]:.2f}, {cc['per_example_ci'][1]:.2f}]", file=stream)
    print(f"  truncated {summary['truncated_examples']}, dropped {summary['dropped_examples']}; "
          f"scan {summary['scan']['seconds']:.1f} s ({summary['scan']['real_tokens_per_s']:.0f} tok/s)", file=stream)
    if cfg.compare_model:
        ch = ", ".join(f"Δs({k})={v['mean']:+.2f} [{v['ci_lo']:+.2f}, {v['ci_hi']:+.2f}]"
                       for k, v in summary["s_change"].items())
        print(f"  vs {cfg.compare_model}: mean Δ log p {summary['mean_dlogp']:+.4f} nats/token, frac p>0.2 "
              f"{summary['frac_p_gt_0.2_before']:.3f} -> {summary['frac_p_gt_0.2_after']:.3f}; {ch}", file=stream)
    if cfg.html:
        print(f"  token view written to {cfg.html}", file=stream)
    if cfg.out:
        print(f"  tables written to {cfg.out}", file=stream)
    write_json(summary, args.json)
    return 0
