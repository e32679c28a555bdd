"""The model contract: the one spec and the float64 NumPy reference every backend is held to."""

from cvae_bench.models.spec import DEFAULT_SPEC, ModelSpec

__all__ = ["DEFAULT_SPEC", "ModelSpec"]
