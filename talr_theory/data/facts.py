"""A learnable domain with checkable answers: fictitious facts, held-out paraphrased prompts.

Each fact is (person, relation, answer): a made-up person (so no pretrained model can know it) and an
answer from a small pool of ordinary words (so the answer tokens are ordinary tokens). Every fact is
asked with several paraphrased prompt templates; the training split uses the first templates and the
evaluation split the held-out last one, so accuracy measures recall of the fact from a prompt the
model was never trained on, not copying of a training string.

Two supervision formats of the same facts (one data spec, ``response=``):

- ``label``: the response restates the subject before the answer (" Mara Velk lives in Paris."), so it
  holds easy tokens (the copied name, the relation words) and hard ones (the answer) — the mix the
  paper's token analysis is about;
- ``rationale``: a short rationale precedes the same statement (" The record of Mara Velk lists a
  home city. Mara Velk lives in Paris."), the analogue of supervising with reasoning.

Both end in the same answer tokens, so accuracy is read on the same span in both. ``meta["answer"]`` is the answer string and ``meta["answer_prefix"]`` the part of
the response before it, from which the answer's token span is found after encoding
(:func:`answer_spans`). Accuracy is teacher-forced exact match on that span: every answer token is the
model's most likely token given the prompt and the preceding response tokens (one forward pass, no
generation).

Spec: ``facts`` or ``facts:N`` (N facts, default 96: 96 held-out prompts, 192 training examples),
deterministic by ``seed``.
"""

from __future__ import annotations

import numpy as np

from talr_theory.data.records import SFTExample

DEFAULT_N_FACTS = 96
RESPONSES = ("label", "rationale")

FIRST = ("Mara", "Tovin", "Lisel", "Orrin", "Keva", "Dacen", "Ysolde", "Brannic", "Telma", "Quillon",
         "Ansel", "Rivka", "Jorun", "Pell", "Saffa", "Idris", "Nolwen", "Caspar", "Wenna", "Elric")
LAST = ("Velk", "Amberlow", "Crannoch", "Dusk", "Fennimore", "Gallow", "Harth", "Ivers", "Jessup",
        "Kittredge", "Lorne", "Marsh", "Norwood", "Oakes", "Pryce", "Quarry", "Rook", "Stroud")

# relation -> the rationale sentence of the "rationale" format (it names what the record holds, not the answer)
RATIONALE = {"city": "The record of {p} lists a home city.", "job": "The record of {p} lists a profession.",
             "color": "The record of {p} lists a favorite color."}

# relation -> (answer pool, response template, prompt templates; the LAST prompt template is held out)
RELATIONS = {
    "city": (("Paris", "London", "Tokyo", "Cairo", "Berlin", "Madrid", "Moscow", "Sydney"),
             "{p} lives in",
             ("Where does {p} live?", "In which city is {p}'s home?", "Which city does {p} call home?")),
    "job": (("doctor", "teacher", "farmer", "pilot", "baker", "lawyer", "painter", "nurse"),
            "{p} works as a",
            ("What is {p}'s job?", "What does {p} do for a living?", "What is the profession of {p}?")),
    "color": (("red", "blue", "green", "yellow", "purple", "orange", "black", "white"),
              "{p}'s favorite color is",
              ("What is {p}'s favorite color?", "Which color does {p} like best?",
               "What color does {p} prefer?")),
}


def make_facts(n: int = DEFAULT_N_FACTS, seed: int = 0) -> list[dict]:
    """``n`` facts with distinct made-up people, relations cycled, answers drawn uniformly."""
    if n < 1:
        raise ValueError(f"facts: need at least one fact, got n={n}")
    names = [f"{a} {b}" for a in FIRST for b in LAST]
    if n > len(names):
        raise ValueError(f"facts: at most {len(names)} facts (distinct names), got n={n}")
    rng = np.random.default_rng(seed)
    people = [names[i] for i in rng.permutation(len(names))[:n]]
    rels = list(RELATIONS)
    facts = []
    for i, person in enumerate(people):
        rel = rels[i % len(rels)]
        pool = RELATIONS[rel][0]
        facts.append({"fact_id": f"fact-{i}", "person": person, "relation": rel,
                      "answer": pool[int(rng.integers(len(pool)))]})
    return facts


def answer_prefix(fact: dict, response: str = "label") -> str:
    """The response before the answer word, in format ``response`` (``label`` or ``rationale``)."""
    if response not in RESPONSES:
        raise ValueError(f"facts: unknown response format {response!r}; expected one of {RESPONSES}")
    statement = RELATIONS[fact["relation"]][1].format(p=fact["person"])
    if response == "label":
        return " " + statement
    return " " + RATIONALE[fact["relation"]].format(p=fact["person"]) + " " + statement


def fact_examples(facts: list[dict], response: str = "label") -> list[SFTExample]:
    """Every fact under every prompt template; ``meta['template']`` is its index (the last is held out)."""
    out = []
    for f in facts:
        prompts = RELATIONS[f["relation"]][2]
        prefix = answer_prefix(f, response)
        for k, q in enumerate(prompts):
            prompt = f"Question: {q.format(p=f['person'])}\nAnswer:"
            meta = {"fact_id": f["fact_id"], "relation": f["relation"], "answer": f["answer"], "format": response,
                    "answer_prefix": prefix, "template": k, "held_out_template": k == len(prompts) - 1}
            out.append(SFTExample(f"{f['fact_id']}-t{k}", prompt, f"{prefix} {f['answer']}.", meta))
    return out


def parse_facts_spec(spec: str) -> int | None:
    """N of a ``facts`` / ``facts:N`` spec (the default N for ``facts``); None when ``spec`` is not the facts domain."""
    low = spec.lower()
    if low != "facts" and not low.startswith("facts:"):
        return None
    try:
        return int(spec.split(":", 1)[1]) if ":" in spec else DEFAULT_N_FACTS
    except ValueError:
        raise ValueError(f"data spec {spec!r}: expected 'facts:N' with an integer N") from None


def load_facts(n: int = DEFAULT_N_FACTS, seed: int = 0, split: str | None = None,
               response: str = "label") -> list[SFTExample]:
    """The facts domain: ``train`` = the training templates, ``eval`` = the held-out template, None = all.

    ``response`` picks the supervision format (``label`` or ``rationale``) of the same facts.
    """
    examples = fact_examples(make_facts(n, seed), response)
    if split is None:
        return examples
    if split == "train":
        return [e for e in examples if not e.meta["held_out_template"]]
    if split == "eval":
        return [e for e in examples if e.meta["held_out_template"]]
    raise ValueError(f"unknown split {split!r}; expected 'train', 'eval' or None")


def answer_spans(examples: list[SFTExample], encoded: list, tokenizer) -> list[tuple[int, int] | None]:
    """Per encoded example, the [start, end) positions in ``input_ids`` of its answer tokens (None: no answer).

    The answer tokens are those that the response has beyond the tokenization of
    ``answer_prefix + " " + answer`` minus that of ``answer_prefix``. A tokenizer that merges the prefix's
    last token with the answer would make the split ambiguous; that raises an error naming the example.
    """
    by_id = {e.example_id: e for e in examples}
    spans = []
    for enc in encoded:
        ex = by_id.get(enc.example_id)
        if ex is None or "answer" not in ex.meta:
            spans.append(None)
            continue
        pre = list(tokenizer(ex.meta["answer_prefix"], add_special_tokens=False).input_ids)
        full = list(tokenizer(ex.meta["answer_prefix"] + " " + ex.meta["answer"], add_special_tokens=False).input_ids)
        if full[:len(pre)] != pre or len(full) == len(pre):
            raise ValueError(f"example {enc.example_id}: the answer {ex.meta['answer']!r} does not tokenize as a "
                             f"separate span after {ex.meta['answer_prefix']!r}")
        first = next(i for i, lab in enumerate(enc.labels) if lab != -100)
        start = first + len(pre)
        end = first + len(full)
        if enc.input_ids[start:end] != full[len(pre):]:
            raise ValueError(f"example {enc.example_id}: answer tokens not found where expected in the encoding")
        spans.append((start, end))
    return spans
