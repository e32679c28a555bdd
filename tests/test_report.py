"""The report wing: reports from small synthetic result files, history with steps, no runner or framework needed,
and the page opened in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cvae_bench.core.errors import UsageError
from cvae_bench.report.api import make_report, report_command, write_report
from cvae_bench.report.history import append_history, load_history
from cvae_bench.report.inputs import ReportError, load_inputs
from cvae_bench.report.options import ReportCommand
from cvae_bench.report.pictures import png
from cvae_bench.runtime.files import write_json
from cvae_bench.training.records import (
    ConvergenceVerdict,
    DataUsed,
    Divergence,
    EvalPoint,
    FinalEval,
    RunResult,
    TrainOutcome,
)

pytest.importorskip("plotly", reason="reports need plotly (pip install 'cvae-bench[report]')")

HARDWARE = {"python": "3.11.7", "platform": "Linux-x86_64", "cpu": "Test CPU", "cpu_count": 2, "affinity": 2}
CHARTS = ("quality", "time-to-target", "train-step", "sampling", "roofline")


# -- synthetic result files ---------------------------------------------------------------------------------
def run_result(
    backend: str, mode: str, seed: int, speed: float, status: str = "reached", deviant: bool = False
) -> RunResult:
    """A run of 6 evaluations, 50 steps apart, whose val −ELBO falls from 300 to about 250."""
    history = [
        EvalPoint(
            step=50 * k,
            epoch=k / 2,
            val_elbo=250 + 50 / k + seed,
            kl=5.0,
            nll=240.0,
            train_time_s=k * speed,
            wall_time_s=k * speed + 2.0,
        )
        for k in range(1, 7)
    ]
    if status == "diverged":
        history = history[:3]
    reached = status == "reached"
    last = history[-1]
    outcome = TrainOutcome(
        status=status,
        target=265.0,
        reached=reached,
        steps_to_target=150 if reached else None,
        epochs_to_target=1.5 if reached else None,
        time_to_target_s=3 * speed if reached else None,
        wall_time_to_target_s=3 * speed + 2 if reached else None,
        first_step_s=0.5,
        data_load_s=0.1,
        ms_per_step_median=speed * 20,
        steps=last.step,
        epochs=last.epoch,
        steps_per_epoch=100,
        train_time_s=last.train_time_s,
        eval_time_s=1.0,
        final=FinalEval(last.step, last.epoch, last.val_elbo, 5.0, 240.0),
        history=history,
        divergence=Divergence(step=150, what="training loss", value="nan") if status == "diverged" else None,
        data=DataUsed("mnist", 6400, 2000),
    )
    verdict = (
        ConvergenceVerdict("deviant", ["below the band at epoch 1"]) if deviant else ConvergenceVerdict("unchecked")
    )
    return RunResult(
        cvae_bench="0.1.0",
        started=f"2026-11-25T10:0{seed}:00+00:00",
        backend=backend,
        origin="builtin",
        mode=mode,
        device="cpu",
        versions={backend: "1.0"},
        hardware=HARDWARE,
        seed=seed,
        config={"target": 265.0, "seed": seed},
        spec={},
        build_s=1.0,
        outcome=outcome,
        convergence=verdict,
    )


def _stats(median: float, rounds: int = 15) -> dict[str, Any]:
    data = list(median * (1 + 0.02 * np.linspace(-1, 1, rounds)))
    return {
        "median": median,
        "q1": median * 0.99,
        "q3": median * 1.01,
        "iqr": median * 0.02,
        "rounds": rounds,
        "data": data,
    }


def _entry(
    group: str, name: str, params: dict[str, Any], median: float, batch: int, flops: int, floor: float
) -> dict[str, Any]:
    info = {
        **params,
        "batch_size": batch,
        "flops_per_call": flops,
        "floor_s": floor,
        "fraction_of_floor": floor / median,
    }
    return {"group": group, "name": name, "params": params, "extra_info": info, "stats": _stats(median)}


def bench_doc(commit: str = "a" * 40, slow: float = 1.0) -> dict[str, Any]:
    """A bench.json with every group of two backends, onnxruntime at two precisions, a roofline and an audit."""
    entries = []
    for backend, mode, ms in (("torch", "eager", 2.2), ("keras-jax", "jit", 1.2)):
        params = {"backend": backend, "mode": mode}
        entries.append(
            _entry("train-step", f"train-step[{backend}-{mode}]", params, ms * 1e-3 * slow, 64, 323026944, 5.6e-4)
        )
        for b in (1, 64, 1024):
            entries.append(
                _entry(
                    "sample-native",
                    f"sample-native[{backend}-{mode}-b{b}]",
                    params,
                    5e-5 * b**0.8 * slow,
                    b,
                    836352 * b,
                    1e-5 * b**0.8,
                )
            )
    for precision in ("fp32", "int8"):
        for b in (1, 64, 1024):
            params = {"provider": "CPU", "precision": precision}
            name = f"sample-onnxruntime[CPU-{precision}-b{b}]"
            entries.append(
                _entry("sample-onnxruntime", name, params, 1.2e-5 * b**0.9 * slow, b, 836352 * b, 1e-5 * b**0.8)
            )
    floor = {"spec_flops": 836352, "gemm_flops": 836352, "ceiling_gflops": 80.0}
    return {
        "machine_info": {
            "node": "vm",
            "machine": "x86_64",
            "python_version": "3.11.7",
            "cpu": {"brand_raw": "Test CPU", "count": 2},
            "versions": {"torch": "2.13.0", "onnxruntime": "1.32.0"},
            "environment": {"cpu": "Test CPU"},
        },
        "commit_info": {"id": commit, "dirty": False},
        "benchmarks": entries,
        "datetime": f"2026-11-25T1{int(slow * 10) % 10}:00:00+00:00",
        "version": "5.2.3",
        "cvae_bench": {
            "command": "cvae-bench bench --backend torch,keras-jax:jit",
            "started": "2026-11-25T10:00:00+00:00",
            "options": {"threads": 2},
            "spec": {},
            "load": {
                "before": {"loadavg": [0.5, 0.4, 0.3], "cores": 2, "busy": []},
                "after": {"loadavg": [1.5, 0.9, 0.5], "cores": 2, "busy": [{"pid": 7, "name": "other", "cpu": 0.4}]},
            },
            "roofline": {
                "libraries": {"numpy": "2.4.6"},
                "shapes": {},
                "train_step": {
                    "batch": 64,
                    "spec_flops": 323026944,
                    "gemm_flops": 270991360,
                    "floor_s": 5.6e-4,
                    "ceiling_gflops": 486.0,
                },
                "decode": {str(b): {"batch": b, **floor, "floor_s": 1e-5 * b**0.8} for b in (1, 64, 1024)},
            },
            "fairness": [
                {"label": "torch:eager (cpu)", "threads": 2, "audit": {"affinity_cores": 2}, "compile": "eager"}
            ],
            "time_to_target": None,
        },
    }


def tiny_decoder(path: Path) -> Path:
    """A decoder with the cvae-bench interface (z, label → x_mean [batch, 28, 28]): one dense layer, sigmoid."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).standard_normal((12, 784)).astype(np.float32)
    nodes = [
        helper.make_node("Concat", ["z", "label"], ["zy"], axis=1),
        helper.make_node("MatMul", ["zy", "w"], ["h"]),
        helper.make_node("Sigmoid", ["h"], ["s"]),
        helper.make_node("Reshape", ["s", "shape"], ["x_mean"]),
    ]
    graph = helper.make_graph(
        nodes,
        "cvae_decoder",
        [
            helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 2]),
            helper.make_tensor_value_info("label", TensorProto.FLOAT, ["batch", 10]),
        ],
        [helper.make_tensor_value_info("x_mean", TensorProto.FLOAT, ["batch", 28, 28])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([-1, 28, 28], np.int64), "shape")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    for k, v in {
        "part": "decoder",
        "backend": "torch",
        "precision": "fp32",
        "latent_dim": "2",
        "num_classes": "10",
    }.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def inputs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder like `cvae-bench run --repeats 2 --export` plus a bench: runs of every status, a decoder, bench.json."""
    root = tmp_path_factory.mktemp("inputs")
    runs = [
        run_result("torch", "eager", 0, 2.0),
        run_result("torch", "eager", 1, 2.2),
        run_result("keras-jax", "jit", 0, 1.0),
        run_result("keras-jax", "jit", 1, 1.1, status="not-reached"),
        run_result("keras-torch", "eager", 0, 3.0, status="diverged", deviant=True),
        run_result("keras-torch", "eager", 1, 3.1, deviant=True),
    ]
    for r in runs:
        folder = root / "runs" / f"{r.backend}-{r.mode}-seed{r.seed}"
        folder.mkdir(parents=True)
        write_json(folder / "result.json", r.to_json())
    if importlib_ok("onnx") and importlib_ok("onnxruntime"):
        tiny_decoder(root / "runs" / "torch-eager-seed0" / "decoder.onnx")
    write_json(root / "bench.json", bench_doc())
    return root


def importlib_ok(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


@pytest.fixture(scope="module")
def report_html(inputs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    make_report([inputs_dir], out, command="cvae-bench report …")
    return out


# -- the page -----------------------------------------------------------------------------------------------
def test_the_page_holds_every_chart_and_needs_no_network(report_html: Path) -> None:
    text = report_html.read_text()
    for chart in CHARTS:
        assert f'data-chart="{chart}"' in text, chart
    assert not re.search(r"<script[^>]+src=", text), "every script is inlined"
    page = re.sub(r"<script[^>]*>.*?</script>", "", text, flags=re.S)  # plotly.js itself names its home page
    assert not re.search(r"""(src|href)=["']https?://""", page), "nothing is fetched from the network"
    assert "Plotly.newPlot" in text and "plotly.js" in text[:200000]


def test_no_run_is_dropped(report_html: Path) -> None:
    """Non-converged, diverged and deviant runs appear in the time-to-target chart and the runs table."""
    text = report_html.read_text().replace("\\u002f", "/")  # plotly's JSON escapes slashes
    for word in ("not reached", "diverged", "deviant", "below the band at epoch 1", "1/2 reached"):
        assert word in text, word
    assert text.count("/result.json</td>") == 6


def test_bench_figures_the_evidence(report_html: Path) -> None:
    text = report_html.read_text()
    assert "roofline ceiling" in text and "of floor" in text
    assert "onnxruntime CPU int8" in text and "keras-jax:jit" in text
    assert "cvae-bench bench --backend torch,keras-jax:jit" in text, "the exact command"
    assert "0.50 0.40 0.30" in text and "other (pid 7)" in text, "load before and after"
    assert "torch:eager (cpu)" in text and "Test CPU" in text and "2.13.0" in text, "fairness, machine, versions"


def test_pictures_are_inline_pngs(report_html: Path) -> None:
    if not (importlib_ok("onnx") and importlib_ok("onnxruntime")):
        pytest.skip("onnx and onnxruntime are needed for the synthetic decoder")
    text = report_html.read_text()
    uris = re.findall(r'<img [^>]*src="data:image/png;base64,([^"]+)"', text)
    assert len(uris) == 2, "prior samples and one z across labels"


def test_png_is_a_valid_greyscale_png() -> None:
    data = png(np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4), scale=2)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (8, 6)
    idat = data.index(b"IDAT")
    raw = zlib.decompress(data[idat + 4 : idat + 4 + int.from_bytes(data[idat - 4 : idat], "big")])
    rows = np.frombuffer(raw, np.uint8).reshape(6, 9)
    assert (rows[:, 0] == 0).all() and rows[0, 1] == 0 and rows[-1, -1] == 255


def test_write_report_writes_into_the_folder(inputs_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "run"
    shutil.copytree(inputs_dir / "runs" / "torch-eager-seed1", folder)
    assert write_report(folder) == folder / "report.html"
    assert 'data-chart="quality"' in (folder / "report.html").read_text()


def test_bad_inputs_are_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('{"hello": 1}')
    with pytest.raises(ReportError, match="not a result file"):
        load_inputs([tmp_path / "x.json"])
    with pytest.raises(ReportError, match="no such file"):
        load_inputs([tmp_path / "missing"])
    with pytest.raises(ReportError, match="nothing to report"):
        make_report([tmp_path], tmp_path / "r.html")
    with pytest.raises(UsageError, match="--append: expected --history"):
        report_command(ReportCommand(paths=(str(tmp_path),), out=str(tmp_path / "r.html"), append=True))
    assert not (tmp_path / "r.html").exists()


# -- history ------------------------------------------------------------------------------------------------
def test_history_files_are_keyed_and_a_slowdown_is_marked(tmp_path: Path) -> None:
    history = tmp_path / "history"
    for i, slow in enumerate((1.0, 1.0, 1.0, 1.12, 1.12)):
        doc = tmp_path / f"bench{i}.json"
        write_json(doc, bench_doc(commit=f"{i:x}" * 40, slow=slow))
        append_history(doc, history)
    again = append_history(tmp_path / "bench4.json", history)  # the same result again replaces its file
    files = sorted(history.glob("*.json"))
    assert len(files) == 5 and again in files
    name = re.compile(r"[0-9a-f]{12}_[0-9a-f]{12}_[0-9a-f]{8}_bench-[0-9a-f]{8}_[0-9a-f]{12}\.json")
    assert all(name.fullmatch(f.name) for f in files)
    entries = load_history(history)
    assert [e.record.commit[:2] for e in entries] == ["00", "11", "22", "33", "44"]

    out = tmp_path / "site" / "report.html"
    lines = report_command(ReportCommand(out=str(out), history=str(history)))
    text = out.read_text()
    assert "5 history entries" in lines[-1] and 'data-chart="history-train-step"' in text
    assert "+12.0%" in text, "the slowdown is marked as a step"
    assert "../history/3333333333" in text, "each point links to its history file"


def test_history_of_runs_takes_the_commit_of_this_checkout(inputs_dir: Path, tmp_path: Path) -> None:
    path = append_history(inputs_dir / "runs" / "torch-eager-seed0", tmp_path)
    entry = json.loads(path.read_text())
    assert entry["kind"] == "result" and entry["metrics"][0]["family"] == "time-to-target"
    assert entry["machine_name"] == "Test CPU, 2 cores"


# -- files copied off another machine: no framework, no runner ----------------------------------------------
BLOCKER = """
import sys
BLOCKED = ("torch", "tensorflow", "jax", "keras", "onnx", "onnxruntime", "matplotlib")
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)")
        return None
sys.meta_path.insert(0, Block())
import cvae_bench.report.api
RUNNERS = ("cvae_bench.training.run", "cvae_bench.training.matched", "cvae_bench.bench.runner",
           "cvae_bench.runtime.worker", "cvae_bench.backends.registry")
print("LOADED", [m for m in RUNNERS if m in sys.modules])
from cvae_bench.cli import main
main(["report", *sys.argv[1:]])
"""


def test_a_report_from_copied_files_needs_no_framework_and_no_runner(inputs_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copied"
    shutil.copytree(inputs_dir, copy)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", BLOCKER, str(copy), "-o", str(tmp_path / "r.html")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "LOADED []" in done.stdout
    text = (tmp_path / "r.html").read_text()
    assert all(f'data-chart="{c}"' in text for c in CHARTS)
    if (copy / "runs" / "torch-eager-seed0" / "decoder.onnx").exists():
        assert "onnxruntime is needed for pictures" in text


# -- in a real browser ----------------------------------------------------------------------------------------
def test_every_chart_renders_in_chromium(report_html: Path) -> None:
    from cvae_bench.testing.browser import browser_page

    with browser_page(report_html.parent, report_html.name, isolated=False, timeout_s=90) as b:
        b.page.wait_for_load_state("load")
        charts = b.page.evaluate(
            """() => window.CVAE_BENCH_CHARTS.map(id => {
                 const div = document.getElementById(id);
                 const svg = div && div.querySelector('svg.main-svg');
                 const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
                 return {id, width: box.width, height: box.height,
                         traces: div ? div.querySelectorAll('g.trace').length : 0};
               })"""
        )
        images = b.page.evaluate("() => [...document.images].map(i => i.complete && i.naturalWidth > 0)")
        b.screenshot("report")
        assert b.errors.all == []
    assert {c["id"] for c in charts} >= {f"chart-{c}" for c in CHARTS}
    for c in charts:
        assert c["width"] > 100 and c["height"] > 100 and c["traces"] > 0, c
    assert all(images)


def test_a_busy_bench_and_an_idle_worker_are_said_without_a_verdict(tmp_path: Path) -> None:
    doc = bench_doc()
    doc["cvae_bench"]["rounds"] = {"busy": True, "epochs_run": 10}
    doc["cvae_bench"]["verdicts"] = [
        {
            "name": "train-step[keras-jax-jit]",
            "reference": "train-step[torch-eager]",
            "verdict": "withheld",
            "withheld": "IDLE-WORK: train-step[keras-jax-jit] used CPU while stopped between its rounds",
        }
    ]
    write_json(tmp_path / "bench.json", doc)
    make_report([tmp_path / "bench.json"], tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    assert "BUSY — no verdict" in html
    assert "no verdict — IDLE-WORK: train-step[keras-jax-jit] used CPU while stopped" in html
