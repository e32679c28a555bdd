"""Data, training to target, evaluation, workers, export and benchmarks: the backend-neutral harness."""
