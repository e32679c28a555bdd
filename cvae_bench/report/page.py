"""The report as one self-contained HTML page: plotly's JavaScript inlined once, charts, pictures, evidence.

Nothing on the page is fetched from the network: plotly.js is written into the page (about 4.8 MB), the
pictures are data: URIs, and the only links are to the input files themselves.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cvae_bench import __version__
from cvae_bench.bench.fairness import AUDIT_HEADERS, audit_rows
from cvae_bench.report.pictures import DecoderPictures

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
"""

#: Runs once the page has loaded: a click on a history point opens the result it came from.
CLICK_SCRIPT = """
window.addEventListener("load", function () {
  document.querySelectorAll(".history .js-plotly-plot").forEach(function (div) {
    if (div.on) div.on("plotly_click", function (ev) {
      var url = ev.points && ev.points[0] && ev.points[0].customdata;
      if (url) window.open(url, "_blank");
    });
  });
});
"""


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
    """The page being built: sections of HTML in order, and the charts among them (by id)."""

    title: str
    sources: list[str]
    sections: list[str] = field(default_factory=list)
    charts: list[str] = field(default_factory=list)

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
        """A plotly figure, drawn from the page's inlined plotly.js."""
        div_id = f"chart-{name}"
        body = figure.to_html(
            full_html=False,
            include_plotlyjs=False,
            div_id=div_id,
            config={"displaylogo": False, "responsive": True},
        )
        self.charts.append(div_id)
        extra = f'<p class="note">{esc(caption)}</p>' if caption else ""
        self.sections.append(f'<section class="chart {esc(css)}" data-chart="{esc(name)}">{body}{extra}</section>')

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
                f'<figure><img alt="prior samples" src="{p.prior}"><figcaption><b>{esc(p.title)}</b> '
                f"({esc(p.path.name)} in {esc(p.path.parent)}): prior samples, rows = digits 0–9, the same z "
                "down each column (seed 0)</figcaption></figure>"
                f'<figure><img alt="one z across labels" src="{p.fixed_z}"><figcaption>one z = ({esc(z)}) '
                f"decoded with labels {p.labels[0]}–{p.labels[-1]}</figcaption></figure></div>"
            )
        self.sections.append("".join(parts))

    def render(self, plotly_js: str) -> str:
        """The whole page."""
        made = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        sources = "".join(f"<li><code>{esc(s)}</code></li>" for s in self.sources)
        charts = json.dumps(self.charts)
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<title>{esc(self.title)}</title><link rel="icon" href="data:,"><style>{STYLE}</style>'
            f'<script type="text/javascript">{plotly_js}</script></head><body>'
            f"<h1>{esc(self.title)}</h1>"
            f'<p class="meta">Made {made} by cvae-bench {esc(__version__)} from:</p><ul class="meta">{sources}</ul>'
            + "\n".join(self.sections)
            + f"<script>window.CVAE_BENCH_CHARTS = {charts};{CLICK_SCRIPT}</script></body></html>\n"
        )


def fairness_table(entries: Sequence[Any]) -> str:
    """The fairness audit of a bench (`bench.fairness.AuditEntry` records)."""
    return table(AUDIT_HEADERS, audit_rows(entries))


def key_values(pairs: Sequence[tuple[str, Any]]) -> str:
    """A two-column table of names and values."""
    rows = [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in pairs if v not in (None, "")]
    return table([], rows)
