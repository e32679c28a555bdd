"""The conformance suite (cvae_bench.testing.conformance) on every registered backend, built-in or plugin."""

from cvae_bench.testing.conformance import ConformanceSuite


class TestConformance(ConformanceSuite):
    """Every registered backend: a new plugin gets the whole suite by registering its entry point."""
