"""`cvae-bench web`: a static site that runs the decoder in the browser with onnxruntime-web."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

from cvae_bench.core.errors import CvaeBenchError
from cvae_bench.deploy import DecoderError, OnnxDecoder
from cvae_bench.runtime.files import claim_output_folder, ensure_dir, write_bytes, write_text
from cvae_bench.serving.options import WebCommand
from cvae_bench.serving.ort_web import ORT_WEB_VERSION, SITE_FILES, WASM_FILES, checked_files

#: The page's own files, copied from the package (cvae_bench/serving/site/).
PAGE_FILES = ("index.html", "app.mjs", "style.css")


def web_command(cmd: WebCommand) -> Path:
    """`cvae-bench web`: the site of `cmd.model` in `cmd.out`; the path of its index.html."""
    return write_site(cmd.model, cmd.out, webgpu=cmd.webgpu, force=cmd.force)


def write_site(model: str, out_dir: str, *, webgpu: bool = True, force: bool = False) -> Path:
    """Write the page, its config, the decoder and onnxruntime-web's files into `out_dir`.

    The decoder and onnxruntime-web's files are checked before the folder is made.

    Args:
        model: the decoder's .onnx file (checked with `deploy.OnnxDecoder`).
        out_dir: the site folder (created; one that already holds files is refused unless `force`).
        webgpu: also ship the WebGPU build (26 MB more); without it the page runs WASM only.
        force: write into a folder that already holds files (files of the same names are replaced).

    Returns:
        The path of index.html.

    Raises:
        CvaeBenchError: `model` is not a decoder, onnxruntime-web is missing or not the pinned files (the
            message says how to get them), or `out_dir` cannot be written.
    """
    try:
        decoder = OnnxDecoder(model, ["CPUExecutionProvider"])
    except DecoderError as exc:
        raise CvaeBenchError(str(exc)) from None
    ort_files = checked_files(list(SITE_FILES) if webgpu else list(WASM_FILES))
    with claim_output_folder(out_dir, force):
        return _write_site(model, Path(out_dir), decoder, ort_files, webgpu)


def _write_site(model: str, out: Path, decoder: OnnxDecoder, ort_files: dict[str, Path], webgpu: bool) -> Path:
    ort_dir = ensure_dir(out / "ort")
    for name, path in ort_files.items():
        shutil.copyfile(path, ort_dir / name)
    site = resources.files("cvae_bench.serving") / "site"
    for name in PAGE_FILES:
        write_bytes(out / name, (site / name).read_bytes())
    write_bytes(out / "decoder.onnx", Path(model).read_bytes())
    meta = decoder.metadata
    config = {
        "model": "decoder.onnx",
        "model_name": Path(model).name,
        "latent_dim": decoder.latent_dim,
        "num_classes": decoder.num_classes,
        "image_shape": list(decoder.image_shape),
        "backend": meta.get("backend"),
        "precision": meta.get("precision", "fp32"),
        "ort_version": ORT_WEB_VERSION,
        "webgpu": webgpu,
    }
    write_text(out / "config.json", json.dumps(config, indent=2) + "\n")
    return out / "index.html"
