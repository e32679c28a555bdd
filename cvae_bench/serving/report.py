"""loadtest.md from a `LoadtestReport` alone (so a loadtest.json re-renders without running anything)."""

from __future__ import annotations

from cvae_bench.core.tables import markdown_table
from cvae_bench.runtime.machine import LoadSample
from cvae_bench.serving.records import ConfigResult, LoadtestReport
from cvae_bench.serving.stats import LatencyStats, Percentile, queries_needed

HEADERS = (
    "precision",
    "provider",
    "serving",
    "single-stream p50",
    "p99 [95% CI]",
    "p99.9",
    "queries",
    "server QPS (p99 ≤ bound)",
    "p99 there [95% CI]",
    "queries",
    "offline images/s (batch)",
    "peak memory (added)",
    "load 1 min",
)


def ms(seconds: float | None) -> str:
    """Milliseconds with three decimals, '—' for None."""
    return "—" if seconds is None else f"{seconds * 1e3:.3f}"


def with_ci(p: Percentile) -> str:
    """'0.112 [0.108, 0.131]' (ms); '?' for a side the sample cannot bound; '*' where too few queries."""
    mark = "" if p.supported else "*"
    low = ms(p.ci_low_s) if p.ci_low_s is not None else "?"
    high = ms(p.ci_high_s) if p.ci_high_s is not None else "?"
    return f"{ms(p.seconds)}{mark} [{low}, {high}]"


def pct(stats: LatencyStats | None, p: float, ci: bool = False) -> str:
    """A percentile cell of `stats`, '—' where absent."""
    if stats is None:
        return "—"
    q = stats.at(p)
    return with_ci(q) if ci else ms(q.seconds) + ("" if q.supported else "*")


def load_cell(sample: LoadSample | None) -> str:
    """The 1-minute load average over the cores: '3.1 / 2'."""
    if sample is None or not sample.loadavg:
        return "?"
    return f"{sample.loadavg[0]:.1f} / {sample.cores or '?'}"


def memory_cell(c: ConfigResult) -> str:
    """The decoder process's peak resident memory over the configuration, and what the configuration added."""
    if c.memory is None:
        return "—"
    return f"{c.memory.peak_rss / 2**20:,.0f} MiB (+{c.memory.added / 2**20:,.0f})"


def row(c: ConfigResult) -> list[str]:
    """One table row."""
    provider = c.provider.removesuffix("ExecutionProvider")
    if c.error:
        return [c.precision, provider, c.threading.label, f"failed: {c.error}", *["—"] * (len(HEADERS) - 4)]
    ss = c.single_stream.latency if c.single_stream else None
    at = c.server.at_best if c.server else None
    best = c.best_offline
    return [
        c.precision,
        provider,
        c.threading.label,
        pct(ss, 50.0),
        pct(ss, 99.0, ci=True),
        pct(ss, 99.9),
        str(ss.queries) if ss else "—",
        f"{c.server.best_qps:,.0f}" if c.server and c.server.best_qps else "none passed",
        pct(at.latency, 99.0, ci=True) if at else "—",
        str(at.queries) if at else "—",
        f"{best.throughput_qps:,.0f} ({best.batch})" if best else "—",
        memory_cell(c),
        load_cell(c.load.after if c.load else None),
    ]


def render_markdown(report: LoadtestReport) -> list[str]:
    """The report's lines: what was measured how, the table, and what each mark means."""
    o = report.options
    env = report.environment
    after = report.load_after.loadavg if report.load_after else "?"
    lines = [
        f"# Load test: {report.model}",
        "",
        f"- load generator: {report.scheduler}",
        f"- model sha256 {report.model_sha256[:12]}…; {o.samples} distinct inputs; latency bound "
        f"{o.latency_bound_s * 1e3:g} ms at p99",
        f"- machine: {env.get('cpu', '?')}, {env.get('cpu_count', '?')} cores; load average "
        f"(1/5/15 min) before {report.load_before.loadavg}, after {after}",
        f"- runs: at least {o.duration_s:g} s and {o.min_queries} queries each; server search ≤ {o.max_probes} probes",
        "",
        *markdown_table(HEADERS, [row(c) for c in report.configs]),
        "",
        "Latencies in ms. [95% CI]: distribution-free interval of the percentile from order statistics; '?' where "
        "the run had too few queries to bound that side. '*': fewer queries than the percentile needs "
        f"(p99: {queries_needed(99.0):,}, p99.9: {queries_needed(99.9):,}). Load: the 1-minute load average over "
        "the cores right after the configuration ran (busy processes are listed in loadtest.json).",
    ]
    busy = {b.name for c in report.configs if c.load for b in c.load.after.busy}
    if busy:
        lines += ["", "Other processes busy during the runs: " + ", ".join(sorted(busy)) + "."]
    if report.skipped:
        lines += ["", "Not measured: " + "; ".join(f"{k}: {v}" for k, v in report.skipped.items())]
    return lines
