"""The report's first screen and its safety, in headless Chromium: the verdict block and its banners (clean, BUSY,
A/A FAILED, deviant), the A/A twin never drawn as a backend, readable log ticks, and hostile file contents
(markup in folder and file names, `</script>` in a history family, a `javascript:` history file name) that
must not run."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from cvae_bench.report.api import make_report
from cvae_bench.report.bundle import basic_bundle
from cvae_bench.report.history import append_history
from cvae_bench.report.page import safe_link, script_json
from cvae_bench.runtime.files import write_json
from tests.test_report import bench_doc, run_result

pytest.importorskip("plotly", reason="reports need plotly (pip install 'cvae-bench[report]')")

#: Sets a global and the title if it ever runs.
PAYLOAD = "window.__xss=1;document.title='pwned'"
IMG = f"<img src=x onerror={PAYLOAD}>"


def _interval(estimate: float, low: float | None, high: float | None) -> dict[str, Any]:
    return {"estimate": estimate, "low": low, "high": high, "method": "paired order-statistic", "n": 15}


def judged_bench(*, busy: bool = False, aa_passed: bool = True, memory: bool = False) -> dict[str, Any]:
    """bench_doc() with what `cvae-bench bench` writes for verdicts: the A/A twin's entries, each entry's
    verdict against the fastest of its table, the noise check, and the rounds."""
    doc = bench_doc()
    twin = copy.deepcopy(next(e for e in doc["benchmarks"] if e["name"] == "train-step[torch-eager]"))
    twin["name"] = "train-step[torch-eager-aa]"
    twin["params"] = {**twin["params"], "aa_twin": True}
    doc["benchmarks"].append(twin)
    if memory:
        for e in doc["benchmarks"]:
            e["extra_info"]["memory"] = {"baseline_rss": 1, "peak_rss": 512 * 2**20, "method": "psutil"}
    withheld = "BUSY: the machine never got quiet enough for a verdict" if busy else None
    ratio = _interval(1.83, 1.80, 1.86)
    doc["cvae_bench"]["verdicts"] = [
        {
            "name": "train-step[torch-eager]",
            "reference": "train-step[keras-jax-jit]",
            "group": "train-step",
            "batch": 64,
            "ratio": ratio,
            "verdict": "withheld" if busy else "slower",
            "tie": 0.02,
            "paired": True,
            "withheld": withheld,
        },
        {
            "name": "train-step[torch-eager-aa]",
            "reference": "train-step[torch-eager]",
            "group": "train-step",
            "batch": 64,
            "ratio": _interval(1.0, 0.99, 1.01),
            "verdict": "tie",
            "tie": 0.02,
            "paired": True,
        },
    ]
    aa = _interval(1.0, 0.99, 1.01) if aa_passed else _interval(1.06, 1.04, 1.08)
    doc["cvae_bench"]["noise"] = {
        "name": "train-step[torch-eager-aa]",
        "reference": "train-step[torch-eager]",
        "ratio": aa,
        "noise_floor": 0.01 if aa_passed else 0.019,
        "passed": aa_passed,
    }
    doc["cvae_bench"]["rounds"] = {"busy": busy, "epochs_run": 3}
    return doc


def _write(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, doc)


def _report(tmp_path: Path, inputs: list[Path], **kwargs: Any) -> Path:
    out = tmp_path / "out" / "report.html"
    make_report(inputs, out, **kwargs)
    return out


def _first_screen(page_path: Path) -> dict[str, Any]:
    """What Chromium shows of the verdict block, and the page's errors."""
    from cvae_bench.testing.browser import browser_page

    with browser_page(page_path.parent, page_path.name, isolated=False, timeout_s=90) as b:
        b.page.wait_for_load_state("load")
        seen = b.page.evaluate(
            """() => {
                 const block = document.getElementById('verdict');
                 const box = block.getBoundingClientRect();
                 const rows = [...block.querySelectorAll('#verdict-table tbody tr')]
                   .map(tr => [...tr.cells].map(td => td.textContent));
                 const headers = [...block.querySelectorAll('#verdict-table th')].map(th => th.textContent);
                 const banners = [...block.querySelectorAll('.banner')].map(p => p.textContent);
                 return {top: box.top, height: box.height, viewport: window.innerHeight, rows, headers, banners,
                         clean: block.querySelectorAll('.clean').length, text: block.innerText};
               }"""
        )
        seen["errors"] = b.errors.all
    return seen


# -- the verdict block --------------------------------------------------------------------------------------
def test_a_clean_bench_leads_with_its_verdicts_and_no_warning(tmp_path: Path) -> None:
    write_json(tmp_path / "bench.json", judged_bench())
    seen = _first_screen(_report(tmp_path, [tmp_path / "bench.json"]))
    assert seen["errors"] == []
    assert seen["top"] < seen["viewport"] / 2, "the verdict is on the first screen"
    rows = {r[0]: r for r in seen["rows"]}
    assert set(rows) == {"torch:eager", "keras-jax:jit"}, "the A/A twin is not a backend row"
    assert rows["torch:eager"][4] == "1.83× [1.80, 1.86] slower"
    assert rows["keras-jax:jit"][4] == "1.00× fastest"
    assert re.match(r"2\.200 ms \[2\.\d+, 2\.\d+\]", rows["torch:eager"][3])
    assert rows["torch:eager"][5] == "unchecked"
    assert seen["banners"] == [] and seen["clean"] == 1
    assert "Noise check (A/A)" in seen["text"] and "passed" in seen["text"] and "±1.0%" in seen["text"]
    assert "peak memory (RSS)" not in seen["headers"], "no memory column without memory figures"


def test_a_busy_bench_says_so_first(tmp_path: Path) -> None:
    write_json(tmp_path / "bench.json", judged_bench(busy=True))
    seen = _first_screen(_report(tmp_path, [tmp_path / "bench.json"]))
    assert any(b.startswith("⚠ BUSY") for b in seen["banners"]), seen["banners"]
    rows = {r[0]: r for r in seen["rows"]}
    assert rows["torch:eager"][4] == "1.83× [1.80, 1.86] withheld (BUSY)"
    assert seen["clean"] == 0


def test_a_failed_aa_check_says_so_first(tmp_path: Path) -> None:
    write_json(tmp_path / "bench.json", judged_bench(aa_passed=False))
    seen = _first_screen(_report(tmp_path, [tmp_path / "bench.json"]))
    assert any("A/A check FAILED" in b for b in seen["banners"]), seen["banners"]
    assert "FAILED" in seen["text"] and seen["clean"] == 0


def test_a_deviant_run_is_said_and_not_ranked(tmp_path: Path) -> None:
    runs = [
        run_result("torch", "eager", 0, 2.0),
        run_result("torch", "eager", 1, 2.1),
        run_result("keras-jax", "jit", 0, 1.0, deviant=True),
        run_result("keras-jax", "jit", 1, 1.1, deviant=True),
    ]
    for r in runs:
        _write(tmp_path / "runs" / f"{r.backend}-seed{r.seed}" / "result.json", r.to_json())
    seen = _first_screen(_report(tmp_path, [tmp_path / "runs"]))
    rows = {r[0]: r for r in seen["rows"]}
    assert rows["keras-jax:jit"][5] == "deviant" and "not ranked" in rows["keras-jax:jit"][2]
    assert rows["torch:eager"][2] == "1.00× fastest"
    assert any("Deviant runs" in b and "keras-jax:jit" in b for b in seen["banners"]), seen["banners"]
    assert any("Too few runs" in b for b in seen["banners"])


def test_memory_is_a_column_only_when_measured(tmp_path: Path) -> None:
    write_json(tmp_path / "bench.json", judged_bench(memory=True))
    html = _report(tmp_path, [tmp_path / "bench.json"]).read_text()
    assert "peak memory (RSS)" in html and "512 MiB" in html


# -- charts ---------------------------------------------------------------------------------------------------
def test_the_twin_is_not_drawn_and_log_ticks_are_powers_of_ten(tmp_path: Path) -> None:
    from cvae_bench.testing.browser import browser_page

    write_json(tmp_path / "bench.json", judged_bench())
    out = _report(tmp_path, [tmp_path / "bench.json"])
    with browser_page(out.parent, out.name, isolated=False, timeout_s=90) as b:
        b.page.wait_for_load_state("load")
        seen = b.page.evaluate(
            """() => {
                 const ticks = id => [...document.querySelectorAll(`#${id} .xtick text, #${id} .ytick text`)]
                   .map(t => t.textContent);
                 const names = id => document.getElementById(id).data.map(t => (t.x || []).concat([t.name]));
                 return {sampling: ticks('chart-sampling'), step: JSON.stringify(names('chart-train-step')),
                         errors: 0};
               }"""
        )
        assert b.errors.all == []
    assert seen["sampling"], "the sampling chart has tick labels"
    for label in seen["sampling"]:
        assert re.fullmatch(r"(1|10|100)(k|M|G|m|µ)?", label.replace("\u2212", "-")), seen["sampling"]
    assert "aa" not in seen["step"] and "A/A" not in seen["step"], seen["step"]


def test_the_page_inlines_the_basic_bundle_when_installed(tmp_path: Path) -> None:
    if basic_bundle() is None:
        pytest.skip("the basic plotly.js bundle is not installed: npm ci --prefix web")
    write_json(tmp_path / "bench.json", judged_bench())
    out = _report(tmp_path, [tmp_path / "bench.json"])
    assert out.stat().st_size < 2_000_000
    assert "plotly.js 4.1.1 basic" in out.read_text()


def test_a_machine_is_one_table_however_many_inputs_ran_on_it(tmp_path: Path) -> None:
    for seed in range(3):
        r = run_result("torch", "eager", seed, 2.0)
        _write(tmp_path / "runs" / f"seed{seed}" / "result.json", r.to_json())
    _write(tmp_path / "runs" / "bench.json", judged_bench())
    html = _report(tmp_path, [tmp_path / "runs"]).read_text()
    assert html.count("<h3>Machine</h3>") == 1 and "4 input(s) ran here" in html


# -- hostile inputs -----------------------------------------------------------------------------------------
def test_escaping_helpers() -> None:
    text = script_json({"a": "</script><!--<script>x</script>\u2028&"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"a": "</script><!--<script>x</script>\u2028&"}
    assert safe_link("javascript:alert(1)") is None
    assert safe_link("file:///etc/passwd") is None and safe_link("/etc/passwd") is None
    assert safe_link("//evil.example/x") is None
    assert safe_link("../history/a b:c.json") == "./../history/a%20b%3Ac.json"


def test_markup_in_file_names_and_contents_does_not_run(tmp_path: Path) -> None:
    from cvae_bench.testing.browser import browser_page

    hostile = tmp_path / IMG.replace("/", "_")
    doc = judged_bench()
    for e in doc["benchmarks"]:  # a backend name that plotly would draw as a link, and an image
        if e["params"].get("backend") == "torch":
            e["params"]["backend"] = e["extra_info"]["backend"] = f'<a href="javascript:{PAYLOAD}">x</a>{IMG}'
    _write(hostile / "bench.json", doc)
    (hostile / "bad" / "bench.json").parent.mkdir(parents=True)
    bad = {"benchmarks": [{"group": IMG, "name": "</script><script>" + PAYLOAD + "</script>"}]}
    (hostile / "bad" / "bench.json").write_text(json.dumps(bad))
    (hostile / "notjson").mkdir()
    (hostile / "notjson" / "bench.json").write_text(IMG + "</script><!--")
    history = tmp_path / "history"
    entry = append_history(hostile / "bench.json", history)
    kept = json.loads(entry.read_text())
    for m in kept["metrics"]:
        m["family"] = "</script><script>" + PAYLOAD + "</script><!--"
    # A history file whose name is a URL that would run, and one whose family is markup.
    entry.unlink()
    (history / f"javascript:{PAYLOAD.replace('/', '_')}.json").write_text(json.dumps(kept))
    out = tmp_path / "site" / "report.html"
    make_report([hostile], out, history=history, command=f"cvae-bench report '{IMG}'")
    html = out.read_text()
    assert IMG not in html and "<img src=x" not in html and "</script><script>window" not in html
    assert '"./javascript:' not in html
    with browser_page(out.parent, out.name, isolated=False, timeout_s=90) as b:
        b.page.wait_for_load_state("load")
        b.page.wait_for_timeout(300)
        seen = b.page.evaluate(
            """() => ({xss: window.__xss === undefined ? null : window.__xss, title: document.title,
                       imgs: document.querySelectorAll('img[src="x"]').length,
                       links: [...document.querySelectorAll('a')]
                         .map(a => a.getAttribute('href') || a.getAttribute('xlink:href') || ''),
                       data: [...document.querySelectorAll('.history-chart')]
                         .flatMap(d => d.data.flatMap(t => t.customdata || [])),
                       skipped: [...document.querySelectorAll('p.missing')].map(p => p.textContent).join('\\n'),
                       csp: document.querySelector('meta[http-equiv="Content-Security-Policy"]').content})"""
        )
        errors = b.errors.all
    assert seen["xss"] is None and seen["title"] == "cvae-bench report" and seen["imgs"] == 0
    assert "'unsafe-inline'" not in seen["csp"].split("script-src")[1].split(";")[0]
    assert seen["data"], "the history chart was drawn"
    for url in seen["links"] + seen["data"]:
        assert url == "" or (url.startswith("./") and ":" not in url), url
    assert IMG.split(" ")[0] in seen["skipped"] or "bench.json" in seen["skipped"]
    assert errors == []


def test_a_comparison_gives_its_own_time_to_target_verdicts() -> None:
    from cvae_bench.report.inputs import ComparisonFile, Inputs, Loaded
    from cvae_bench.report.verdict import build_block
    from cvae_bench.training.compare import summarize

    runs = [run_result("torch", "eager", s, 2.0 + 0.01 * s) for s in range(3)]
    runs += [run_result("keras-jax", "jit", s, 1.0 + 0.01 * s) for s in range(3)]
    rows = summarize(runs)
    block = build_block(Inputs(comparisons=[Loaded(Path("comparison.json"), ComparisonFile(rows=rows))]))
    cells = {r.label: r for r in block.rows}
    slow = next(r for r in rows if r.backend == "torch")
    assert slow.verdict == "slower" and slow.ratio_ci is not None
    assert cells["torch:eager"].ttt_vs_fastest == (
        f"{slow.ratio_to_fastest:.2f}× [{slow.ratio_ci[0]:.2f}, {slow.ratio_ci[1]:.2f}] slower"
    )
    assert cells["keras-jax:jit"].ttt_vs_fastest == "1.00× fastest"
    assert any("No A/A noise check" in n for n in block.noise)
