"""The conformance kit for backend plugins: pytest tests, their shared builders, and mutant backends.

A plugin's own repository runs the whole suite with one class (see `cvae_bench.testing.conformance`):

    from cvae_bench.testing.conformance import ConformanceSuite

    class TestConformance(ConformanceSuite):
        backends = ("my-backend",)

Importing this package does not import pytest; `conformance` and `support` do. `onnx_models` (the ONNX
builders: reference graphs, a reference decoder file, a synthetic exporter) is the only one that imports onnx.
"""
