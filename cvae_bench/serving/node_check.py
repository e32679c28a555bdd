"""The Node check: onnxruntime-web under Node decodes every given decoder, set against deploy.py's output."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from cvae_bench.core.errors import CvaeBenchError
from cvae_bench.core.records import Record
from cvae_bench.deploy import OnnxDecoder
from cvae_bench.serving.ort_web import HOW, package_dir

#: Largest |onnxruntime-web − onnxruntime| accepted for an fp32 decoder (measured: 1.8e-7 over the four
#: exporters; WASM and native onnxruntime sum in different orders).
NODE_TOLERANCE = 1e-5


@dataclass(frozen=True)
class NodeResult(Record):
    """One decoder in Node: the largest difference from deploy.py's output, or why it did not run."""

    model: str
    max_abs_diff: float | None
    passed: bool
    ms: float | None = None
    error: str | None = None


def node_missing() -> str | None:
    """Why the Node check cannot run here (no node, no onnxruntime-web), or None."""
    if shutil.which("node") is None:
        return "node is not installed (apt-get install nodejs)"
    if package_dir() is None:
        return HOW
    return None


def node_check(
    models: Sequence[str], batch: int = 7, seed: int = 0, tolerance: float = NODE_TOLERANCE
) -> list[NodeResult]:
    """Decode one random batch with every model in onnxruntime-web under Node and with `deploy.OnnxDecoder`.

    Raises:
        CvaeBenchError: node or onnxruntime-web is missing, or the script fails as a whole.
    """
    missing = node_missing()
    if missing:
        raise CvaeBenchError(missing)
    decoders = {m: OnnxDecoder(m, ["CPUExecutionProvider"]) for m in models}
    first = next(iter(decoders.values()))
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((batch, first.latent_dim)).astype(np.float32)
    label = np.eye(first.num_classes, dtype=np.float32)[rng.integers(0, first.num_classes, batch)]
    script = resources.files("cvae_bench.serving") / "node" / "decode.mjs"
    with tempfile.TemporaryDirectory(prefix="cvae-bench-node-") as tmp:
        request = Path(tmp) / "request.json"
        request.write_text(
            json.dumps(
                {"models": list(models), "z": z.ravel().tolist(), "label": label.ravel().tolist(), "batch": batch}
            )
        )
        proc = subprocess.run(
            ["node", str(script), str(package_dir()), str(request)], capture_output=True, text=True, timeout=300
        )
    if proc.returncode != 0:
        raise CvaeBenchError(f"node {script.name} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    answer = json.loads(proc.stdout)["results"]
    out = []
    for model, decoder in decoders.items():
        got = answer.get(model, {"error": "no result"})
        if "error" in got:
            out.append(NodeResult(model=model, max_abs_diff=None, passed=False, error=got["error"]))
            continue
        expected = decoder.decode(z, label)
        diff = float(np.max(np.abs(np.asarray(got["x_mean"], np.float32).reshape(expected.shape) - expected)))
        out.append(NodeResult(model=model, max_abs_diff=diff, passed=diff <= tolerance, ms=got.get("ms")))
    return out
