"""The `cvae-bench bench` results: pytest-benchmark-compatible JSON, tables per group, Markdown.

bench.json has pytest-benchmark's layout (`machine_info`, `commit_info`, `benchmarks`, `datetime`,
`version`), so `pytest-benchmark compare bench.json other.json` reads it, plus one key of ours,
`cvae_bench`, with the roofline, the fairness audit, time-to-target rows, load and options. Each entry of
`benchmarks` is one measurement:

- `group`: "train-step", "sample-native" or "sample-onnxruntime"; `name`/`fullname`: e.g.
  "train-step[torch-eager]", "sample-onnxruntime[CPU-int8-b1024]"; `params`: backend/mode or
  provider/precision, and batch;
- `stats`: pytest-benchmark's statistics of the seconds per call (one training step, or one decoder call
  of `batch` images): min, max, mean, stddev, median, q1, q3, iqr, outliers …, `data` (per-call seconds
  of each round) and `iterations` (calls per round);
- `extra_info`: backend, mode, device, versions, threads, batch_size, flops_per_call (the spec's count),
  gflops and images_per_s (at the median), floor_s and fraction_of_floor (the roofline), and the times
  kept out of the statistics: build_s, first_step_s / first_call_s / session_s, warmup_s, data_load_s.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata as md
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cvae_bench.bench.fairness import AUDIT_HEADERS, audit_rows
from cvae_bench.bench.roofline import fraction_of_floor
from cvae_bench.bench.runner import per_call_stats
from cvae_bench.runtime.files import write_json, write_text

PROVIDER_SHORT = {"CPUExecutionProvider": "CPU", "CUDAExecutionProvider": "CUDA"}


def _entry(
    group: str, key: str, params: dict[str, Any], timing: dict[str, Any], extra: dict[str, Any]
) -> dict[str, Any]:
    stats = per_call_stats(timing)
    median = stats["median"]
    batch = extra["batch_size"]
    flops = extra["flops_per_call"]
    extra = {
        **extra,
        "median_s": median,
        "gflops": flops / median / 1e9,
        "images_per_s": batch / median,
        "fraction_of_floor": fraction_of_floor(extra.get("floor_s"), median),
        "warmup_s": timing.get("warmup_s"),
        "warmup_calls": timing.get("warmup"),
    }
    name = f"{group}[{key}]"
    return {
        "group": group,
        "name": name,
        "fullname": f"cvae-bench::{name}",
        "params": params,
        "param": key,
        "extra_info": extra,
        "options": {"timer": "perf_counter", "min_rounds": len(timing["round_s"]), "in_worker": True},
        "stats": stats,
    }


def _decode_roof(roof: dict[str, Any], batch: int) -> dict[str, Any]:
    decode: dict[Any, dict[str, Any]] = roof["decode"]
    return decode[batch] if batch in decode else decode[str(batch)]  # int keys in memory, str from JSON


def _ident(rec: dict[str, Any], threads: int) -> dict[str, Any]:
    return {
        "backend": rec["backend"],
        "mode": rec["mode"],
        "device": rec["device"],
        "versions": rec["versions"],
        "threads": threads,
        "build_s": rec["build_s"],
    }


def train_entry(rec: dict[str, Any], roof: dict[str, Any], threads: int) -> dict[str, Any]:
    """The train-step entry of one backend record (`rec["train_step"]` is a `train_step_job` result)."""
    t = rec["train_step"]
    ts = roof["train_step"]
    extra = {
        **_ident(rec, threads),
        "batch_size": t["batch"],
        "flops_per_call": ts["spec_flops"],
        "floor_s": ts["floor_s"],
        "first_step_s": t["first_step_s"],
        "data_load_s": t["data_load_s"],
        "loss": t["loss"],
    }
    params = {"backend": rec["backend"], "mode": rec["mode"], "batch": t["batch"]}
    entry = _entry("train-step", f"{rec['backend']}-{rec['mode']}", params, t, extra)
    entry["extra_info"]["ms_per_step"] = entry["stats"]["median"] * 1e3
    return entry


def native_entries(rec: dict[str, Any], roof: dict[str, Any], threads: int) -> list[dict[str, Any]]:
    """The sample-native entries of one backend record (`rec["sample_native"]`: {batch: timing})."""
    out = []
    for b, t in sorted((rec.get("sample_native") or {}).items(), key=lambda kv: int(kv[0])):
        d = _decode_roof(roof, int(b))
        extra = {
            **_ident(rec, threads),
            "batch_size": int(b),
            "flops_per_call": d["spec_flops"],
            "floor_s": d["floor_s"],
            "first_call_s": t["first_call_s"],
        }
        params = {"backend": rec["backend"], "mode": rec["mode"], "batch": int(b)}
        out.append(_entry("sample-native", f"{rec['backend']}-{rec['mode']}-b{b}", params, t, extra))
    return out


def ort_entries(ort: dict[str, Any], roof: dict[str, Any], threads: int) -> list[dict[str, Any]]:
    """The sample-onnxruntime entries of a `sample_onnxruntime_job` result (failed sessions left out)."""
    out = []
    for provider, per_precision in ort["results"].items():
        short = PROVIDER_SHORT.get(provider, provider)
        for precision, res in per_precision.items():
            if "error" in res:
                continue
            for b, t in sorted(res["batches"].items(), key=lambda kv: int(kv[0])):
                d = _decode_roof(roof, int(b))
                extra = {
                    "backend": "onnxruntime",
                    "mode": precision,
                    "provider": provider,
                    "device": "cuda" if provider.startswith("CUDA") else "cpu",
                    "versions": {"onnxruntime": ort["onnxruntime"]},
                    "threads": threads,
                    "session_options": ort["session_options"],
                    "exporter": ort.get("exporter"),
                    "batch_size": int(b),
                    "flops_per_call": d["spec_flops"],
                    "floor_s": d["floor_s"],
                    "session_s": res["session_s"],
                    "first_call_s": t["first_call_s"],
                }
                params = {"provider": short, "precision": precision, "batch": int(b)}
                out.append(_entry("sample-onnxruntime", f"{short}-{precision}-b{b}", params, t, extra))
    return out


def benchmark_entries(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """One pytest-benchmark-style entry per measurement of a `run_bench` result."""
    roof = raw["roofline"]
    threads = raw["options"]["threads"]
    out = []
    for rec in raw["backends"]:
        if "train_step" in rec:
            out.append(train_entry(rec, roof, threads))
        out += native_entries(rec, roof, threads)
    if raw.get("onnxruntime"):
        out += ort_entries(raw["onnxruntime"], roof, threads)
    return out


# -- formatting -----------------------------------------------------------------------------------------
def fmt_time(seconds: float | None) -> str:
    """Seconds in the unit that keeps 3–4 significant digits: '27.9 µs', '2.41 ms', '1.20 s'."""
    if seconds is None:
        return "—"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def _f(value: float | None, spec: str, suffix: str = "") -> str:
    return "—" if value is None else format(value, spec) + suffix


def _ratios(entries: Sequence[dict[str, Any]]) -> list[float]:
    best = min(e["stats"]["median"] for e in entries)
    return [e["stats"]["median"] / best for e in entries]


TABLE_HEADERS = {
    "train-step": [
        "backend",
        "mode",
        "device",
        "ms/step (median)",
        "IQR",
        "images/s",
        "GFLOP/s",
        "of floor",
        "vs fastest",
        "first step",
        "build",
    ],
    "sample-native": [
        "batch",
        "backend",
        "mode",
        "median / call",
        "IQR",
        "images/s",
        "GFLOP/s",
        "of floor",
        "vs fastest",
        "first call",
    ],
    "sample-onnxruntime": [
        "batch",
        "provider",
        "precision",
        "median / call",
        "IQR",
        "images/s",
        "GFLOP/s",
        "of floor",
        "vs fastest",
        "session",
    ],
}


def group_tables(entries: Sequence[dict[str, Any]]) -> dict[str, list[list[str]]]:
    """Rows of each group's table, sorted fastest first (within each batch size for sampling)."""
    tables: dict[str, list[list[str]]] = {}
    for group in TABLE_HEADERS:
        mine = [e for e in entries if e["group"] == group]
        if not mine:
            continue
        rows: list[list[str]] = []
        batches = sorted({e["params"]["batch"] for e in mine})
        for b in batches:
            sub = sorted((e for e in mine if e["params"]["batch"] == b), key=lambda e: e["stats"]["median"])
            for e, ratio in zip(sub, _ratios(sub), strict=True):
                s, x = e["stats"], e["extra_info"]
                common = [
                    _f(x["images_per_s"], ",.0f"),
                    _f(x["gflops"], ".1f"),
                    _f(x["fraction_of_floor"], ".2f"),
                    f"{ratio:.2f}×",
                ]
                if group == "train-step":
                    rows.append(
                        [
                            x["backend"],
                            x["mode"],
                            x["device"],
                            f"{s['median'] * 1e3:.3f}",
                            f"{s['iqr'] * 1e3:.3f}",
                            *common,
                            fmt_time(x["first_step_s"]),
                            fmt_time(x["build_s"]),
                        ]
                    )
                elif group == "sample-native":
                    rows.append(
                        [
                            str(b),
                            x["backend"],
                            x["mode"],
                            fmt_time(s["median"]),
                            fmt_time(s["iqr"]),
                            *common,
                            fmt_time(x["first_call_s"]),
                        ]
                    )
                else:
                    rows.append(
                        [
                            str(b),
                            e["params"]["provider"],
                            x["mode"],
                            fmt_time(s["median"]),
                            fmt_time(s["iqr"]),
                            *common,
                            fmt_time(x["session_s"]),
                        ]
                    )
        tables[group] = rows
    return tables


ROOFLINE_HEADERS = ["workload", "batch", "FLOPs (spec)", "GEMM FLOPs", "floor (best)", "ceiling GFLOP/s"]
CEILING_LIBRARIES = ("numpy", "torch", "onnxruntime", "onnxruntime-const")


def roofline_headers(roof: dict[str, Any]) -> list[str]:
    """The roofline table's headers: the fixed ones, then one floor per library measured."""
    present = {lib for w in _workloads(roof) for lib in w.get("floor_by_library_s", {})}
    return [*ROOFLINE_HEADERS, *(f"floor {lib}" for lib in CEILING_LIBRARIES if lib in present)]


def _workloads(roof: dict[str, Any]) -> list[dict[str, Any]]:
    out = [roof["train_step"]] if roof.get("train_step") else []
    return out + [d for _, d in sorted(roof.get("decode", {}).items(), key=lambda kv: int(kv[0]))]


def roofline_rows(roof: dict[str, Any]) -> list[list[str]]:
    """The roofline table: FLOPs and the bare-matmul floor of each workload, best and per library."""
    libs = [h.removeprefix("floor ") for h in roofline_headers(roof)[len(ROOFLINE_HEADERS) :]]
    rows = []
    for w in _workloads(roof):
        name = "train step" if "gemms" in w else f"decode ({w['spec_flops_per_image']:,} FLOPs/image)"
        per_lib = w.get("floor_by_library_s", {})
        rows.append(
            [
                name,
                str(w["batch"]),
                f"{w['spec_flops']:,}",
                f"{w['gemm_flops']:,}",
                fmt_time(w["floor_s"]),
                f"{w['ceiling_gflops']:.1f}",
                *(fmt_time(per_lib.get(lib)) for lib in libs),
            ]
        )
    return rows


TTT_HEADERS = [
    "backend",
    "mode",
    "ms/step (bench)",
    "time-to-target s, median (spread)",
    "reached",
    "steps-to-target",
    "final val −ELBO",
]


def ttt_rows(runs: Sequence[dict[str, Any]], entries: Sequence[dict[str, Any]]) -> list[list[str]]:
    """Time-to-target beside the benchmark's ms/step, per backend and mode."""
    ms = {
        (e["extra_info"]["backend"], e["extra_info"]["mode"]): e["stats"]["median"] * 1e3
        for e in entries
        if e["group"] == "train-step"
    }
    rows = []
    for r in runs:
        spread = r.get("time_to_target_spread_s")
        ttt = _f(r.get("time_to_target_s"), ".1f")
        if spread and r.get("converged", 0) > 1:
            ttt += f" ({spread[0]:.1f}–{spread[1]:.1f})"
        reached = f"{r['converged']}/{r['runs']}"
        if r["not_converged"]:
            reached += f" ({r['not_converged']} not converged)"
        rows.append(
            [
                r["backend"],
                r["mode"],
                _f(ms.get((r["backend"], r["mode"])), ".3f"),
                ttt,
                reached,
                _f(r.get("steps_to_target"), ".0f"),
                _f(r.get("final_val_elbo"), ".3f"),
            ]
        )
    return rows


def audit_entries(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """The fairness audit's rows: what each measured process really ran with."""
    threads = raw["options"]["threads"]
    warm = raw["options"]["warmup"]
    out = []
    for rec in raw["backends"]:
        note = rec.get("notes", {}).get(rec["mode"], "")
        first = rec.get("train_step", {}).get("first_step_s")
        compile_cell = rec["mode"] + (f" ({note})" if note else "")
        if first is not None:
            compile_cell += f"; first step {fmt_time(first)} reported apart"
        load = rec.get("train_step", {}).get("data_load_s")
        out.append(
            {
                "label": f"{rec['backend']}:{rec['mode']} ({rec['device']})",
                "threads": threads,
                "audit": rec.get("audit", {}),
                "compile": compile_cell,
                "sync": "Backend.synchronize() ends every round; take_loss() only after the clock stops",
                "data_on_device": f"yes: load_train_data before timing ({fmt_time(load)})" if load is not None else "—",
                "warmup": f"{warm} steps + calibration rounds excluded",
            }
        )
    ort = raw.get("onnxruntime")
    if ort:
        so = ort["session_options"]
        audit = {
            **ort.get("audit", {}),
            "ort": {
                "intra_op_threads": so["intra_op_threads"],
                "inter_op_threads": so["inter_op_threads"],
                "precisions": sorted({p for per in ort["results"].values() for p in per}),
            },
        }
        out.append(
            {
                "label": "onnxruntime (" + ", ".join(PROVIDER_SHORT.get(p, p) for p in ort["results"]) + ")",
                "threads": threads,
                "audit": audit,
                "compile": f"{so['graph_optimization_level']}, {so['execution_mode']}; session build reported apart",
                "sync": "run_with_iobinding returns with the output in a host array",
                "data_on_device": "inputs bound once per batch size (host); IO binding, pre-allocated output",
                "warmup": "10 calls + calibration rounds excluded",
            }
        )
    return out


# -- the document ---------------------------------------------------------------------------------------
def _commit_info(root: Path) -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        if not commit:
            return {}
        return {
            "id": commit,
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
            "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
            "project": "cvae-bench",
        }
    except (OSError, subprocess.SubprocessError):
        return {}


def _pytest_benchmark_version() -> str:
    try:
        return md.version("pytest-benchmark")
    except md.PackageNotFoundError:
        return "5.2.3"  # the layout this file follows


def build_document(
    raw: dict[str, Any], command: str, runs: Sequence[dict[str, Any]] | None = None, runs_source: str | None = None
) -> dict[str, Any]:
    """The bench.json document (see the module docstring) from `run_bench`'s raw measurements."""
    entries = benchmark_entries(raw)
    ort = raw.get("onnxruntime") or {}
    unsupported = {
        f"{PROVIDER_SHORT.get(p, p)}-{prec}": res["error"]
        for p, per in ort.get("results", {}).items()
        for prec, res in per.items()
        if "error" in res
    }
    return {
        "machine_info": raw["machine_info"],
        "commit_info": _commit_info(Path(__file__).resolve().parents[2]),
        "benchmarks": entries,
        "datetime": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        "version": _pytest_benchmark_version(),
        "cvae_bench": {
            "command": command,
            "started": raw["started"],
            "options": raw["options"],
            "spec": raw["spec"],
            "load": raw["load"],
            "roofline": raw["roofline"],
            "fairness": audit_entries(raw),
            "onnx": {
                "exporter": ort.get("exporter"),
                "session_options": ort.get("session_options"),
                "unsupported": unsupported,
                "skipped_providers": ort.get("skipped_providers", {}),
            }
            if ort
            else None,
            "time_to_target": {"source": runs_source, "rows": list(runs)} if runs is not None else None,
        },
    }


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return lines


GROUP_TITLES = {
    "train-step": "train-step: one Adam step at batch 64 (data on device, synchronised)",
    "sample-native": "sample-native: the framework's own decoder (NumPy in and out)",
    "sample-onnxruntime": "sample-onnxruntime: the exported decoder in onnxruntime (IO binding)",
}


def load_line(load: dict[str, Any]) -> str:
    """'load 0.12/0.30/0.41 before, 0.95/… after; busy: none' for the report."""

    def one(d: dict[str, Any]) -> str:
        avg = "/".join(f"{v:.2f}" for v in d["loadavg"]) if d.get("loadavg") else "?"
        busy = ", ".join(f"{b['name']}({b['pid']}) {b['cpu']:.0%}" for b in d.get("busy", [])) or "none"
        return f"{avg} (other busy processes: {busy})"

    return f"load average 1/5/15 min before: {one(load['before'])}; after: {one(load['after'])}"


def to_markdown(doc: dict[str, Any]) -> str:
    """The whole report as Markdown: command, machine, load, one table per group, roofline,
    time-to-target and the fairness audit."""
    cb = doc["cvae_bench"]
    mi = doc["machine_info"]
    lines = [
        "# cvae-bench benchmarks",
        "",
        f"Command: `{cb['command']}`  ",
        f"Machine: {mi['cpu']['brand_raw']}, {mi['cpu']['count']} cores; threads per framework: {mi['threads']}  ",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(mi["versions"].items())) + "  ",
        f"Started: {cb['started']}; {load_line(cb['load'])}",
        "",
        "Per-call statistics over timed rounds (median, IQR = Q3 − Q1); 'of floor' = the bare fp32 matmul time of"
        " the same arithmetic on this machine ÷ the measured time; 'vs fastest' within the table (and batch).",
    ]
    tables = group_tables(doc["benchmarks"])
    for group, rows in tables.items():
        lines += ["", f"## {GROUP_TITLES[group]}", "", *_md_table(TABLE_HEADERS[group], rows)]
    onnx = cb.get("onnx") or {}
    if onnx.get("unsupported") or onnx.get("skipped_providers"):
        lines += [
            "",
            "Not measured: "
            + "; ".join(f"{k}: {v}" for k, v in {**onnx["unsupported"], **onnx["skipped_providers"]}.items()),
        ]
    lines += ["", "## Roofline", "", *_md_table(roofline_headers(cb["roofline"]), roofline_rows(cb["roofline"]))]
    lines += [
        "",
        "Floor: every GEMM of the workload timed alone (fp32, pre-allocated operands, fastest of 9 calibrated rounds)"
        " in " + ", ".join(f"{k} {v}" for k, v in cb["roofline"]["libraries"].items()) + " (onnxruntime-const: B a"
        " pre-packed constant); the fastest per GEMM, summed. Ceiling = GEMM FLOPs ÷ floor.",
    ]
    ttt = cb.get("time_to_target")
    if ttt:
        lines += ["", f"## Time to target (from {ttt['source']})", ""]
        lines += _md_table(TTT_HEADERS, ttt_rows(ttt["rows"], doc["benchmarks"]))
    lines += ["", "## Fairness audit", "", *_md_table(AUDIT_HEADERS, audit_rows(cb["fairness"]))]
    return "\n".join(lines) + "\n"


def write_results(folder: Path, doc: dict[str, Any]) -> tuple[Path, Path]:
    """Write bench.json and bench.md into `folder`; returns their paths."""
    json_path, md_path = folder / "bench.json", folder / "bench.md"
    write_json(json_path, doc)
    write_text(md_path, to_markdown(doc))
    return json_path, md_path
