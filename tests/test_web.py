"""The decoder in the browser: the site `cvae-bench web` writes, the page in headless Chromium checked pixel
by pixel against Python onnxruntime, and onnxruntime-web under Node against deploy.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cvae_bench.core.errors import CvaeBenchError
from cvae_bench.deploy import OnnxDecoder
from cvae_bench.serving import ort_web
from cvae_bench.serving.node_check import node_check, node_missing
from cvae_bench.serving.web import PAGE_FILES, write_site
from cvae_bench.testing.browser import browser_page


@pytest.fixture(scope="module")
def site(decoder_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if ort_web.find_dist() is None:
        pytest.skip(ort_web.HOW)
    out = tmp_path_factory.mktemp("site")
    write_site(str(decoder_file), str(out), webgpu=False)
    return out


def test_site_holds_the_page_the_model_and_checked_runtime(site: Path) -> None:
    for name in (*PAGE_FILES, "config.json", "decoder.onnx", *(f"ort/{n}" for n in ort_web.WASM_FILES)):
        assert (site / name).is_file(), name
    config = json.loads((site / "config.json").read_text())
    assert config["latent_dim"] == 2 and config["image_shape"] == [28, 28] and config["webgpu"] is False
    assert "cdn" not in (site / "index.html").read_text().lower()


def test_missing_or_altered_runtime_is_refused_with_the_way_to_get_it(
    decoder_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ort_web, "candidates", lambda: [tmp_path / "nowhere"])
    with pytest.raises(CvaeBenchError, match=r"npm ci --prefix web"):
        write_site(str(decoder_file), str(tmp_path / "site"))
    dist = tmp_path / "dist"
    dist.mkdir()
    for name in ort_web.WASM_FILES:
        (dist / name).write_text("tampered")
    monkeypatch.setattr(ort_web, "candidates", lambda: [dist])
    with pytest.raises(CvaeBenchError, match=r"is not onnxruntime-web 1\.30\.0's"):
        write_site(str(decoder_file), str(tmp_path / "site"), webgpu=False)


def test_web_command_says_where_the_page_is(decoder_file: Path, tmp_path: Path) -> None:
    if ort_web.find_dist() is None:
        pytest.skip(ort_web.HOW)
    from cvae_bench.cli import main

    result = CliRunner().invoke(main, ["web", str(decoder_file), "-o", str(tmp_path / "s"), "--no-webgpu"])
    assert result.exit_code == 0, result.output
    assert "index.html" in result.output and (tmp_path / "s" / "ort" / "ort.wasm.min.mjs").is_file()


def test_page_pixels_equal_python_onnxruntime(site: Path, decoder_file: Path) -> None:
    digit, z = 7, (0.8125, -1.375)
    expected = OnnxDecoder(str(decoder_file), ["CPUExecutionProvider"]).sample([digit], z=np.array([z], np.float32))[0]
    with browser_page(site, "index.html?ep=wasm&threads=1") as b:
        b.page.wait_for_function("window.cvaeBench && window.cvaeBench.ready")
        b.page.evaluate("window.cvaeBench.ready")
        got = b.page.evaluate(f"window.cvaeBench.set({digit}, {z[0]}, {z[1]})")
        x_mean = np.asarray(got["x_mean"], np.float32).reshape(28, 28)
        np.testing.assert_allclose(x_mean, expected, atol=1e-5, rtol=0)
        # The canvas shows the page's own floats at 8 bits.
        pixels = np.asarray(got["pixels"]).reshape(28, 28)
        np.testing.assert_array_equal(pixels, np.round(np.clip(x_mean, 0, 1) * 255).astype(int))
        bench = b.page.evaluate("window.cvaeBench.benchmark({batches: [1, 256], calls: 5, warmup: 1})")
        assert set(bench["results"]) == {"1", "256"} and bench["ep"] == "wasm"
        assert all(len(r["times_ms"]) == 5 and r["p50_ms"] <= r["p99_ms"] for r in bench["results"].values())
        assert b.page.locator("#bench-table tbody tr").count() == 2
        shot = b.screenshot("web-page")
        assert shot.stat().st_size > 0
        assert b.errors.all == []


def test_node_runs_the_decoder_as_deploy_py_does(decoder_file: Path, tmp_path: Path) -> None:
    missing = node_missing()
    if missing:
        pytest.skip(missing)
    copy = tmp_path / "second.onnx"
    shutil.copyfile(decoder_file, copy)
    results = node_check([str(decoder_file), str(copy)])
    assert [r.passed for r in results] == [True, True], results
    assert all(r.max_abs_diff is not None and r.max_abs_diff <= 1e-5 for r in results)


@pytest.mark.slow
def test_node_runs_every_exported_decoder(tmp_path: Path) -> None:
    """Every backend that exports ONNX: its decoder in onnxruntime-web under Node equals deploy.py's output."""
    missing = node_missing()
    if missing:
        pytest.skip(missing)
    from cvae_bench.backends import registry
    from cvae_bench.bench.groups.sample_onnxruntime import export_decoder_job
    from cvae_bench.runtime.worker import Worker

    paths = []
    for name, info in registry.all_backends().items():
        if not info.available:
            continue
        with Worker(info) as w:
            from cvae_bench.models.spec import DEFAULT_SPEC
            from cvae_bench.runtime.worker import RemoteBackend

            backend = RemoteBackend(w, DEFAULT_SPEC, 0, "cpu", None)
            if not backend.capabilities.onnx_export:
                continue
            path = tmp_path / f"{name}.onnx"
            backend.run_job(export_decoder_job, path=str(path))
            paths.append(str(path))
    if not paths:
        pytest.skip("no backend that exports ONNX is available")
    results = node_check(paths)
    assert all(r.passed for r in results), results


def test_web_group_is_registered_and_says_why_it_did_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from cvae_bench.bench.groups import GROUPS
    from cvae_bench.bench.groups import sample_onnxruntime_web as web_group
    from cvae_bench.bench.options import BenchOptions

    group = GROUPS["sample-onnxruntime-web"]
    assert isinstance(group, web_group.SampleOnnxruntimeWeb)
    monkeypatch.setattr(web_group, "browser_missing", lambda: "no chromium at /nowhere")
    result = group.measure(BenchOptions(batch_sizes=(1,)), [])
    assert result.samples is None and group.entries(result, None, 1) == []  # type: ignore[arg-type]
    section = group.section_json(result)
    assert group.notes(section) == ["", "Not measured: no chromium at /nowhere"]


def test_web_never_writes_into_a_folder_that_holds_files(decoder_file: Path, tmp_path: Path) -> None:
    """A site folder that already holds files is refused in one line, untouched, unless --force."""
    if ort_web.find_dist() is None:
        pytest.skip(ort_web.HOW)
    from cvae_bench.cli import main

    out = tmp_path / "s"
    out.mkdir()
    (out / "index.html").write_text("mine")
    refused = CliRunner().invoke(main, ["web", str(decoder_file), "-o", str(out), "--no-webgpu"])
    assert refused.exit_code == 1 and "is not empty (index.html); pass --force" in refused.output
    assert [p.name for p in out.iterdir()] == ["index.html"] and (out / "index.html").read_text() == "mine"
    forced = CliRunner().invoke(main, ["web", str(decoder_file), "-o", str(out), "--no-webgpu", "--force"])
    assert forced.exit_code == 0, forced.output
    assert (out / "index.html").read_text() != "mine" and (out / "decoder.onnx").is_file()
