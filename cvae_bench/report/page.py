"""The report as one self-contained HTML page: the verdict block, plotly's JavaScript inlined once, charts,
pictures, evidence.

Nothing on the page is fetched from the network: plotly.js is written into the page (`report.bundle`), the
pictures are data: URIs, and the only links are relative links to the input files themselves.

Every string that came from a file is escaped for where it lands: HTML text and attributes (`esc`), JSON in a
`<script type="application/json">` block (`script_json`: `<`, `>` and `&` as \\u escapes, so `</script>`
and `<!--` cannot close or comment the block), and links (`safe_link`: relative, percent-encoded, `./` first,
so that no file name can become a `javascript:` URL). A Content-Security-Policy lets only the page's own two
scripts run (by their SHA-256): no inline event handler and no injected script can.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from cvae_bench import __version__
from cvae_bench.bench.fairness import AUDIT_HEADERS, audit_rows
from cvae_bench.report.pictures import DecoderPictures
from cvae_bench.report.verdict import VerdictBlock

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1280px;
       padding: 0 24px 48px; color: #1a1a1a; }
h1 { margin: 24px 0 4px; } h2 { margin-top: 36px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.meta { color: #555; } .note { color: #555; font-size: 13px; } .missing { color: #8a6d00; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 12.5px; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
code, pre { font: 12px ui-monospace, monospace; background: #f6f6f6; } pre { padding: 8px; overflow-x: auto; }
.chart { margin: 12px 0 24px; } .pictures { display: flex; flex-wrap: wrap; gap: 28px; }
.pictures figure { margin: 0; } .pictures img { image-rendering: pixelated; border: 1px solid #ccc; }
figcaption { font-size: 12px; color: #444; max-width: 560px; }
.bad { color: #B00020; font-weight: 600; }
.verdict { border: 2px solid #0072B2; border-radius: 6px; padding: 4px 14px 8px; margin: 12px 0 20px; }
.verdict h2 { margin-top: 8px; border: 0; } .verdict table { font-size: 13.5px; }
.verdict tr.weak td { background: #fff4e5; }
.banner { background: #fdecea; border-left: 5px solid #B00020; padding: 6px 10px; margin: 6px 0; font-weight: 600; }
.clean { background: #e8f5e9; border-left: 5px solid #009E73; padding: 6px 10px; margin: 6px 0; }
.noise { font-size: 13px; color: #333; margin: 4px 0; }
details.sources summary { cursor: pointer; color: #555; }
"""

#: The page's one script of its own: draws the figures of the JSON block, and opens a history point's result
#: on a click (only a relative link that `safe_link` made: './' first, no scheme).
PAGE_SCRIPT = """
(function () {
  var figures = JSON.parse(document.getElementById("cvae-bench-figures").textContent);
  var ids = Object.keys(figures);
  window.CVAE_BENCH_CHARTS = ids;
  ids.forEach(function (id) {
    var div = document.getElementById(id), fig = figures[id];
    if (!div || !window.Plotly) return;
    Plotly.newPlot(div, fig.data, fig.layout, {displaylogo: false, responsive: true}).then(function () {
      if (!div.classList.contains("history-chart")) return;
      div.on("plotly_click", function (ev) {
        var url = ev.points && ev.points[0] && ev.points[0].customdata;
        if (typeof url === "string" && /^\\.\\/[^:]*$/.test(url)) window.open(url, "_blank", "noopener");
      });
    });
  });
})();
"""
#: What the page may do: its two scripts (hashes added at render), inline styles (plotly sets them), data:
#: images; nothing fetched, no plugins, no forms, no <base>.
CSP = (
    "default-src 'none'; script-src {scripts}; style-src 'unsafe-inline'; img-src data:; font-src data:; "
    "object-src 'none'; base-uri 'none'; form-action 'none'"
)


def script_json(value: Any) -> str:
    """JSON for a `<script type="application/json">` block: nothing in it can end the block or open a comment."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    for char in ("&", "<", ">", "\u2028", "\u2029"):
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def safe_link(relative: str | None) -> str | None:
    """A plain relative file link ('./a/b%20c.json'), or None for anything else: a scheme ('javascript:',
    'file:'), an absolute or network path, a backslash. So a file's name never becomes a URL that runs."""
    if not relative or relative.startswith("/") or "\\" in relative or _SCHEME.match(relative):
        return None
    return "./" + quote(relative.removeprefix("./"), safe="/-_.~")


def csp_hash(script: str) -> str:
    """The CSP source of an inline script: 'sha256-<base64>'."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode() + "'"


def esc(value: Any) -> str:
    """HTML-escaped text of `value`."""
    return html.escape(str(value), quote=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An HTML table; numbers are right-aligned."""
    head = "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr></thead>" if headers else ""
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{esc(c)}</td>' if isinstance(c, (int, float)) else f"<td>{esc(c)}</td>" for c in row
        )
        + "</tr>"
        for row in rows
    )
    return f"<table>{head}<tbody>{body}</tbody></table>"


def pre(text: str) -> str:
    """A preformatted block."""
    return f"<pre>{esc(text)}</pre>"


@dataclass
class Page:
    """The page being built: sections of HTML in order, the verdict block, and the figures (by div id)."""

    title: str
    sources: list[str]
    sections: list[str] = field(default_factory=list)
    charts: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    block: VerdictBlock | None = None

    def heading(self, text: str, anchor: str) -> None:
        """A section heading."""
        self.sections.append(f'<h2 id="{esc(anchor)}">{esc(text)}</h2>')

    def html(self, fragment: str) -> None:
        """Raw HTML (already escaped)."""
        self.sections.append(fragment)

    def note(self, text: str, missing: bool = False) -> None:
        """A paragraph of explanation (or of what is missing)."""
        cls = "missing" if missing else "note"
        self.sections.append(f'<p class="{cls}">{esc(text)}</p>')

    def chart(self, name: str, figure: Any, caption: str = "", css: str = "") -> None:
        """A plotly figure: an empty div here, its JSON in the page's figure block, drawn by `PAGE_SCRIPT`.

        The div's id is `name` reduced to [a-z0-9-] (a history family's name comes from a file), made unique.
        """
        import plotly.io as pio

        div_id = "chart-" + re.sub(r"[^a-z0-9-]+", "-", name.lower())
        if div_id in self.figures:
            div_id += f"-{len(self.charts) + 1}"
        self.charts.append(div_id)
        self.figures[div_id] = json.loads(pio.to_json(figure, validate=False))
        extra = f'<p class="note">{esc(caption)}</p>' if caption else ""
        div_class = "chart-plot" + (f" {esc(css)}-chart" if css else "")
        self.sections.append(
            f'<section class="chart {esc(css)}" data-chart="{esc(name)}">'
            f'<div id="{div_id}" class="{div_class}"></div>{extra}</section>'
        )

    def pictures(self, pictures: Sequence[DecoderPictures]) -> None:
        """Each decoder's prior samples and fixed-z picture."""
        parts = []
        for p in pictures:
            if p.error:
                parts.append(f'<p class="missing">{esc(p.path)}: no pictures: {esc(p.error)}</p>')
                continue
            z = ", ".join(f"{v:.2f}" for v in p.z)
            parts.append(
                '<div class="pictures" data-pictures="1">'
                f'<figure><img alt="prior samples" src="{esc(p.prior)}"><figcaption><b>{esc(p.title)}</b> '
                f"({esc(p.path.name)} in {esc(p.path.parent)}): prior samples, rows = digits 0–9, the same z "
                "down each column (seed 0)</figcaption></figure>"
                f'<figure><img alt="one z across labels" src="{esc(p.fixed_z)}"><figcaption>one z = ({esc(z)}) '
                f"decoded with labels {esc(p.labels[0])}–{esc(p.labels[-1])}</figcaption></figure></div>"
            )
        self.sections.append("".join(parts))

    def render(self, plotly_js: str, bundle: str = "plotly.js") -> str:
        """The whole page: the verdict block first, then the sections; `bundle` names the plotly.js inlined."""
        made = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        sources = "".join(f"<li><code>{esc(s)}</code></li>" for s in self.sources)
        csp = CSP.format(scripts=f"{csp_hash(plotly_js)} {csp_hash(PAGE_SCRIPT)}")
        block = verdict_html(self.block) if self.block is not None else ""
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{esc(csp)}">'
            f'<title>{esc(self.title)}</title><link rel="icon" href="data:,"><style>{STYLE}</style>'
            f"<script>{plotly_js}</script></head><body>"
            f"<h1>{esc(self.title)}</h1>"
            f'<p class="meta">Made {made} by cvae-bench {esc(__version__)} ({esc(bundle)} inlined) from '
            f"{len(self.sources)} input(s).</p>"
            + block
            + f'<details class="sources"><summary>The inputs</summary><ul class="meta">{sources}</ul></details>'
            + "\n".join(self.sections)
            + f'<script type="application/json" id="cvae-bench-figures">{script_json(self.figures)}</script>'
            + f"<script>{PAGE_SCRIPT}</script></body></html>\n"
        )


#: The verdict block's columns; memory is added only when an input measured it.
VERDICT_HEADERS = [
    "backend:mode",
    "time to target (median [spread])",
    "vs fastest (time to target)",
    "ms/step (median [95 % CI])",
    "vs fastest (ms/step)",
    "convergence",
]


def verdict_html(block: VerdictBlock) -> str:
    """The verdict block: a table of the answer, the A/A noise floor, and a banner per weakness (or one line
    saying none was found)."""
    headers = VERDICT_HEADERS + (["peak memory (RSS)"] if block.has_memory else [])
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = ""
    for r in block.rows:
        cells = [r.label, r.time_to_target, r.ttt_vs_fastest, r.ms_per_step, r.step_vs_fastest, r.convergence]
        cells += [r.memory or "—"] if block.has_memory else []
        row_class = ' class="weak"' if r.weak else ""
        body += f"<tr{row_class}>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>"
    table_html = (
        f'<table id="verdict-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
        if block.rows
        else '<p class="missing">No backend/mode to compare: the inputs hold no time-to-target and no train-step.</p>'
    )
    banners = "".join(f'<p class="banner" role="alert">⚠ {esc(b)}</p>' for b in block.banners)
    if not block.banners and block.rows:
        banners = (
            '<p class="clean">No warning: no BUSY or withheld verdict, no failed A/A check, no deviant run, '
            "enough rounds and runs.</p>"
        )
    noise = "".join(f'<p class="noise">{esc(n)}</p>' for n in block.noise)
    explain = (
        '<p class="note">Ratios are this row ÷ the fastest (above 1: slower) with their 95 % interval; the verdict '
        "is the one the bench or comparison wrote (faster / slower / tie / unsure; withheld: measured but not judged). "
        "Time to target is at matched quality: seconds of training steps until val −ELBO reaches the target. "
        "The A/A twin (the same backend in a second worker) is the noise check, not a backend.</p>"
    )
    return f'<section class="verdict" id="verdict"><h2>Verdict</h2>{banners}{table_html}{noise}{explain}</section>'


def fairness_table(entries: Sequence[Any]) -> str:
    """The fairness audit of a bench (`bench.fairness.AuditEntry` records)."""
    return table(AUDIT_HEADERS, audit_rows(entries))


def key_values(pairs: Sequence[tuple[str, Any]]) -> str:
    """A two-column table of names and values."""
    rows = [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in pairs if v not in (None, "")]
    return table([], rows)
