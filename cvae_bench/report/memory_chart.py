"""The report's memory chart: each backend's peak resident memory against batch size, from bench.json alone.

It reads `extra_info["memory"]` of the sampling entries (and train-step's, at its batch) and draws nothing for
files without it. Whiskers span the lowest and highest peak over the worker processes; the dotted line is the
idle worker's resident set, so the height above it is what the framework, model and data hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cvae_bench.core.memory import MIB, of_extra_info
from cvae_bench.report.charts import LAYOUT, Colours, _go, _label_benches
from cvae_bench.report.inputs import BenchEntry, Loaded

#: The groups the chart draws; train-step is one point (its batch) per backend.
GROUPS = ("sample-native", "sample-onnxruntime", "train-step")

Figure = Any


def memory_vs_batch(benches: Sequence[Loaded], colours: Colours) -> Figure | None:
    """Peak resident memory (MiB) against batch size per backend series and group (None: no memory figures)."""
    go = _go()
    fig = go.Figure()
    baselines: list[int] = []
    for prefix, bench in _label_benches(benches):
        series: dict[tuple[str, str], list[tuple[BenchEntry, Any]]] = {}
        for g in GROUPS:
            for e in bench.group(g):
                figures = of_extra_info(e.extra_info)
                if figures is not None and e.batch:
                    series.setdefault((g, e.series), []).append((e, figures))
        for (group, key), points in series.items():
            points.sort(key=lambda p: p[0].batch or 0)
            y = [f.peak_rss / MIB for _, f in points]
            lo = [(f.peak_rss_interval or (f.peak_rss, f.peak_rss))[0] / MIB for _, f in points]
            hi = [(f.peak_rss_interval or (f.peak_rss, f.peak_rss))[1] / MIB for _, f in points]
            baselines += [f.baseline_rss for _, f in points]
            train = group == "train-step"
            fig.add_trace(
                go.Scatter(
                    x=[e.batch for e, _ in points],
                    y=y,
                    mode="markers" if train else "lines+markers",
                    name=f"{prefix}{key}" + (" (train-step)" if train else ""),
                    line={"color": colours(key), "dash": "dash" if key.startswith("onnxruntime") else "solid"},
                    marker={"symbol": "diamond" if train else "circle", "size": 11 if train else 8},
                    error_y={
                        "type": "data",
                        "symmetric": False,
                        "array": [h - v for h, v in zip(hi, y, strict=True)],
                        "arrayminus": [v - low for v, low in zip(y, lo, strict=True)],
                    },
                    customdata=[[f.rss_after_import / MIB, f.rss_after_build / MIB, f.processes] for _, f in points],
                    hovertemplate=(
                        f"{prefix}{key} {group}, batch %{{x}}: peak %{{y:,.0f}} MiB"
                        "<br>after import %{customdata[0]:,.0f} MiB, after build %{customdata[1]:,.0f} MiB"
                        "<br>%{customdata[2]} worker process(es)<extra></extra>"
                    ),
                )
            )
    if not fig.data:
        return None
    if baselines:
        base = min(baselines) / MIB
        fig.add_hline(
            y=base,
            line={"dash": "dot", "color": "#555"},
            annotation_text=f"idle worker, no framework: {base:,.0f} MiB",
            annotation_position="bottom right",
        )
    fig.update_xaxes(type="log", title_text="batch size (images per call)")
    fig.update_yaxes(rangemode="tozero", title_text="peak resident memory, MiB (median; bars: range over processes)")
    fig.update_layout(**LAYOUT, title="Memory: peak resident set of each worker against batch size")
    return fig
