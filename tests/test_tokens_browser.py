"""The HTML token view in a real browser (headless Chromium driven by Playwright).

Skipped when Chromium or Playwright is absent. Install: ``apt-get install -y chromium`` (Debian
package, /usr/bin/chromium) and ``pip install -e ".[browser]"`` (Playwright, which drives the
system Chromium; no browser download). ``TALR_CHROMIUM`` may point to another Chromium binary.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from talr_theory.cli import main
from talr_theory.tokens.view import D_COLOURS, P_COLOURS, PAGE_SIZE, p_bin

CHROMIUM = os.environ.get("TALR_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt-get install -y chromium)"),
    pytest.mark.usefixtures("one_thread"),
]


def _rgb(hex_colour: str) -> str:
    h = hex_colour.lstrip("#")
    return "rgb({}, {}, {})".format(*(int(h[i:i + 2], 16) for i in (0, 2, 4)))


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install .[browser])")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def _page(browser, path):
    page = browser.new_page(viewport={"width": 1100, "height": 800})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    return page, errors


def test_token_view_colours_hover_filters(browser, tmp_path, capsys):
    html_path, out = tmp_path / "view.html", tmp_path / "scan"
    n_examples = PAGE_SIZE + 4  # more than one page
    rc = main(["tokens", "--model", "tiny-random", "--data", f"medcalc-synth:{n_examples}", "--format", "label",
               "--thresholds", "0.003,0.004", "--html", str(html_path), "--out", str(out), "--json", "-",
               "--n-boot", "100"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    table = pd.read_parquet(out / "tokens.parquet")
    page, errors = _page(browser, html_path)

    # every target token is one element with data-p; the first page shows PAGE_SIZE examples
    assert page.locator("[data-p]").count() == summary["n_target_tokens"]
    assert page.locator("section.ex:visible").count() == PAGE_SIZE
    assert page.inner_text("#pageno") == "1 / 2"

    # colours: the computed background of each visible token is its bin's colour
    shown = page.eval_on_selector_all(
        "section.ex:not([hidden]) .t",
        "els => els.map(e => [parseFloat(e.dataset.p), getComputedStyle(e).backgroundColor])")
    assert len(shown) > 0
    for p, colour in shown:
        assert colour == _rgb(P_COLOURS[int(p_bin([p])[0])])
    # the legend shows every bin in its colour
    legend = page.eval_on_selector_all("#legend .sw", "els => els.map(e => getComputedStyle(e).backgroundColor)")
    assert legend == [_rgb(c) for c in P_COLOURS]
    assert page.locator("#legend").is_visible()

    # hover: p, rank, top-3 and s(θ) membership of the hovered token
    first = table.iloc[0]
    page.hover(".t >> nth=0")
    tip = page.inner_text("#tip")
    assert page.locator("#tip").is_visible()
    assert f"rank {int(first['rank'])} in the vocabulary" in tip
    p_text = f"{first['p']:.4f}" if first["p"] >= 0.001 else f"{first['p']:.2e}"
    assert tip.startswith(f"p {p_text}")
    assert "top 3:" in tip and len([ln for ln in tip.splitlines() if ln.startswith("  ")]) == 3
    for th in (0.003, 0.004):
        assert f"θ={th:g} {'yes' if first['p'] < th else 'no'}" in tip

    # hard-only at θ = 0.004: tokens with p ≥ θ lose their colour, hard ones keep it
    page.select_option("#hard", "1")
    styles = page.eval_on_selector_all(
        "section.ex:not([hidden]) .t",
        "els => els.map(e => [parseFloat(e.dataset.p), getComputedStyle(e).backgroundColor])")
    hard_p = {float(f"{p:.6g}") for p in table["p"] if p < 0.004}
    assert any(p in hard_p for p, _ in styles) and any(p not in hard_p for p, _ in styles)
    for p, colour in styles:
        if p in hard_p:
            assert colour == _rgb(P_COLOURS[int(p_bin([p])[0])])
        else:
            assert colour == "rgba(0, 0, 0, 0)"

    # sorting by s(0.004), most hard tokens first: the first shown example has the largest count
    page.select_option("#sort", "d1")
    counts = table.assign(h=table.p < 0.004).groupby("example_id", sort=False).h.sum()
    # the sections are re-ordered by the page's script: wait until the first visible one has its heading
    page.wait_for_function("() => { const h = document.querySelector('section.ex:not([hidden]) h3');"
                           " return h !== null && h.innerText.trim().length > 0; }")
    first_shown = page.locator("section.ex:visible h3").first.inner_text()
    assert first_shown.split()[0] in set(counts[counts == counts.max()].index)
    page.click("#next")
    assert page.inner_text("#pageno") == "2 / 2"
    assert page.locator("section.ex:visible").count() == n_examples - PAGE_SIZE
    assert not errors, errors

    shot = tmp_path / "view.png"
    page.select_option("#hard", "-1")
    page.click("#prev")
    page.hover(".t >> nth=3")
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("TALR_SCREENSHOT"):
        shutil.copy(shot, os.environ["TALR_SCREENSHOT"])


def test_compare_view_colours_by_delta(browser, tmp_path, capsys):
    html_path = tmp_path / "delta.html"
    rc = main(["tokens", "--model", "tiny-random:1", "--compare-model", "tiny-random:2", "--data",
               "medcalc-synth:3", "--format", "label", "--html", str(html_path), "--json", "-", "--n-boot", "100"])
    assert rc == 0
    json.loads(capsys.readouterr().out)
    page, errors = _page(browser, html_path)
    shown = page.eval_on_selector_all(
        ".t", "els => els.map(e => [parseFloat(e.dataset.d), getComputedStyle(e).backgroundColor])")
    from talr_theory.tokens.view import delta_bin

    bins = delta_bin(np.array([d for d, _ in shown]))
    assert [c for _, c in shown] == [_rgb(D_COLOURS[b]) for b in bins]
    page.hover(".t >> nth=0")
    tip = page.inner_text("#tip")
    assert tip.startswith("p base ") and "p tuned " in tip and "Δ log p " in tip and "base→tuned" in tip
    assert not errors, errors


def test_every_colour_bin_renders(browser, tmp_path):
    """Probabilities spread over all bins (a random-init model puts every token in the lowest one)."""
    from talr_theory.data.encode import encode_examples
    from talr_theory.data.sft import load_sft
    from talr_theory.models import load_model
    from talr_theory.tokens.scanner import scan_tokens
    from talr_theory.tokens.view import render_token_view, view_summary

    loaded = load_model("tiny-random")
    enc = encode_examples(load_sft("medcalc-synth:2", format="label"), loaded.tokenizer).examples
    table = scan_tokens(loaded, enc, top_k=3, progress=False)
    inside = np.array([0.005, 0.03, 0.07, 0.15, 0.3, 0.6, 0.9, 0.97])  # one value inside each bin
    table["p"] = np.resize(inside, len(table)) * np.random.default_rng(0).uniform(0.98, 1.02, len(table))
    table["logp"] = np.log(table["p"])
    path = tmp_path / "bins.html"
    path.write_text(render_token_view(table, enc, loaded.tokenizer, view_summary(table, n_boot=20)), encoding="utf-8")
    page, errors = _page(browser, path)
    shown = page.eval_on_selector_all(
        ".t", "els => els.map(e => [parseFloat(e.dataset.p), getComputedStyle(e).backgroundColor])")
    bins = p_bin(np.array([p for p, _ in shown]))
    assert set(bins.tolist()) == set(range(len(P_COLOURS)))
    assert [c for _, c in shown] == [_rgb(P_COLOURS[b]) for b in bins]
    assert not errors, errors
