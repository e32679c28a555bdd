"""cvae-bench: one Conditional VAE, every backend, matched quality, honest timings."""

from cvae_bench.core.errors import CvaeBenchError

__version__ = "0.1.0"
__all__ = ["CvaeBenchError", "__version__"]
