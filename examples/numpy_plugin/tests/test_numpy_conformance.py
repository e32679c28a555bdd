"""cvae-bench's conformance suite on this plugin's backend: `cd examples/numpy_plugin && pytest`."""

from cvae_bench.testing.conformance import ConformanceSuite


class TestNumpyConformance(ConformanceSuite):
    backends = ("numpy",)
