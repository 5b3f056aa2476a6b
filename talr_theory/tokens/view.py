"""A self-contained HTML page of token difficulty: every response coloured token by token.

``render_token_view`` turns a scan (``scan_tokens(..., top_k=3)``) or a base-vs-tuned comparison
(``tokens.compare.paired_table``) into one page with inline CSS and JavaScript and nothing fetched
from elsewhere:

- each example's prompt (muted) and response; every supervised target token is one
  ``<span class="t">`` carrying ``data-p`` (its teacher-forced probability, 6 significant digits;
  the tuned model's in a comparison, with ``data-p0`` for the base and ``data-d`` for Δ log p);
- tokens coloured by p (or by Δ log p in a comparison) in fixed bins, with a legend;
- a tooltip on hover: p, rank in the vocabulary, the model's top alternatives with their
  probabilities, and whether the token counts towards s(θ) (p < θ) at each threshold;
- a summary header (s(θ) with CIs, median p, frac p > 0.2, truncations), sorting of examples by
  their count of hard tokens, and hard-only highlighting at a chosen θ.

Size: all token spans are written into the page (so it can be checked by machine and read
without JavaScript); JavaScript shows ``PAGE_SIZE`` examples at a time. Pages are limited to
``MAX_EXAMPLES`` examples and ``MAX_TOKENS`` target tokens (about 130 bytes of HTML per token, so
at most ~26 MB); larger scans
raise an error asking for ``--limit`` rather than writing a page a browser struggles with.
"""

from __future__ import annotations

import html
import json
import math

import numpy as np
import pandas as pd

from talr_theory.data.encode import IGNORE
from talr_theory.tokens.stats import per_example_counts

MAX_EXAMPLES = 1000
MAX_TOKENS = 200_000
PAGE_SIZE = 20
DECODE_WINDOW = 8  # tokens of left context used to recover a token's surface text (leading spaces)

# p bins: upper edges (a token with p == edge falls in the bin above, like s(θ)'s strict p < θ)
P_EDGES = (0.01, 0.05, 0.1, 0.2, 0.5, 0.8, 0.95)
P_COLOURS = ("#b2182b", "#d6604d", "#f4a582", "#fddbc7", "#ffffbf", "#d9f0d3", "#a6dba0", "#5aae61")
# Δ log p bins (nats): red = the tuned model finds the token harder, blue = easier
D_EDGES = (-2.0, -1.0, -0.5, -0.1, 0.1, 0.5, 1.0, 2.0)
D_COLOURS = ("#b2182b", "#d6604d", "#f4a582", "#fddbc7", "#f7f7f7", "#d1e5f0", "#92c5de", "#4393c3", "#2166ac")
DARK_BINS = {0, 8}  # bins whose background needs white text


def p_bin(p: np.ndarray) -> np.ndarray:
    """Colour bin of each probability (0 = p < 0.01 ... 7 = p ≥ 0.95)."""
    return np.searchsorted(np.asarray(P_EDGES), np.asarray(p, dtype=np.float64), side="right")


def delta_bin(dlogp: np.ndarray) -> np.ndarray:
    """Colour bin of each Δ log p (0 = below −2 nats ... 8 = above +2 nats; 4 = within ±0.1)."""
    return np.searchsorted(np.asarray(D_EDGES), np.asarray(dlogp, dtype=np.float64), side="right")


def _legend_labels(edges, fmt) -> list[str]:
    labels = [f"< {fmt(edges[0])}"]
    labels += [f"{fmt(a)} – {fmt(b)}" for a, b in zip(edges[:-1], edges[1:])]
    labels.append(f"≥ {fmt(edges[-1])}")
    return labels


UTF8_MAX_BYTES = 4  # a character split over byte tokens spans at most 4 of them
REPLACEMENT = "\ufffd"  # what tokenizers decode an incomplete UTF-8 sequence to


def surface_texts(tokenizer, ids: list[int]) -> list[str]:
    """The text each token adds to the decoded sequence, with its leading space.

    Decoding a token alone drops the space SentencePiece tokenizers attach to word starts, so each
    token's text is decode(window + group) minus decode(window) over ``DECODE_WINDOW`` tokens of left
    context. Byte-level tokenizers split a multi-byte character (e.g. "°" = bytes C2 B0) over several
    tokens, each of which decodes alone to "\ufffd": while the decoded text ends in an incomplete
    character, the next tokens join the group (up to 4); the first token of the group then carries
    the whole character and the others an empty string. Where the window's text is not a prefix,
    the group's own decoding is used.
    """
    out: list[str] = []
    group: list[int] = []  # indices of the tokens whose bytes have not completed a character yet
    for k in range(len(ids)):
        g0 = group[0] if group else k
        ctx = ids[max(0, g0 - DECODE_WINDOW):g0]
        before = tokenizer.decode(ctx) if ctx else ""
        after = tokenizer.decode(ctx + ids[g0:k + 1])
        piece = after[len(before):] if after.startswith(before) else tokenizer.decode(ids[g0:k + 1])
        group.append(k)
        if piece.endswith(REPLACEMENT) and k + 1 < len(ids) and len(group) < UTF8_MAX_BYTES:
            continue  # an incomplete character: let the next token complete it
        if len(group) > 1 and REPLACEMENT in piece:  # not one character after all: each token's own decoding
            out.extend(tokenizer.decode([ids[i]]) for i in group)
        else:
            out.extend([piece] + [""] * (len(group) - 1))
        group = []
    return out


class _AltTexts:
    """Surface text of an alternative next token, decoded after the actual previous token so that a
    word-start token shows its leading space (cached per (previous, alternative) pair)."""

    def __init__(self, tokenizer):
        self.tokenizer, self.cache = tokenizer, {}

    def __call__(self, prev: int, alt: int) -> str:
        key = (prev, alt)
        if key not in self.cache:
            before = self.tokenizer.decode([prev])
            after = self.tokenizer.decode([prev, alt])
            self.cache[key] = after[len(before):] if after.startswith(before) else self.tokenizer.decode([alt])
        return self.cache[key]


def _fmt_p(p: float) -> str:
    return f"{p:.6g}"


def _check_size(n_examples: int, n_tokens: int) -> None:
    if n_examples > MAX_EXAMPLES or n_tokens > MAX_TOKENS:
        raise ValueError(f"the HTML token view holds at most {MAX_EXAMPLES} examples and {MAX_TOKENS} target "
                         f"tokens; this scan has {n_examples} examples and {n_tokens} tokens. Use --limit "
                         f"(or --max-length) to view a subset.")


def _header_rows(summary: dict) -> list[tuple[str, str]]:
    """(label, value) rows for the summary header from the CLI's summary (single or comparison)."""
    rows = []

    def ci(v):
        lo, hi = v["ci"] if "ci" in v else (v["ci_lo"], v["ci_hi"])
        return f"{v['mean']:.3f} [{lo:.3f}, {hi:.3f}]"

    for key, label in (("model", "model"), ("compare_model", "tuned model"), ("data", "data")):
        if summary.get(key):
            rows.append((label, str(summary[key])))
    rows.append(("examples / target tokens", f"{summary['n_examples']} / {summary['n_target_tokens']}"))
    if "s_change" in summary:
        for th in summary["s_change"]:
            b, a, c = summary["s_before"][th], summary["s_after"][th], summary["s_change"][th]
            rows.append((f"s({th}) base → tuned (change, paired 95% CI)", f"{ci(b)} → {ci(a)} (Δ {ci(c)})"))
        rows.append(("median p base → tuned", f"{summary['median_p_before']:.4f} → {summary['median_p_after']:.4f}"))
        rows.append(("frac p > 0.2 base → tuned",
                     f"{summary['frac_p_gt_0.2_before']:.4f} → {summary['frac_p_gt_0.2_after']:.4f}"))
        rows.append(("mean Δ log p (nats/token)", f"{summary['mean_dlogp']:+.4f}"))
    else:
        for th, v in summary["s"].items():
            rows.append((f"s({th}) (95% CI)", ci(v)))
        rows.append(("median p", f"{summary['median_p']:.4f}"))
        lo, hi = summary.get("frac_p_gt_0.2_ci", (math.nan, math.nan))
        rows.append(("frac p > 0.2 (95% CI)", f"{summary['frac_p_gt_0.2']:.4f} [{lo:.4f}, {hi:.4f}]"))
    if "confident_conflicts" in summary:
        cc, ent = summary["confident_conflicts"], summary["entropy"]
        q = ent["full_nats"]["quantiles"]
        rows.append(("entropy, nats (quantiles 0.1 / 0.5 / 0.9)", f"{q['0.1']:.3f} / {q['0.5']:.3f} / {q['0.9']:.3f}"))
        rows.append((f"confident conflicts per example (p < {cc['p_below']:g}, top-K entropy / ln K < "
                     f"{cc['topk_entropy_below']:g}; 95% CI)",
                     f"{cc['per_example']:.3f} [{cc['per_example_ci'][0]:.3f}, {cc['per_example_ci'][1]:.3f}]"))
    rows.append(("truncated examples", str(summary.get("truncated_examples", 0))))
    if summary.get("dropped_examples"):
        rows.append(("dropped examples (response cut away)", str(summary["dropped_examples"])))
    return rows


def view_summary(table: pd.DataFrame, thresholds=(0.05, 0.1, 0.2, 0.5), n_boot: int = 1000, seed: int = 0,
                 truncated_examples: int = 0, **extra) -> dict:
    """The header of a single-model page from a scan (the CLI builds the same from its summary)."""
    from talr_theory.tokens.stats import s_statistics, token_summary

    summ = token_summary(table, n_boot=n_boot, seed=seed)
    s = s_statistics(table, thresholds, n_boot=n_boot, seed=seed)
    return {"n_examples": summ["n_examples"], "n_target_tokens": summ["n_target_tokens"],
            "s": {f"{th:g}": {"mean": v["mean"], "ci": list(v["ci"])} for th, v in s.items()},
            "median_p": summ["median_p"], "frac_p_gt_0.2": summ["frac_p_gt_0.2"],
            "frac_p_gt_0.2_ci": list(summ["frac_p_gt_0.2_ci"]), "truncated_examples": truncated_examples, **extra}


def iframe(page: str, height: int = 600) -> str:
    """``page`` embedded in an ``<iframe srcdoc>``, for notebooks (keeps its script and styles apart)."""
    # wrapped in a div: IPython's HTML() warns about markup that starts with an iframe
    return (f'<div><iframe srcdoc="{html.escape(page, quote=True)}" style="width:100%;height:{height}px;'
            f'border:1px solid #ccc"></iframe></div>')


def render_token_view(table: pd.DataFrame, encoded: list, tokenizer, summary: dict,
                      thresholds=(0.05, 0.1, 0.2, 0.5), title: str = "Token difficulty",
                      page_size: int = PAGE_SIZE, conflict: tuple[float, float] = (0.2, 0.5)) -> str:
    """The HTML page (a string). ``table``: a scan with ``rank``/``top_ids``/``top_p`` (``top_k`` > 0),
    or a ``paired_table`` (then tokens are coloured by Δ log p). ``encoded``: the examples that were
    scanned (for the prompt text). ``summary``: the CLI summary dict (see ``_header_rows``). With
    the scan's ``entropy``/``entropy_topk`` columns the hover also shows both entropies and whether
    the token is a confident conflict (``conflict`` = (p below, top-K entropy / ln K below))."""
    compare = "dlogp" in table.columns
    need = {"example_id", "position", "token_id", "p"}
    missing = need - set(table.columns)
    if missing:
        raise ValueError(f"token table lacks column(s) {sorted(missing)} for the HTML view")
    _check_size(len(encoded), len(table))
    thresholds = tuple(float(t) for t in thresholds)
    counts = per_example_counts(table, thresholds).set_index("example_id")
    if compare:
        counts_base = per_example_counts(table.assign(p=table["p_base"]), thresholds).set_index("example_id")
    has_top = "top_ids" in table.columns
    alt_text = _AltTexts(tokenizer)

    p = table["p"].to_numpy(np.float64)
    bins = delta_bin(table["dlogp"].to_numpy()) if compare else p_bin(p)
    hard_mask = np.zeros(len(table), dtype=np.int64)
    for j, th in enumerate(thresholds):
        hard_mask |= (p < th).astype(np.int64) << j
    if compare:
        base_mask = np.zeros(len(table), dtype=np.int64)
        for j, th in enumerate(thresholds):
            base_mask |= (table["p_base"].to_numpy(np.float64) < th).astype(np.int64) << j
    groups = table.groupby("example_id", sort=False).indices  # example id -> row numbers
    ent = None
    if {"entropy", "entropy_topk"} <= set(table.columns):
        from talr_theory.tokens.stats import conflict_mask

        ent = (table["entropy"].to_numpy(np.float64), table["entropy_topk"].to_numpy(np.float64))
        conflicts = conflict_mask(table, *conflict).to_numpy()
    positions = table["position"].to_numpy()
    rank = table["rank"].to_numpy() if "rank" in table.columns else None
    tops = (table["top_ids"].tolist(), table["top_p"].tolist()) if has_top else None
    if compare:
        p_base, dlogp = table["p_base"].to_numpy(np.float64), table["dlogp"].to_numpy(np.float64)
        rank_base = table["rank_base"].to_numpy() if "rank_base" in table.columns else None

    # per token, for the tooltip: [rank, [[text, p], ...], hard mask (bit j: p < θ_j), [base p, base rank, base mask]]
    tok_info: list = []
    sections = []
    s_rows = []
    for idx, ex in enumerate(encoded):
        rows = groups.get(ex.example_id)
        if rows is None:
            raise ValueError(f"example {ex.example_id!r} is in the encoding but not in the token table")
        texts = surface_texts(tokenizer, ex.input_ids)
        supervised = {int(positions[i]): int(i) for i in rows}
        expected = {pos for pos, lab in enumerate(ex.labels) if lab != IGNORE and pos > 0}
        if expected != set(supervised):
            raise ValueError(f"example {ex.example_id!r}: the token table's positions do not match the "
                             f"encoding's supervised positions")
        parts, muted = [], []
        for pos, text in enumerate(texts):
            i = supervised.get(pos)
            if i is None:
                muted.append(text)
                continue
            if muted:
                parts.append(f'<span class="prompt">{html.escape("".join(muted))}</span>')
                muted = []
            k = len(tok_info)
            info = [int(rank[i]) if rank is not None else None,
                    [[alt_text(ex.input_ids[pos - 1], int(t)), round(float(q), 6)]
                     for t, q in zip(tops[0][i], tops[1][i])]
                    if tops is not None else [],
                    int(hard_mask[i])]
            attrs = f'data-p="{_fmt_p(p[i])}"'
            if ent is not None:
                attrs += f' data-h="{ent[0][i]:.4g}" data-hk="{ent[1][i]:.4g}" data-cc="{int(conflicts[i])}"'
            if compare:
                info.append([round(float(p_base[i]), 6), int(rank_base[i]) if rank_base is not None else None,
                             int(base_mask[i])])
                attrs += f' data-p0="{_fmt_p(p_base[i])}" data-d="{dlogp[i]:.6g}"'
            tok_info.append(info)
            cont = " cont" if not text else ""  # a byte token whose character the previous token shows
            parts.append(f'<span class="t c{int(bins[i])}{cont}" {attrs} data-k="{k}">{html.escape(text)}</span>')
        if muted:
            parts.append(f'<span class="prompt">{html.escape("".join(muted))}</span>')
        c = counts.loc[ex.example_id]
        s_vals = [int(c[f"n_p_lt_{th:g}"]) for th in thresholds]
        s_rows.append(s_vals)
        if compare:
            cb = counts_base.loc[ex.example_id]
            s_b = [int(cb[f"n_p_lt_{th:g}"]) for th in thresholds]
            label = " · ".join(f"s({th:g}) {a}→{v}" for th, a, v in zip(thresholds, s_b, s_vals))
            label += f" · mean Δ log p {dlogp[rows].mean():+.3f}"
        else:
            label = " · ".join(f"s({th:g}) {v}" for th, v in zip(thresholds, s_vals))
        sections.append(
            f'<section class="ex" data-idx="{idx}"><h3>{html.escape(str(ex.example_id))} '
            f'<small>{len(rows)} target tokens · {label}</small></h3>'
            f'<div class="text">{"".join(parts)}</div></section>')

    if compare:
        legend_title = "Δ log p = log p(tuned) − log p(base), nats"
        labels, colours = _legend_labels(D_EDGES, lambda v: f"{v:+g}"), D_COLOURS
    else:
        legend_title = "teacher-forced p(token | prompt, prefix)"
        labels, colours = _legend_labels(P_EDGES, lambda v: f"{v:g}"), P_COLOURS
    legend = "".join(f'<span class="sw c{i}">{html.escape(lab)}</span>' for i, lab in enumerate(labels))
    header = "".join(f"<tr><th>{html.escape(a)}</th><td>{html.escape(b)}</td></tr>" for a, b in _header_rows(summary))
    th_opts = "".join(f'<option value="{j}">θ = {th:g}</option>' for j, th in enumerate(thresholds))
    sort_opts = '<option value="orig">original order</option>' + "".join(
        f'<option value="d{j}">most hard tokens first, s({th:g})</option>'
        f'<option value="a{j}">fewest hard tokens first, s({th:g})</option>' for j, th in enumerate(thresholds))
    colour_css = "".join(f".c{i}{{background:{c};{'color:#fff;' if i in DARK_BINS or (not compare and i == 0) else ''}}}"
                         for i, c in enumerate(colours))
    data = {"tok": tok_info, "s": s_rows, "th": list(thresholds), "page": int(page_size), "compare": compare}
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
    return _PAGE.format(title=html.escape(title), css=_CSS + colour_css, header=header,
                        legend_title=html.escape(legend_title), legend=legend, th_opts=th_opts,
                        sort_opts=sort_opts, sections="\n".join(sections), data=payload, js=_JS)


_CSS = """
body{font:14px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1100px;padding:12px;color:#222}
h1{font-size:20px;margin:4px 0}
table.sum{border-collapse:collapse;margin:6px 0}
table.sum th{text-align:left;font-weight:600;padding:1px 12px 1px 0;color:#444}
table.sum td{font-family:ui-monospace,Menlo,Consolas,monospace}
#controls{position:sticky;top:0;background:#fff;border-bottom:1px solid #ddd;padding:6px 0;z-index:2}
#controls label{margin-right:14px}
#legend{margin:4px 0}
#legend .sw{display:inline-block;padding:0 6px;margin:1px 2px;border:1px solid #ccc;font-size:12px}
section.ex{border-top:1px solid #eee;padding:6px 0;content-visibility:auto;contain-intrinsic-size:auto 200px}
section.ex h3{font-size:13px;margin:2px 0;font-weight:600}
section.ex h3 small{font-weight:400;color:#666}
.text{white-space:pre-wrap;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:13px;word-break:break-word}
.prompt{color:#999}
.t{border-radius:2px;cursor:default}
.t:hover{outline:1px solid #000}
.t.cont{display:inline-block;min-width:3px;height:1em;vertical-align:text-bottom}
.hardonly .t.easy{background:transparent!important;color:#bbb!important}
#tip{position:fixed;display:none;background:#fffff4;border:1px solid #888;padding:6px 8px;font-size:12px;
  font-family:ui-monospace,Menlo,Consolas,monospace;white-space:pre;z-index:5;pointer-events:none;box-shadow:2px 2px 6px #0003}
"""

_JS = r"""
(function(){
const D = JSON.parse(document.getElementById('tokdata').textContent);
const secs = Array.from(document.querySelectorAll('section.ex'));
let order = secs.map((_, i) => i), page = 0, hard = -1;
const nPages = () => Math.max(1, Math.ceil(order.length / D.page));
function fmt(p){ return p >= 0.001 ? p.toFixed(4) : p.toExponential(2); }
let placed = order.slice();
function show(){
  const lo = page * D.page, hi = lo + D.page, box = document.getElementById('examples');
  if (order.some((i, r) => placed[r] !== i)) {  // move sections only when the order changed
    order.forEach(i => box.appendChild(secs[i]));
    placed = order.slice();
  }
  order.forEach((i, r) => { const h = !(r >= lo && r < hi); if (secs[i].hidden !== h) secs[i].hidden = h; });
  document.getElementById('pageno').textContent = (page + 1) + ' / ' + nPages();
  document.body.classList.toggle('hardonly', hard >= 0);
  if (hard >= 0) {
    for (let r = lo; r < Math.min(hi, order.length); r++) {
      secs[order[r]].querySelectorAll('.t').forEach(el => {
        el.classList.toggle('easy', !(D.tok[+el.dataset.k][2] & (1 << hard)));
      });
    }
  }
}
document.getElementById('sort').addEventListener('change', e => {
  const v = e.target.value;
  order = secs.map((_, i) => i);
  if (v !== 'orig') {
    const j = +v.slice(1), sign = v[0] === 'd' ? -1 : 1;
    order.sort((a, b) => sign * (D.s[a][j] - D.s[b][j]) || a - b);
  }
  page = 0; show();
});
document.getElementById('hard').addEventListener('change', e => { hard = +e.target.value; show(); });
document.getElementById('prev').addEventListener('click', () => { if (page > 0) { page--; show(); } });
document.getElementById('next').addEventListener('click', () => { if (page < nPages() - 1) { page++; show(); } });
const tip = document.getElementById('tip');
document.addEventListener('mouseover', e => {
  const el = e.target.closest ? e.target.closest('.t') : null;
  if (!el) { tip.style.display = 'none'; return; }
  const info = D.tok[+el.dataset.k], p = parseFloat(el.dataset.p);
  const lines = [];
  if (D.compare) {
    const base = info[3];
    lines.push('p base ' + fmt(base[0]) + (base[1] ? '  (rank ' + base[1] + ')' : ''));
    lines.push('p tuned ' + fmt(p) + (info[0] ? '  (rank ' + info[0] + ')' : ''));
    lines.push('Δ log p ' + parseFloat(el.dataset.d).toFixed(4) + ' nats');
  } else {
    lines.push('p ' + fmt(p) + (info[0] ? '  rank ' + info[0] + ' in the vocabulary' : ''));
  }
  if (el.dataset.h !== undefined) {
    lines.push('entropy ' + parseFloat(el.dataset.h).toFixed(3) + ' nats (full vocabulary); top-K entropy / ln K '
      + parseFloat(el.dataset.hk).toFixed(3));
    lines.push('confident conflict (low p, low entropy): ' + (el.dataset.cc === '1' ? 'yes' : 'no'));
  }
  if (info[1].length) {
    lines.push((D.compare ? 'tuned model top ' : 'top ') + info[1].length + ':');
    info[1].forEach(a => lines.push('  ' + JSON.stringify(a[0]) + '  ' + fmt(a[1])));
  }
  const yn = (m, j) => ((m >> j) & 1 ? 'yes' : 'no');
  lines.push('counts towards s(θ)' + (D.compare ? ' base→tuned: ' : ': ') + D.th.map((t, j) =>
    'θ=' + t + ' ' + (D.compare ? yn(info[3][2], j) + '→' : '') + yn(info[2], j)).join(', '));
  tip.textContent = lines.join('\n');
  tip.style.display = 'block';
  const r = el.getBoundingClientRect();
  tip.style.left = Math.max(4, Math.min(r.left, window.innerWidth - tip.offsetWidth - 12)) + 'px';
  const below = r.bottom + 4 + tip.offsetHeight <= window.innerHeight;
  tip.style.top = (below ? r.bottom + 4 : Math.max(4, r.top - 4 - tip.offsetHeight)) + 'px';
});
show();
})();
"""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{title}</title><style>{css}</style></head>
<body>
<h1>{title}</h1>
<table class="sum">{header}</table>
<div id="controls">
<label>sort <select id="sort">{sort_opts}</select></label>
<label>hard only <select id="hard"><option value="-1">off</option>{th_opts}</select></label>
<button id="prev">◀ prev</button> page <span id="pageno">1</span> <button id="next">next ▶</button>
<div id="legend"><b>{legend_title}:</b> {legend}</div>
</div>
<main id="examples">
{sections}
</main>
<div id="tip"></div>
<script type="application/json" id="tokdata">{data}</script>
<script>{js}</script>
</body></html>
"""
