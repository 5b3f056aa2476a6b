"""Theorem 3.2 on the real model: controlled-s probes, one-step lines ΔL(P1) along θ0 − λd, and λ_max(ε).

Probes: the second copy of a repeated passage (base-model samples by default, so no file outside the
package is read), supervised on tokens the base model predicts with p > ``p_easy`` plus s nested random
replacements and their successors. One SGD step direction each; ΔL(P1) is measured along the line
θ0 − λd on a geometric λ grid (:func:`line_scan`, the one line scan of the tier, also used for the
label-only vs rationale comparison), and λ_max(ε) is interpolated in log-log between bracketing grid
points (:func:`lambda_max_from_grid`), on the mean over P1 units or on each unit.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from talr_theory.tiers.llm.config import Config
from talr_theory.tiers.protocol import ensure_rows, results_table


def probe_group(passage: list[int], bos: int | None, base_p: np.ndarray, s_values, vocab: np.ndarray,
                rng: np.random.Generator, p_easy: float, group: int) -> dict[int, object]:
    """Probes for one group: s -> EncodedExample on BOS + A + A with s nested random replacements in the copy.

    ``base_p[j]`` is the base model's p of the j-th token of the second copy in the unmodified text.
    Replacement sites are non-adjacent positions of the copy (not its last token) whose token and
    successor have p > ``p_easy``; the sites of s are the first s of one random order (nested). The
    supervised tokens are the easy tokens (p > p_easy) plus each site and its successor. s = 0 is
    always included (the unmodified text, same supervision rule).
    """
    from talr_theory.data.encode import IGNORE, EncodedExample

    m = len(passage)
    head = [bos] if bos is not None else []
    start = len(head) + m  # index of the copy's first token in input_ids
    ids0 = head + list(passage) + list(passage)
    easy = base_p > p_easy
    cand = [j for j in range(m - 1) if easy[j] and easy[j + 1]]
    rng.shuffle(cand)
    sites: list[int] = []
    for j in cand:
        if all(abs(j - k) > 1 for k in sites):
            sites.append(j)
        if len(sites) == max(s_values):
            break
    if len(sites) < max(s_values):
        raise ValueError(f"probe group {group}: only {len(sites)} non-adjacent easy sites in a copy of {m} tokens "
                         f"(need {max(s_values)}); use a longer passage_len or a lower p_easy")
    out = {}
    for s in sorted({0, *s_values}):
        ids = list(ids0)
        sup = set(np.flatnonzero(easy).tolist())
        for j in sites[:s]:
            orig = ids[start + j]
            new = orig
            while new == orig:
                new = int(vocab[rng.integers(len(vocab))])
            ids[start + j] = new
            sup |= {j, j + 1}
        labels = [IGNORE] * len(ids)
        for j in sup:
            labels[start + j] = ids[start + j]
        out[s] = EncodedExample(f"probe-g{group}-s{s}", ids, labels)
    return out


def lambda_max_from_grid(lams: np.ndarray, dl: np.ndarray, eps: float) -> float:
    """Smallest λ with ΔL(λ) = ε, interpolated between the first bracketing grid points (log-log when both > 0).

    NaN when no grid point exceeds ε, or when the first grid point already does (the bracket would need
    the origin).
    """
    above = np.flatnonzero(dl > eps)
    if not len(above) or above[0] == 0:
        return math.nan
    i = above[0]
    l0, l1, d0, d1 = lams[i - 1], lams[i], dl[i - 1], dl[i]
    if d0 > 0:
        f = (math.log(eps) - math.log(d0)) / (math.log(d1) - math.log(d0))
    else:
        f = (eps - d0) / (d1 - d0)
    return float(math.exp(math.log(l0) + f * (math.log(l1) - math.log(l0))))


def _norm(d: list[torch.Tensor]) -> float:
    return math.sqrt(sum(float((x.double() ** 2).sum()) for x in d)) or 1.0


def line_scan(tail, direction: list[torch.Tensor], general, eps_min: float, eps_max: float, lam_start: float,
              factor: float, max_evals: int = 16) -> list[dict]:
    """ΔL of both P1 at λ = (lam_start/‖d‖)·factor^k (k moving down first if needed) until both exceed ``eps_max``.

    One row per λ: the mean ``dL_<p1>`` and the per-unit values ``units_<p1>`` (samples / text blocks).
    The parameters are restored to θ0 afterwards.
    """
    params = [p for p in tail.parameters() if p.requires_grad]
    theta0 = [p.detach().clone() for p in params]
    evals: dict[float, dict] = {}

    def at(lam):
        if lam not in evals:
            with torch.no_grad():
                torch._foreach_copy_(params, theta0)
                torch._foreach_add_(params, direction, alpha=-lam)
            evals[lam] = general(tail)
        return {p1: float(v.mean()) for p1, v in evals[lam].items()}

    lam = lam_start / _norm(direction)
    while len(evals) < max_evals and max(at(lam).values()) >= eps_min and lam > 1e-12:
        lam /= factor * factor
    lam = min(evals)
    while len(evals) < max_evals and min(at(lam).values()) <= eps_max:
        lam *= factor
    with torch.no_grad():
        torch._foreach_copy_(params, theta0)
    return [{"lam": k, **{f"dL_{p}": float(u.mean()) for p, u in v.items()},
             **{f"units_{p}": [float(x) for x in u] for p, u in v.items()}} for k, v in sorted(evals.items())]


def unit_lambda_max(lines: pd.DataFrame, p1: str, eps: float) -> np.ndarray:
    """λ_max(ε) of every P1 unit from one line's rows (``lam`` and ``units_<p1>``); NaN where not bracketed."""
    lines = lines.sort_values("lam")
    units = np.array([list(u) for u in lines[f"units_{p1}"]], dtype=float)  # [n_lams, n_units]
    lams = lines["lam"].to_numpy(float)
    return np.array([lambda_max_from_grid(lams, units[:, k], eps) for k in range(units.shape[1])])


def _passages(env, cfg: Config) -> list:
    """Probe passages: base-model samples, or an explicitly named ``data.general`` source (never a silent file)."""
    if cfg.passage_text == "samples":
        from talr_theory.training.samples import sample_from_model

        # A sample can end early (EOS), leaving too few easy sites for a probe: draw three per group and keep
        # the longest, in draw order among equals (deterministic for a seed).
        drawn = sample_from_model(env.loaded.model, env.tok, 3 * cfg.n_groups, cfg.passage_len, seed=cfg.seed + 7,
                                  pad_id=env.pad).examples
        order = sorted(range(len(drawn)), key=lambda i: (-len(drawn[i].input_ids), i))
        return [drawn[i] for i in sorted(order[:cfg.n_groups])]
    from talr_theory.data.general import load_general_text

    return load_general_text(env.tok, cfg.passage_text, cfg.n_groups, cfg.passage_len, seed=cfg.seed + 7).examples


def _group(env, cfg: Config, g: int, block, vocab: np.ndarray) -> tuple[dict, dict[int, int]]:
    """One group's probes (s -> example) and their measured hard-token counts (p < hard_threshold)."""
    from talr_theory.data.encode import IGNORE, EncodedExample
    from talr_theory.tokens.scanner import scan_tokens
    from talr_theory.tokens.stats import per_example_counts

    bos = getattr(env.tok, "bos_token_id", None)
    bos = bos if isinstance(bos, int) else None
    passage = [t for t in block.input_ids if t != bos][: cfg.passage_len]
    head = [bos] if bos is not None else []
    m = len(passage)
    plain = EncodedExample(f"plain-{g}", head + passage + passage, [IGNORE] * (len(head) + m) + passage)
    base_p = scan_tokens(env.as_loaded(), [plain], progress=False)["p"].to_numpy()
    probes = probe_group(passage, bos, base_p, cfg.s_values, vocab, np.random.default_rng([cfg.seed, g]),
                         cfg.p_easy, g)
    env.tail.warm(list(probes.values()))
    scan = scan_tokens(env.as_loaded(), list(probes.values()), progress=False)
    counts = per_example_counts(scan, (cfg.hard_threshold,)).set_index("example_id")
    col = f"n_p_lt_{cfg.hard_threshold:g}"
    return probes, {s: int(counts.loc[ex.example_id, col]) for s, ex in probes.items()}


def _line(env, cfg: Config, ex) -> list[dict]:
    """dᵀFd and the line scan of one probe's SGD step direction (means only; the units are not kept here)."""
    from talr_theory.lab.empirical import objective_gradient, step_direction

    grads, _ = objective_gradient(env.tail, [ex], "sft", pad_id=env.pad)
    d = step_direction(grads, "sgd")
    fisher = fisher_quadratic(env, d, cfg.fisher_step)
    pts = line_scan(env.tail, d, env.general, min(cfg.epsilons), max(cfg.epsilons), cfg.lam_start, cfg.lam_factor)
    return [{**{k: v for k, v in p.items() if not k.startswith("units_")}, **{f"dFd_{k}": v for k, v in fisher.items()}}
            for p in pts]


def probes_and_lines(env, cfg: Config, out, progress: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every group's probes (checks: intended vs measured s) and every (group, s) line, resumable per line."""
    from tqdm.auto import tqdm

    special = set(getattr(env.tok, "all_special_ids", []) or [])
    vocab_n = env.loaded.model.get_output_embeddings().weight.shape[0]
    vocab = np.array([i for i in range(vocab_n) if i not in special])
    table = results_table(out, "llm_lines", cfg, ["group", "s", "lam"])
    done = table.load() if table is not None else None
    lines, checks = [], []
    for g, block in enumerate(tqdm(_passages(env, cfg), desc="llm probes", disable=not progress, leave=False)):
        probes, meas = _group(env, cfg, g, block, vocab)
        for s, ex in probes.items():
            checks.append({"group": g, "intended_s": s, "measured_s": meas[s], "excess_s": meas[s] - meas[0],
                           "n_supervised": ex.n_target})
        for s in cfg.s_values:
            for r in ensure_rows(table, done, {"group": g, "s": s}, lambda ex=probes[s]: _line(env, cfg, ex)):
                lines.append({**r, "group": g, "s": s, "excess_s": meas[s] - meas[0], "measured_s": meas[s]})
    lines = pd.DataFrame(lines).sort_values(["group", "s", "lam"], kind="stable").reset_index(drop=True)
    return lines, pd.DataFrame(checks)


def fisher_quadratic(env, d: list[torch.Tensor], step: float) -> dict[str, float]:
    """dᵀ F d for the Fisher of each P1, by the second derivative of ΔL along the line at λ = 0 (2·ΔL(h)/h²).

    For P1 = q0, ΔL = KL(q0 || q_{θ0-hd}) = ½ h² dᵀF d + O(h³); for real text the same finite difference
    gives the curvature of the NLL change (its Hessian along d, which includes the first-order term's
    correction), with central differences to remove the linear term.
    """
    params = [p for p in env.tail.parameters() if p.requires_grad]
    theta0 = [p.detach().clone() for p in params]
    h = step / _norm(d)
    vals = {}
    for sign in (1.0, -1.0):
        with torch.no_grad():
            torch._foreach_copy_(params, theta0)
            torch._foreach_add_(params, d, alpha=-sign * h)
        vals[sign] = {k: float(v.mean()) for k, v in env.general(env.tail).items()}
    with torch.no_grad():
        torch._foreach_copy_(params, theta0)
    return {p1: (vals[1.0][p1] + vals[-1.0][p1]) / (h * h) for p1 in vals[1.0]}


