"""Make a report: read the inputs, draw what they allow, write one HTML file. The report command's work."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cvae_bench.core.checks import check_output
from cvae_bench.core.errors import UsageError
from cvae_bench.core.events import Message, Reporter
from cvae_bench.report import charts
from cvae_bench.report.bundle import plotly_bundle
from cvae_bench.report.history import append_history, load_history
from cvae_bench.report.inputs import BenchFile, ComparisonFile, Inputs, ReportError, folder_files, load_inputs
from cvae_bench.report.memory_chart import memory_vs_batch
from cvae_bench.report.options import ReportCommand
from cvae_bench.report.page import Page, esc, fairness_table, key_values, pre, table
from cvae_bench.report.pictures import decoder_pictures
from cvae_bench.report.trends import build_trends
from cvae_bench.report.verdict import build_block
from cvae_bench.runtime.files import ensure_dir, write_text
from cvae_bench.training.records import RunResult

#: Why a figure can pass its floor: said under every chart that draws one.
FLOOR_NOTE = (
    "The floor is what the spec's matrix products take as the fastest fp32 GEMMs measured on this machine, so a "
    "figure can beat it (above 1.0 of floor, above the ceiling) where it does not do that fp32 work: int8 "
    "multiplies 4× narrower numbers with integer instructions, and a library may fuse or skip products the "
    "floor counts. Such a figure is not an error, and it is not comparable with the fp32 ones as a fraction."
)
#: At most this many decoders get pictures (one per backend/mode/precision first); the rest are listed.
MAX_DECODERS = 8


def _pick_decoders(paths: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """One decoder per folder name without its seed first (`torch-seed0` and `torch-seed1` are one)."""
    chosen: dict[str, Path] = {}
    for p in paths:
        key = f"{p.parent.name.rsplit('-seed', 1)[0]}/{p.name}"
        chosen.setdefault(key, p)
    keep = list(chosen.values())[:MAX_DECODERS]
    return keep, [p for p in paths if p not in keep]


def _headline(page: Page, results: list[RunResult], colours: charts.Colours) -> None:
    page.heading("Quality against time", "quality")
    fig = charts.quality_vs_time(results, colours)
    if fig is None:
        page.note("No result.json with a history was given: pass run folders to draw val −ELBO over time.", True)
        return
    page.chart(
        "quality",
        fig,
        "Every evaluation of every run by the shared evaluator. Left: seconds of training steps 2…N (the clock "
        "of time-to-target; the button switches to wall time, which also counts the build, the first step and "
        "the evaluations). Right: optimiser steps, with the tutorial's per-epoch val_loss (Keras on "
        "tensorflow, full MNIST, 938 steps an epoch) as stars. Dotted lines: runs that did not reach the "
        "target, diverged or left the convergence band.",
    )


def _time_to_target(page: Page, inputs: Inputs, colours: charts.Colours) -> None:
    results = inputs.run_results()
    comparisons: list[ComparisonFile] = [c.record for c in inputs.comparisons]
    benches: list[BenchFile] = [b.record for b in inputs.benches]
    page.heading("Time to target", "time-to-target")
    fig = charts.time_to_target(results, comparisons, benches, colours)
    if fig is None:
        page.note("No runs to a target were given (result.json, comparison.json or bench.json --runs).", True)
        return
    page.chart(
        "time-to-target",
        fig,
        "Bar: the median over converged runs, whiskers min–max. Every run is a point: a run that did not reach "
        "the target is drawn at its whole training time (▶: more than this), a diverged run as ×, a run that "
        "left the reference band as ◇. None is dropped; deviant runs are never ranked.",
    )
    deviant = [r for r in results if r.convergence is not None and r.convergence.deviant]
    if deviant:
        page.html(
            table(
                ["run", "seed", "why it is deviant"],
                [
                    (charts.series_label(r.backend, r.mode, r.device), r.seed, "; ".join(r.convergence.reasons))
                    for r in deviant
                    if r.convergence
                ],
            )
        )


def _bench_charts(page: Page, inputs: Inputs, colours: charts.Colours) -> None:
    if not inputs.benches:
        page.heading("Benchmarks", "bench")
        page.note("No bench.json was given: the training-step, sampling and roofline charts need one.", True)
        return
    if len(inputs.benches) > 1:
        page.note(
            "Several bench files: [n] before a name is the n-th of: " + ", ".join(str(b.path) for b in inputs.benches)
        )
    for b in inputs.benches:
        summary = b.record.cvae_bench
        if summary is None:
            continue
        if summary.rounds is not None and summary.rounds.busy:
            page.note(
                f"{b.path}: BUSY — no verdict. Foreign load overlapped too many sweeps in every epoch; its timings "
                "are kept for the record, not judged.",
                True,
            )
        for v in summary.verdicts:
            if v.withheld and v.withheld.startswith("IDLE-WORK"):
                page.note(f"{b.path}: {v.name} vs {v.reference}: no verdict — {v.withheld}.", True)
    page.heading("Training step", "train-step")
    fig = charts.train_step(inputs.benches, colours)
    if fig is None:
        page.note("The bench files hold no train-step group.", True)
    else:
        page.chart(
            "train-step",
            fig,
            "Median ms per Adam step at batch 64; whiskers: the 95 % confidence interval "
            "of the typical step (Student's t across epochs of fresh workers; from one epoch's rounds, order "
            "statistics, when there was one), or the IQR with fewer than 6 rounds. "
            "'of floor': the roofline floor ÷ the median (1.0 = as fast as the bare fp32 matmuls at these shapes). "
            + FLOOR_NOTE,
        )
    page.heading("Sampling", "sampling")
    fig = charts.sampling(inputs.benches, colours)
    if fig is None:
        page.note("The bench files hold no sampling group.", True)
    else:
        page.chart(
            "sampling",
            fig,
            "Native backends (solid) decode NumPy in and out; onnxruntime (dashed) runs "
            "the exported decoder per provider and precision ('onnxruntime:fp32': the same CPU decoder timed in "
            "the native decoders' own sweeps, so that their ratios to it pair). The red line is the roofline ceiling: "
            "batch ÷ the floor of the decoder's GEMMs at that batch. " + FLOOR_NOTE,
        )
    page.heading("Memory", "memory")
    fig = memory_vs_batch(inputs.benches, colours)
    if fig is None:
        page.note("The bench files hold no memory figures (bench.json from before memory was measured).", True)
    else:
        page.chart(
            "memory",
            fig,
            "Peak resident set of each backend's worker process during the timed rounds of each batch size "
            "(median over the epochs' fresh workers; bars: lowest to highest). A process keeps what its "
            "allocator cached, so a peak includes what earlier calls in the same worker left resident; the "
            "dotted line is an idle worker of the same code without any framework.",
        )
    page.heading("Roofline", "roofline")
    fig = charts.roofline(inputs.benches)
    if fig is None:
        page.note("The bench files hold no roofline.", True)
    else:
        page.chart(
            "roofline",
            fig,
            "Achieved GFLOP/s (the spec's FLOPs ÷ median time) of every entry (blue); the pink bar "
            "is what the same FLOPs would give at the floor, the sum of the best fp32 GEMM times "
            "measured on this machine at the model's shapes. * marks a figure above its floor. " + FLOOR_NOTE,
        )


def _pictures(page: Page, inputs: Inputs) -> None:
    page.heading("Pictures", "pictures")
    if not inputs.decoders:
        page.note("No decoder.onnx was given (cvae-bench run --export writes one per run).", True)
        return
    keep, rest = _pick_decoders(inputs.decoders)
    page.pictures([decoder_pictures(p) for p in keep])
    if rest:
        page.note(f"{len(rest)} more decoder(s) not drawn: " + ", ".join(str(p) for p in rest))


def _history(page: Page, inputs: Inputs, base: Path | None, colours: charts.Colours) -> None:
    page.heading("History across commits", "history")
    trends = build_trends(inputs.history, base)
    if not trends.series:
        page.note("The history holds no figures yet.", True)
        return
    machines = sorted({(s.machine, s.machine_name) for s in trends.series})
    page.note(
        f"{len(inputs.history)} result(s) over {len(trends.commits)} commit(s) on "
        + "; ".join(f"{name} [{m}]" for m, name in machines)
        + ". A step is a change of the median of "
        "≥ 5 % and ≥ 3σ of the noise (binary segmentation; see cvae_bench/report/steps.py)."
    )
    for family, series in trends.families().items():
        page.chart(f"history-{family}", charts.history_trend(family, series, trends.commits, colours), css="history")
    rows = [
        (
            s.name,
            s.machine_name,
            trends.commits[s.x[st.index - 1]],
            trends.commits[s.x[st.index]],
            f"{st.before:.4g} s",
            f"{st.after:.4g} s",
            f"{st.change:+.1%}",
            s.links[st.index],
        )
        for s in trends.series
        for st in s.steps
    ]
    if rows:
        head = ["metric", "machine", "before", "at", "median before", "after", "change", "result"]
        body = "".join(
            "<tr>"
            + "".join(f"<td>{esc(c)}</td>" for c in row[:-1])
            + (f'<td><a href="{esc(row[-1])}">{esc(row[-1])}</a></td>' if row[-1] else "<td>—</td>")
            + "</tr>"
            for row in rows
        )
        page.html("<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + f"</tr></thead>{body}</table>")
    else:
        page.note("No step detected.")


def _evidence(page: Page, inputs: Inputs, command: str | None) -> None:
    page.heading("Evidence: commands, machine, versions, load, fairness", "evidence")
    commands = [("this report", command)] if command else []
    commands += [(str(b.path), b.record.cvae_bench.command) for b in inputs.benches if b.record.cvae_bench]
    commands += [(str(c.path), c.record.command) for c in inputs.comparisons if c.record.command]
    if commands:
        page.html("<h3>Commands</h3>" + "".join(f"<p><code>{esc(k)}</code></p>{pre(v)}" for k, v in commands))
    if inputs.results:
        page.html(
            "<h3>Runs</h3>"
            + table(
                [
                    "run",
                    "seed",
                    "status",
                    "convergence",
                    "time-to-target s",
                    "steps",
                    "final val −ELBO",
                    "settings",
                    "file",
                ],
                [
                    (
                        charts.series_label(r.backend, r.mode, r.device),
                        r.seed,
                        r.outcome.status,
                        r.convergence.verdict if r.convergence else "—",
                        f"{r.outcome.time_to_target_s:.2f}" if r.outcome.time_to_target_s is not None else "—",
                        r.outcome.steps,
                        f"{r.outcome.final.val_elbo:.3f}" if r.outcome.final else "—",
                        json.dumps(r.config),
                        str(x.path),
                    )
                    for x in inputs.results
                    for r in [x.record]
                ],
            )
        )
    machines: dict[str, tuple[dict[str, Any], list[str]]] = {}
    versions: dict[str, str] = {}

    def machine(info: dict[str, Any], source: Path) -> None:
        # One table per machine, not per input: runs and benches on one machine name the same CPU and cores.
        key = _machine_key(info)
        machines.setdefault(key, (info, []))[1].append(str(source))

    for x in inputs.results:
        machine(x.record.hardware, x.path)
        versions.update(x.record.versions)
    for c in inputs.comparisons:
        machine(c.record.hardware, c.path)
    for b in inputs.benches:
        info = b.record.machine_info
        versions.update(info.get("versions", {}))
        cpu = info.get("cpu")
        count = cpu.get("count") if isinstance(cpu, dict) else None
        machine(
            {**info.get("environment", {}), "node": info.get("node"), "cpu": _cpu_name(info), "cpu_count": count},
            b.path,
        )
    for i, (m, sources) in enumerate(machines.values()):
        title = f"Machine {i + 1} of {len(machines)}" if len(machines) > 1 else "Machine"
        page.html(
            f"<h3>{title}</h3>"
            + key_values(sorted(m.items()))
            + f'<p class="note">{esc(len(sources))} input(s) ran here: {esc(", ".join(sources[:6]))}'
            + (f" and {len(sources) - 6} more" if len(sources) > 6 else "")
            + "</p>"
        )
    if versions:
        page.html("<h3>Versions</h3>" + key_values(sorted(versions.items())))
    for b in inputs.benches:
        summary = b.record.cvae_bench
        if summary is None:
            continue
        if summary.load is not None:
            rows = [
                (
                    when,
                    " ".join(f"{v:.2f}" for v in (s.loadavg or [])),
                    s.cores,
                    ", ".join(f"{p.name} (pid {p.pid}) {p.cpu:.0%}" for p in s.busy) or "none",
                )
                for when, s in (("before", summary.load.before), ("after", summary.load.after))
            ]
            page.html(
                f"<h3>Load during {esc(b.path)}</h3>"
                + table(["when", "load average 1/5/15 min", "cores", "other busy processes"], rows)
            )
        if summary.fairness:
            page.html(f"<h3>Fairness audit of {esc(b.path)}</h3>" + fairness_table(summary.fairness))
    if inputs.skipped:
        page.html("<h3>Files not read</h3>" + "".join(f'<p class="missing">{esc(x)}</p>' for x in inputs.skipped))


def _cpu_name(info: dict[str, Any]) -> Any:
    cpu = info.get("cpu")
    return cpu.get("brand_raw", cpu) if isinstance(cpu, dict) else cpu


def _machine_key(info: dict[str, Any]) -> str:
    """What tells machines apart: the CPU's name and core count (runs and benches write them under different
    keys; per-run fields such as the affinity or the Python do not make another machine)."""
    return f"{_cpu_name(info) or '?'}|{info.get('cpu_count') or ''}"


def build_page(inputs: Inputs, base: Path | None = None, command: str | None = None) -> Page:
    """The report page of `inputs`; `base` is the folder the page will be written to (for links)."""
    sources = [str(x.path) for x in (*inputs.results, *inputs.comparisons, *inputs.benches)]
    sources += [str(p) for p in inputs.decoders]
    if inputs.history:
        sources.append(f"{len(inputs.history)} history entries")
    page = Page("cvae-bench report", sources, block=build_block(inputs))
    colours = charts.Colours()
    _headline(page, inputs.run_results(), colours)
    _time_to_target(page, inputs, colours)
    _bench_charts(page, inputs, colours)
    _pictures(page, inputs)
    if inputs.history:
        _history(page, inputs, base, colours)
    _evidence(page, inputs, command)
    return page


def make_report(
    paths: Sequence[str | Path],
    out: str | Path,
    *,
    history: str | Path | None = None,
    command: str | None = None,
) -> tuple[Path, Inputs]:
    """Read `paths` (and the history folder), write the report to `out`; returns it and what was read.

    Raises:
        ReportError: nothing to report, an input that cannot be read, or plotly missing.
    """
    bundle = plotly_bundle()
    inputs = load_inputs(paths)
    if history is not None:
        inputs.history += load_history(history, inputs.skipped)
    if inputs.empty:
        raise ReportError(
            "nothing to report: expected run folders, result.json, comparison.json, bench.json, decoder.onnx "
            f"or --history with entries; received {', '.join(map(str, paths)) or 'no paths'}"
            + (f" and an empty history {history}" if history is not None else "")
        )
    target = Path(out)
    ensure_dir(target.parent)
    write_text(target, build_page(inputs, target.parent, command).render(bundle.js, bundle.name))
    return target, inputs


def write_report(folder_or_paths: str | Path | Sequence[str | Path], out: str | Path | None = None) -> Path:
    """Write report.html for what a command just wrote: `cvae-bench run` and `bench` call this at the end.

    Args:
        folder_or_paths: the command's output folder (or files and folders).
        out: the page to write (default: `<folder>/report.html`).

    Returns:
        The page written.

    Raises:
        ReportError: nothing to report there, or plotly missing (a command may warn and go on).
    """
    paths = [folder_or_paths] if isinstance(folder_or_paths, (str, Path)) else list(folder_or_paths)
    if out is None:
        first = Path(paths[0])
        out = (first if first.is_dir() else first.parent) / "report.html"
    return make_report(paths, out)[0]


def publish_results(
    folder: Path, reporter: Reporter, *, report: bool = True, history: Path | None = None, result: Path | None = None
) -> None:
    """What `run` and `bench` do with their results once the work is done: report.html into `folder` (a warning,
    not a failure, when it cannot be made) and the history entry of `result` (default: the folder) in `history`
    (none when None)."""
    if report:
        try:
            reporter.report(Message(f"report written to {write_report(folder)}"))
        except ReportError as exc:
            reporter.report(Message(f"warning: no report.html: {exc}", "warning"))
    if history is not None:
        append_history(result or folder, history)
        reporter.report(Message(f"results appended to the history in {history}"))


def input_files(paths: Sequence[str | Path], history: str | Path | None) -> list[Path]:
    """Every file a report over `paths` (and the history folder) may read: the page must not replace one."""
    files: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        files += list(folder_files(p)) if p.is_dir() else [p]
    if history is not None and Path(history).is_dir():
        files += [f for f in Path(history).rglob("*.json") if f.is_file()]
    return files


def report_command(cmd: ReportCommand) -> list[str]:
    """`cvae-bench report`: optionally add `cmd.paths` to the history, then write the page; returns lines to print.

    Raises:
        UsageError: `append` without `history` (before any work).
        ReportError: nothing to report, an unreadable input, or plotly missing.
        CvaeBenchError: `out` is a file the report reads, or exists without `force`.
    """
    paths, out, history, command = cmd.paths, cmd.out, cmd.history, cmd.command
    if cmd.append and history is None:
        raise UsageError("--append: expected --history DIR to append to")
    check_output(out, input_files(paths, history), force=cmd.force)
    lines = []
    if cmd.append and history is not None:
        inputs = load_inputs(paths)
        for loaded in (*inputs.results, *inputs.comparisons, *inputs.benches):
            lines.append(f"history: {append_history(loaded.path, history)}")
    page, inputs = make_report(paths, out, history=history, command=command)
    drawn = {
        ("result", "results"): len(inputs.results),
        ("comparison", "comparisons"): len(inputs.comparisons),
        ("bench", "benches"): len(inputs.benches),
        ("decoder", "decoders"): len(inputs.decoders),
        ("history entry", "history entries"): len(inputs.history),
    }
    counts = ", ".join(f"{n} {names[n != 1]}" for names, n in drawn.items() if n)
    lines += [f"skipped: {s}" for s in inputs.skipped]
    lines.append(f"written {page} ({counts})")
    return lines
