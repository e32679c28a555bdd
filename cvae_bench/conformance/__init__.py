"""Recipe conformance: checks that a backend runs the tutorial's model, loss, noise, batch order and Adam."""

from cvae_bench.conformance.checks import (
    TOLERANCES,
    BackendLike,
    CheckResult,
    Probe,
    Tolerances,
    recipe_checks,
)

__all__ = ["TOLERANCES", "BackendLike", "CheckResult", "Probe", "Tolerances", "recipe_checks"]
