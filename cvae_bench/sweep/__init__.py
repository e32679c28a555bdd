"""Sweeps: a declarative grid of `run` and `bench` cells, keyed and idempotent, run by an executor."""
