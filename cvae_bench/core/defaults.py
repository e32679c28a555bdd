"""Defaults shared by the command line and the layers below it, declared once."""

from __future__ import annotations

#: The matched quality every run trains to: validation −ELBO in nats (the tutorial passes it in epoch 5–6).
DEFAULT_TARGET = 235.0
#: Epochs after which a run that has not reached the target gives up.
DEFAULT_MAX_EPOCHS = 20
#: Seconds without any frame from a worker after which it is declared hung.
DEFAULT_IDLE_TIMEOUT = 600.0
#: ONNX model precisions the pipeline can make from an fp32 export.
PRECISIONS = ("fp32", "fp16", "int8")
#: Sampling batch sizes of the benchmarks.
DEFAULT_BATCH_SIZES = (1, 64, 1024, 8192)
#: Where a backend runs unless told otherwise.
DEFAULT_DEVICE = "cpu"
#: Device kinds a backend may declare.
DEVICES = ("cpu", "cuda")
#: The largest batch a sampling or offline batch may have (65,536 decoded images are ~200 MB of float32):
#: above it a typo (1e9) would exhaust memory instead of measuring anything.
MAX_BATCH_SIZE = 65536
#: The largest seed: numpy's legacy seeding (used by Keras's `set_random_seed`) takes 0..2**32-1.
MAX_SEED = 2**32 - 1
#: Cells a sweep file may expand to; a larger grid is counted and refused before it is enumerated.
MAX_SWEEP_CELLS = 10_000
#: Seconds a timed bench round may be asked to last at most: longer rounds measure nothing more, `inf` never ends.
MAX_MIN_TIME = 60.0
#: Default `--fail-above`: a significant regression larger than 5 % fails the gate.
DEFAULT_FAIL_ABOVE = 0.05
