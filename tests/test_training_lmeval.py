"""lm-eval-harness on the in-memory model (the ``lmeval`` extra), offline, with local YAML tasks over JSONL.

The scores must come from the very model object we hold: per-choice log-likelihoods that lm-eval
logged are recomputed with our own teacher-forced pass (1e-4 nats, float32), greedy generations are
recomputed with ``model.generate``, and after changing the weights in place the scores follow.
"""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("lm_eval")

from talr_theory.models import load_model  # noqa: E402
from talr_theory.training.lmeval import BenchmarkScorer, tidy_benchmarks  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def write_tasks(folder) -> str:
    """Two local tasks: toy_mc (multiple choice, acc) and toy_em (generate_until, exact_match)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "mc.jsonl", "w") as fh:
        for i in range(6):
            fh.write(json.dumps({"question": f"Which number follows {i}?", "choices": [str(i + 1), str(i + 7), "cat"],
                                 "answer": 0}) + "\n")
    with open(folder / "em.jsonl", "w") as fh:
        for i in range(3):
            fh.write(json.dumps({"question": f"Repeat {i}:", "answer": str(i)}) + "\n")
    common = "dataset_path: json\ntest_split: test\n"
    (folder / "mc.yaml").write_text(
        f"task: toy_mc\n{common}dataset_kwargs:\n  cache_dir: {folder / 'hf-cache'}\n  data_files:\n"
        f"    test: {folder / 'mc.jsonl'}\noutput_type: multiple_choice\n"
        'doc_to_text: "{{question}} Answer:"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: "{{answer}}"\n'
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n")
    (folder / "em.yaml").write_text(
        f"task: toy_em\n{common}dataset_kwargs:\n  cache_dir: {folder / 'hf-cache'}\n  data_files:\n"
        f"    test: {folder / 'em.jsonl'}\noutput_type: generate_until\n"
        'doc_to_text: "{{question}}"\ndoc_to_target: "{{answer}}"\n'
        'generation_kwargs:\n  until: ["\\n"]\n  max_gen_toks: 4\n  do_sample: false\n'
        "metric_list:\n  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n")
    return str(folder)


@pytest.fixture(scope="module")
def tasks_dir(tmp_path_factory):
    return write_tasks(tmp_path_factory.mktemp("lmeval-tasks"))


def _loglik(model, tok, context: str, continuation: str) -> float:
    """Σ log p(continuation | context) by our own pass, tokens as lm-eval's HFLM encodes them by default
    (the tokenizer's own special tokens, so <s> first; the whole string, split at the context length)."""
    ctx = tok(context)["input_ids"]
    whole = tok(context + continuation)["input_ids"]
    ids = torch.tensor([whole])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), dim=-1)
    targets = ids[0, 1:]
    return float(logp[torch.arange(len(ctx) - 1, len(whole) - 1), targets[len(ctx) - 1:]].sum())


def _check_against_our_model(scorer, model, tok):
    out = scorer.last_output
    mc = out["samples"]["toy_mc"]
    correct = 0
    for sample in mc:
        ours = [_loglik(model, tok, ctx, cont) for ctx, cont in sample["arguments"]]
        theirs = [float(r[0]) for r in sample["filtered_resps"]]
        assert ours == pytest.approx(theirs, abs=1e-4)
        correct += int(max(range(len(ours)), key=ours.__getitem__) == sample["doc"]["answer"])
    return correct / len(mc)


def test_scores_come_from_the_in_memory_model(tasks_dir):
    lm = load_model("tiny-random", device="cpu", dtype="float32")
    model, tok = lm.model.eval(), lm.tokenizer
    scorer = BenchmarkScorer("toy_mc,toy_em", tok, include_path=tasks_dir, batch_size=4)
    first = scorer(model)
    assert first["bench/toy_mc/acc"] == pytest.approx(_check_against_our_model(scorer, model, tok))
    assert first["bench/toy_mc/acc_stderr"] > 0  # closed-form stderr of a mean over 6 documents
    # greedy generations are the model's own: recompute them with generate()
    for sample in scorer.last_output["samples"]["toy_em"]:
        prompt = sample["arguments"][0][0]
        ids = torch.tensor([tok(prompt)["input_ids"]])
        gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=4,
                             pad_token_id=0)
        text = tok.decode(gen[0, ids.shape[1]:], skip_special_tokens=True).split("\n")[0]
        assert sample["resps"][0][0] == text
    assert first["bench_mean"] == pytest.approx((first["bench/toy_mc/acc"] + first["bench/toy_em/exact_match"]) / 2)
    # change the weights in place: no reload, so the log-likelihoods follow the new weights
    before = [float(r[0]) for r in scorer.last_output["samples"]["toy_mc"][0]["filtered_resps"]]
    with torch.no_grad():
        model.lm_head.weight.mul_(3.0)
    second = scorer(model)
    after = [float(r[0]) for r in scorer.last_output["samples"]["toy_mc"][0]["filtered_resps"]]
    assert max(abs(a - b) for a, b in zip(after, before)) > 0.1
    assert second["bench/toy_mc/acc"] == pytest.approx(_check_against_our_model(scorer, model, tok))


@pytest.mark.slow  # an unknown name is only known unknown after indexing all of lm-eval's tasks (~20 s)
def test_unknown_task_is_a_clear_error(tasks_dir):
    lm = load_model("tiny-random", device="cpu", dtype="float32")
    with pytest.raises(ValueError, match="unknown lm-eval task.*toy_nope"):
        BenchmarkScorer("toy_mc,toy_nope", lm.tokenizer, include_path=tasks_dir)


def test_sweep_stores_benchmark_scores_next_to_delta_star(tmp_path, tasks_dir):
    import pandas as pd

    from talr_theory.plotting.training import save_sweep_figures
    from talr_theory.training.config import TrainConfig
    from talr_theory.training.sweep import SweepConfig, run_sweep

    config = SweepConfig(model="tiny-random", data="medcalc-synth:12", format="label", methods=("sft",), lrs=(1e-2,),
                         n_train=8, n_eval=4, general_text="fallback", general_blocks=2, block_len=32, n_samples=0,
                         train_probe=0, lm_eval_tasks="toy_mc", lm_eval_include=tasks_dir, out=str(tmp_path / "out"),
                         train=TrainConfig(steps=4, eval_every=2, batch_size=4))
    summary = run_sweep(config, progress=False)
    table = pd.read_parquet(tmp_path / "out" / "results.parquet")
    assert len(table) == 3 and {"delta_star", "delta_L_text", "bench/toy_mc/acc", "bench_drop"} <= set(table.columns)
    assert table.loc[table["step"] == 0, "bench_drop"].iloc[0] == 0.0  # step 0 is the base model
    assert table["bench/toy_mc/acc"].between(0, 1).all()
    assert summary["final"][0]["bench_mean"] == table.loc[table["step"] == 4, "bench_mean"].iloc[0]
    tidy = tidy_benchmarks(table)
    assert len(tidy) == 3 and set(tidy["metric"]) == {"acc"} and (tidy["task"] == "toy_mc").all()
    paths = save_sweep_figures(table, tmp_path / "figs")
    assert any(p.name == "sweep_tradeoff_bench.png" and p.stat().st_size > 0 for p in paths)
