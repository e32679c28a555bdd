"""ONNX export of a Keras 3 functional model on whichever framework Keras runs (torch, tensorflow, jax).

Imported only inside a worker whose `KERAS_BACKEND` is set. All three go through Keras's own
`Model.export(format="onnx")`, which on Keras 3.15 hands the model to the framework's exporter:

- torch: `torch.onnx.export` with `dynamo=False` (TorchScript). Keras uses it whenever an input has a
  dynamic axis, as the batch does here; the graph has Cast nodes, an output named like `53` and an
  output batch axis named like `Sigmoid53_dim_0`.
- tensorflow: tf2onnx (`tf2onnx.convert.from_function` on a traced `tf.function`); outputs named like
  `Identity:0`, axes like `unk__23`.
- jax: jax2onnx (`jax2onnx.to_onnx` on the model's jitted call); clean names, `batch` axes.

The harness normalises every one of these to the one interface (`cvae_bench.onnx.interface`).
"""

from __future__ import annotations

import keras
import numpy as np

from cvae_bench.core.versions import NOT_INSTALLED, dist_version

#: Which Python package does the converting, per Keras backend.
_CONVERTER = {"torch": "torch", "tensorflow": "tf2onnx", "jax": "jax2onnx"}
_HOW = {
    "torch": "torch.onnx.export(dynamo=False)",
    "tensorflow": "tf2onnx",
    "jax": "jax2onnx",
}


def export_keras(model: keras.Model, path: str, opset: int | None, backend_name: str) -> dict[str, str]:
    """Write a Keras functional model (e.g. the decoder: z [None, 2], label [None, 10]) as ONNX.

    Args:
        model: a functional model with a dynamic batch axis on every input.
        path: the file to write.
        opset: the ONNX opset to ask the exporter for (None: its default).
        backend_name: the cvae-bench backend exporting it (for messages).

    Returns:
        The exporter and its versions, for the file's metadata.

    Raises:
        RuntimeError: Keras runs on a framework without an ONNX route, or the converter is not installed.
    """
    framework = keras.backend.backend()
    if framework not in _CONVERTER:
        raise RuntimeError(f"{backend_name}: Keras on {framework!r} has no ONNX export; use torch, tensorflow or jax")
    converter = _CONVERTER[framework]
    converter_version = dist_version(converter)
    if converter_version == NOT_INSTALLED:
        raise RuntimeError(
            f"{backend_name}: exporting ONNX from Keras on {framework} needs {converter}: pip install {converter}"
        )
    # Keras refuses to export a model that has never been called; one call on zeros builds it.
    model([np.zeros((2, *t.shape[1:]), np.float32) for t in model.inputs])
    model.export(path, format="onnx", verbose=False, opset_version=opset)
    return {
        "exporter": f"keras.Model.export(format='onnx') via {_HOW[framework]}",
        "exporter_version": f"keras {keras.__version__}, {converter} {converter_version}",
        "keras": keras.__version__,
        converter: converter_version,
    }
