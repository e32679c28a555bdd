"""The report's charts, one function each: plotly figures built from the input records alone.

Each function returns None when its inputs hold nothing to draw; the page then says which files would.
plotly is imported here only (the `report` extra), inside the functions that draw.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from cvae_bench.bench.verdicts import AA_TWIN
from cvae_bench.report.inputs import BenchEntry, BenchFile, ComparisonFile, Floor, Loaded
from cvae_bench.report.stats import median_ci
from cvae_bench.training.compare import summarize
from cvae_bench.training.convergence import TUTORIAL_VAL_LOSS
from cvae_bench.training.records import ComparisonRow, RunResult

Figure = Any  # plotly.graph_objects.Figure (plotly ships no type hints)

#: Okabe–Ito colours (distinct for colour-blind readers), then plotly's defaults.
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#F0E442",
    "#000000",
    "#636EFA",
    "#EF553B",
    "#00CC96",
    "#AB63FA",
)
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
#: The tutorial's steps per epoch (60,000 images at batch 64).
TUTORIAL_STEPS_PER_EPOCH = 938
LAYOUT: dict[str, Any] = {
    "template": "plotly_white",
    "height": 440,
    "margin": {"l": 70, "r": 30, "t": 60, "b": 60},
    "legend": {"font": {"size": 11}},
    "hoverlabel": {"namelength": -1},
}


def log_axis(title: str, tickformat: str = "~s") -> dict[str, Any]:
    """A log axis that labels powers of ten only (1, 10, 100, 1k …), with unlabelled minor ticks between:
    plotly's default labels every digit of a narrow log range ('6 5 4 3 2 100k 9 8 7')."""
    return {
        "type": "log",
        "dtick": 1,
        "tickformat": tickformat,
        "minor": {"ticks": "outside", "ticklen": 3, "showgrid": True, "gridcolor": "#f2f2f2"},
        "title_text": title,
    }


class Colours:
    """One colour per series label, the same in every chart of a page."""

    def __init__(self) -> None:
        self._known: dict[str, str] = {}

    def __call__(self, label: str) -> str:
        if label not in self._known:
            self._known[label] = PALETTE[len(self._known) % len(PALETTE)]
        return self._known[label]


def _go() -> Any:
    import plotly.graph_objects as go

    return go


def series_label(backend: str, mode: str, device: str = "cpu") -> str:
    """'torch:eager' (with the device when it is not the CPU)."""
    return f"{backend}:{mode}" + ("" if device == "cpu" else f" ({device})")


def _run_note(r: RunResult) -> str:
    notes = []
    if r.outcome.status == "diverged":
        notes.append("diverged")
    elif r.outcome.status == "not-reached":
        notes.append("not reached")
    if r.convergence is not None and r.convergence.deviant:
        notes.append("deviant")
    return f" ({', '.join(notes)})" if notes else ""


# -- quality against time: the headline ----------------------------------------------------------------
def quality_vs_time(results: Sequence[RunResult], colours: Colours) -> Figure | None:
    """Val −ELBO against training time (a button switches to wall time) and against steps, every run."""
    runs = [r for r in results if r.outcome.history]
    if not runs:
        return None
    from plotly.subplots import make_subplots

    go = _go()
    fig = make_subplots(
        rows=1,
        cols=2,
        shared_yaxes=True,
        horizontal_spacing=0.06,
        subplot_titles=("against training time", "against optimiser steps"),
    )
    seeds: dict[str, int] = {}
    train_x, wall_x, left = [], [], []
    for r in sorted(runs, key=lambda r: (series_label(r.backend, r.mode, r.device), r.seed)):
        label = series_label(r.backend, r.mode, r.device)
        dash = DASHES[seeds.setdefault(f"{label}/{r.seed}", sum(k.startswith(label + "/") for k in seeds)) % 6]
        h = r.outcome.history
        name = f"{label} seed {r.seed}{_run_note(r)}"
        style = {"color": colours(label), "dash": "dot" if _run_note(r) else dash, "width": 2}
        common = {"legendgroup": label, "mode": "lines+markers", "marker": {"size": 5}, "line": style}
        hover = "%{text}<br>val −ELBO %{y:.2f} nats<extra>" + name + "</extra>"
        text = [
            f"step {p.step}, epoch {p.epoch:.2f}, {p.train_time_s:.1f} s training (first step included), "
            f"{p.wall_time_s:.1f} s wall"
            for p in h
        ]
        left.append(len(fig.data))
        # The clock of time-to-target: training steps 2…N (result.json's train_time_s includes the first step).
        train_x.append([max(p.train_time_s - r.outcome.first_step_s, 0.0) for p in h])
        wall_x.append([p.wall_time_s for p in h])
        y = [p.val_elbo for p in h]
        fig.add_trace(go.Scatter(x=train_x[-1], y=y, name=name, text=text, hovertemplate=hover, **common), row=1, col=1)
        fig.add_trace(
            go.Scatter(
                x=[p.step for p in h], y=y, name=name, text=text, hovertemplate=hover, showlegend=False, **common
            ),
            row=1,
            col=2,
        )
    fig.add_trace(
        go.Scatter(
            x=[(e + 1) * TUTORIAL_STEPS_PER_EPOCH for e in range(len(TUTORIAL_VAL_LOSS))],
            y=list(TUTORIAL_VAL_LOSS),
            mode="markers",
            marker={"symbol": "star", "size": 11, "color": "#444"},
            name="tutorial val_loss per epoch (938 steps each)",
            hovertemplate="tutorial, step %{x}: val_loss %{y}<extra></extra>",
        ),
        row=1,
        col=2,
    )
    targets = {r.outcome.target for r in runs if r.outcome.target is not None}
    for target in sorted(targets):
        fig.add_hline(
            y=target,
            line={"color": "#B00020", "dash": "dash", "width": 1.5},
            annotation_text=f"target {target:g}",
            annotation_position="top left",
        )
    lows = [min(p.val_elbo for p in r.outcome.history) for r in runs]
    # The first evaluations of a run sit far above the rest; the axis shows the approach to the target.
    top = max(max(targets, default=max(lows)) + 25, min(lows) + 25)
    fig.update_yaxes(
        title_text="val −ELBO (nats, lower is better)", range=[min([*lows, *TUTORIAL_VAL_LOSS]) - 2, top], col=1
    )
    fig.update_xaxes(title_text="training time, s (steps 2…N; build, first step, evaluations apart)", col=1)
    fig.update_xaxes(**log_axis("optimiser steps (log)"), col=2)
    fig.update_layout(
        **{**LAYOUT, "height": 520, "margin": {"l": 70, "r": 30, "t": 90, "b": 60}},
        title="Quality against time: val −ELBO of every run (shared evaluator)",
        updatemenus=[
            {
                "type": "buttons",
                "direction": "right",
                "x": 1.0,
                "y": 1.2,
                "xanchor": "right",
                "buttons": [
                    {"label": "training time", "method": "restyle", "args": [{"x": train_x}, left]},
                    {"label": "wall time (all)", "method": "restyle", "args": [{"x": wall_x}, left]},
                ],
            }
        ],
    )
    return fig


# -- time to target -----------------------------------------------------------------------------------------
def _row_label(row: ComparisonRow) -> str:
    counts = f"{row.converged}/{row.runs} reached"
    if row.diverged:
        counts += f", {row.diverged} diverged"
    if row.deviant:
        counts += f", {row.deviant} deviant"
    return f"{series_label(row.backend, row.mode, row.device)}<br>{counts}"


def time_to_target(
    results: Sequence[RunResult], comparisons: Sequence[ComparisonFile], benches: Sequence[BenchFile], colours: Colours
) -> Figure | None:
    """Median and spread of time-to-target per backend/mode, every run a point: none dropped.

    Runs come from result.json files when given (not-reached runs at their whole training time, as a
    right-pointing triangle: "more than this"), else from comparison.json's runs; rows from the results,
    else comparison.json, else bench.json's time-to-target rows.
    """
    results = [r for r in results if r.outcome.target is not None]  # fixed-epoch runs have no target
    rows: list[ComparisonRow] = list(summarize(results)) if results else []
    points: list[tuple[str, float | None, str, str]] = []  # (row key, seconds, kind, hover)
    for r in results:
        o = r.outcome
        key = series_label(r.backend, r.mode, r.device)
        note = _run_note(r).strip(" ()") or ("reached" if o.reached else o.status)
        if o.reached and o.time_to_target_s is not None:
            points.append((key, o.time_to_target_s, note, f"seed {r.seed}: {o.time_to_target_s:.1f} s ({note})"))
        else:
            spent = max(o.train_time_s - o.first_step_s, 0.0)  # the same clock as time-to-target
            points.append((key, spent, note, f"seed {r.seed}: {note} after {spent:.1f} s"))
    if not results:
        for c in comparisons:
            rows += c.rows
            for b in c.runs:
                key = series_label(b.backend, b.mode, b.device)
                note = ", ".join(
                    n
                    for n, on in (
                        ("not reached", not b.reached),
                        ("diverged", b.status == "diverged"),
                        ("deviant", b.deviant),
                    )
                    if on
                )
                points.append(
                    (
                        key,
                        b.time_to_target_s if b.reached else None,
                        note or "reached",
                        f"seed {b.seed}: {note or 'reached'}",
                    )
                )
        if not rows:
            for bench in benches:
                if bench.cvae_bench and bench.cvae_bench.time_to_target:
                    rows += bench.cvae_bench.time_to_target.rows
    if not rows:
        return None
    go = _go()
    fig = go.Figure()
    keys = {series_label(r.backend, r.mode, r.device): _row_label(r) for r in rows}
    known = [p[1] for p in points if p[1] is not None] + [r.time_to_target_s or 0.0 for r in rows]
    edge = max(known, default=1.0) * 1.08 or 1.0
    for row in rows:
        key = series_label(row.backend, row.mode, row.device)
        if row.time_to_target_s is None:
            continue
        spread = row.time_to_target_spread_s or [row.time_to_target_s, row.time_to_target_s]
        fig.add_trace(
            go.Scatter(
                x=[row.time_to_target_s],
                y=[keys[key]],
                mode="markers",
                marker={"symbol": "line-ns", "size": 26, "line": {"width": 4, "color": colours(key)}},
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": [spread[1] - row.time_to_target_s],
                    "arrayminus": [row.time_to_target_s - spread[0]],
                    "color": colours(key),
                    "thickness": 2,
                },
                name=f"{key} median (min–max)",
                legendgroup=key,
                hovertemplate=f"{key}: median %{{x:.1f}} s over {row.converged} converged run(s), "
                f"spread {spread[0]:.1f}–{spread[1]:.1f} s<extra></extra>",
            )
        )
    symbols = {"diverged": "x", "not reached": "triangle-right", "deviant": "diamond-open", "reached": "circle"}
    for kind in sorted({p[2] for p in points}):
        chosen = [p for p in points if p[2] == kind and p[0] in keys]
        # The gravest wins: diverged, then not reached, then deviant.
        symbol = next((s for k, s in symbols.items() if k in kind and k != "reached"), symbols["reached"])
        fig.add_trace(
            go.Scatter(
                x=[p[1] if p[1] is not None else edge for p in chosen],
                y=[keys[p[0]] for p in chosen],
                mode="markers",
                marker={
                    "symbol": symbol,
                    "size": 11,
                    "color": [colours(p[0]) for p in chosen],
                    "line": {"width": 1.5, "color": "#B00020" if kind != "reached" else "#333"},
                },
                name=f"run: {kind}" + (" (at its whole training time)" if kind != "reached" and results else ""),
                text=[
                    p[3] + ("" if p[1] is not None else " (time not in comparison.json; drawn at the edge)")
                    for p in chosen
                ],
                hovertemplate="%{text}<extra></extra>",
            )
        )
    fig.update_xaxes(title_text="time to target, s (training steps 2…N)", rangemode="tozero")
    fig.update_yaxes(autorange="reversed", title_text="")
    target = next((r.target for r in rows if r.target is not None), None)
    fig.update_layout(
        **{**LAYOUT, "height": 160 + 70 * len(rows)},
        title=f"Time to target (val −ELBO ≤ {target:g}): median, spread and every run" if target else "Time to target",
    )
    return fig


# -- train step ---------------------------------------------------------------------------------------------
def _label_benches(benches: Sequence[Loaded]) -> list[tuple[str, BenchFile]]:
    many = len(benches) > 1
    return [(f"[{i + 1}] " if many else "", b.record) for i, b in enumerate(benches)]


def interval(entry: BenchEntry) -> tuple[float, float, str]:
    """The 95 % interval of an entry's median (order statistics), or its IQR below 6 rounds; and which."""
    ci = median_ci(entry.stats.data) if entry.stats.data else None
    if ci is not None:
        return ci[0], ci[1], "95 % CI of the median"
    s = entry.stats
    return (s.q1 if s.q1 is not None else s.median), (s.q3 if s.q3 is not None else s.median), "IQR"


def is_twin(entry: BenchEntry) -> bool:
    """The A/A twin's entry (`params.aa_twin`, or ' (A/A)' in the mode of older files): the noise check, which
    the verdict block reports; never drawn as a backend."""
    return bool(entry.params.get(AA_TWIN)) or "(A/A)" in str(entry.info("mode", ""))


def train_step(benches: Sequence[Loaded], colours: Colours) -> Figure | None:
    """ms/step of every backend/mode with the 95 % CI of the median (IQR when too few rounds), the fraction
    of the roofline floor on each bar, and the floor as a line."""
    items = [(p, b, e) for p, b in _label_benches(benches) for e in b.group("train-step") if not is_twin(e)]
    if not items:
        return None
    go = _go()
    fig = go.Figure()
    floors = set()
    for prefix, bench, e in sorted(items, key=lambda t: t[2].stats.median):
        lo, hi, how = interval(e)
        ms = e.stats.median * 1e3
        frac = e.info("fraction_of_floor")
        key = e.series
        tick = prefix + key + (f"<br>{frac:.2f} of floor" if frac else "")
        fig.add_trace(
            go.Bar(
                x=[tick],
                y=[ms],
                marker_color=colours(key),
                error_y={"type": "data", "symmetric": False, "array": [hi * 1e3 - ms], "arrayminus": [ms - lo * 1e3]},
                text=[f"{ms:.2f} ms"],
                textposition="inside",
                insidetextanchor="start",
                name=prefix + key,
                hovertemplate=f"{prefix}{key}: %{{y:.3f}} ms/step (median of {e.stats.rounds} rounds), "
                f"{how} {lo * 1e3:.3f}–{hi * 1e3:.3f} ms"
                + (f", {frac:.2f} of the roofline floor" if frac else "")
                + "<extra></extra>",
                showlegend=False,
            )
        )
        floor = bench.cvae_bench.roofline.train_step if bench.cvae_bench and bench.cvae_bench.roofline else None
        if floor is not None:
            floors.add(floor.floor_s)
    for f in sorted(floors):
        fig.add_hline(
            y=f * 1e3,
            line={"color": "#B00020", "dash": "dash"},
            annotation_text=f"roofline floor {f * 1e3:.3f} ms (bare GEMMs)",
            annotation_position="top right",
        )
    fig.update_yaxes(title_text="ms per step (batch 64, median; bars: 95 % CI or IQR)", rangemode="tozero")
    fig.update_layout(**LAYOUT, title="Training step: one Adam step at batch 64")
    return fig


# -- sampling -----------------------------------------------------------------------------------------------
def _decode_floors(bench: BenchFile) -> dict[int, Floor]:
    roof = bench.cvae_bench.roofline if bench.cvae_bench else None
    return dict(roof.decode) if roof else {}


def sampling(benches: Sequence[Loaded], colours: Colours) -> Figure | None:
    """Images/s against batch size for every native backend and onnxruntime precision/provider, with the
    roofline ceiling (batch ÷ the decoder GEMMs' floor)."""
    groups = ("sample-native", "sample-onnxruntime")
    labelled = _label_benches(benches)
    if not any(b.group(g) for _, b in labelled for g in groups):
        return None
    go = _go()
    fig = go.Figure()
    for prefix, bench in labelled:
        series: dict[str, list[BenchEntry]] = {}
        for g in groups:
            for e in bench.group(g):
                if e.batch and not is_twin(e):
                    series.setdefault(e.series, []).append(e)
        for key, entries in series.items():
            entries.sort(key=lambda e: e.batch or 0)
            x = [e.batch for e in entries]
            y = [(e.batch or 0) / e.stats.median for e in entries]
            lo = [(e.batch or 0) / interval(e)[1] for e in entries]
            hi = [(e.batch or 0) / interval(e)[0] for e in entries]
            onnx = key.startswith("onnxruntime")
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=y,
                    mode="lines+markers",
                    name=prefix + key,
                    line={"color": colours(key), "dash": "dash" if onnx else "solid"},
                    marker={"symbol": "square" if onnx else "circle", "size": 8},
                    error_y={
                        "type": "data",
                        "symmetric": False,
                        "array": [h - v for h, v in zip(hi, y, strict=True)],
                        "arrayminus": [v - low for v, low in zip(y, lo, strict=True)],
                    },
                    hovertemplate=f"{prefix}{key}, batch %{{x}}: %{{y:,.0f}} images/s<extra></extra>",
                )
            )
        floors = _decode_floors(bench)
        if floors:
            batches = sorted(floors)
            fig.add_trace(
                go.Scatter(
                    x=batches,
                    y=[b / floors[b].floor_s for b in batches],
                    mode="lines+markers",
                    name=f"{prefix}roofline ceiling (decoder GEMMs alone)",
                    line={"color": "#B00020", "width": 3},
                    marker={"symbol": "line-ew-open", "size": 14},
                    hovertemplate="ceiling at batch %{x}: %{y:,.0f} images/s<extra></extra>",
                )
            )
    fig.update_xaxes(**log_axis("batch size (images per call)"))
    fig.update_yaxes(**log_axis("images/s (median; bars: 95 % CI or IQR)"))
    fig.update_layout(**LAYOUT, title="Sampling: decoded images per second against batch size")
    return fig


# -- roofline -----------------------------------------------------------------------------------------------
def roofline(benches: Sequence[Loaded]) -> Figure | None:
    """Achieved GFLOP/s of every entry beside the GFLOP/s it would show at the roofline floor."""
    names, achieved, ceiling, text = [], [], [], []
    for prefix, bench in _label_benches(benches):
        for e in bench.benchmarks:
            flops, floor_s = e.info("flops_per_call"), e.info("floor_s")
            if not flops or not floor_s or is_twin(e):
                continue
            names.append(prefix + e.name)
            achieved.append(flops / e.stats.median / 1e9)
            ceiling.append(flops / floor_s / 1e9)
            frac = floor_s / e.stats.median
            # Above 1 is not an error: the floor is fp32 GEMMs; int8 or fused work can beat it (see the caption).
            text.append(f"{frac:.2f} of floor" + (" *" if frac > 1 else ""))
    if not names:
        return None
    go = _go()
    fig = go.Figure()
    bars = {"textposition": "outside", "textangle": 0, "textfont": {"size": 10}}
    fig.add_trace(go.Bar(x=names, y=achieved, name="achieved", marker_color="#0072B2", text=text, **bars))
    fig.add_trace(go.Bar(x=names, y=ceiling, name="ceiling: the same FLOPs at the floor", marker_color="#E8A0A8"))
    wide = max(ceiling) / max(min(achieved), 1e-12) > 50
    title = "GFLOP/s (spec FLOPs ÷ median time)"
    fig.update_yaxes(**(log_axis(title) if wide else {"type": "linear", "title_text": title}))
    fig.update_xaxes(tickangle=-35)
    fig.update_layout(
        **{**LAYOUT, "height": 520, "margin": {"l": 70, "r": 30, "t": 60, "b": 170}},
        title="Roofline: achieved GFLOP/s against this machine's measured ceiling",
        barmode="group",
    )
    return fig


# -- history ------------------------------------------------------------------------------------------------
def history_trend(family: str, series: Sequence[Any], commits: Sequence[str], colours: Colours) -> Figure:
    """One family's trend across commits: a line per (metric, machine), steps marked, points linked.

    Args:
        family: the chart's name (a benchmark group, "time-to-target", …).
        series: `report.trends.Series` of this family.
        commits: the x-axis labels in order.
    """
    go = _go()
    fig = go.Figure()
    for s in series:
        key = f"{s.name} · {s.machine_name}"
        fig.add_trace(
            go.Scatter(
                x=[commits[i] for i in s.x],
                y=s.y,
                mode="lines+markers",
                name=key,
                line={"color": colours(key)},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [h - v if h is not None else 0 for h, v in zip(s.high, s.y, strict=True)],
                    "arrayminus": [v - lo if lo is not None else 0 for lo, v in zip(s.low, s.y, strict=True)],
                },
                customdata=s.links,
                text=s.hover,
                hovertemplate="%{text}<extra></extra>",
            )
        )
        for st in s.steps:
            fig.add_trace(
                go.Scatter(
                    x=[commits[s.x[st.index]]],
                    y=[s.y[st.index]],
                    mode="markers",
                    marker={
                        "symbol": "star-triangle-up" if st.change > 0 else "star-triangle-down",
                        "size": 18,
                        "color": "#B00020" if st.change > 0 else "#009E73",
                        "line": {"width": 1, "color": "#000"},
                    },
                    name=f"step {st.change:+.0%}: {s.name}",
                    customdata=[s.links[st.index]],
                    hovertemplate=f"step: {st.before:.4g} → {st.after:.4g} s ({st.change:+.1%}) at %{{x}}"
                    "<extra></extra>",
                )
            )
    values = [v for s in series for v in s.y if v > 0]
    log = bool(values) and max(values) / min(values) > 20
    title = "seconds (median; lower is better)"
    fig.update_yaxes(**(log_axis(title, "~g") if log else {"type": "linear", "title_text": title}))
    fig.update_xaxes(title_text="commit (in the order the results were made)", type="category")
    fig.update_layout(**LAYOUT, title=f"History: {family} (click a point to open its result)")
    return fig


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def median_or_none(values: Sequence[float]) -> float | None:
    """The median of the finite values, None when there are none."""
    kept = _finite(values)
    return statistics.median(kept) if kept else None
