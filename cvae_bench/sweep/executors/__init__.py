"""The executors, by name: each module holds one, imported only when it is chosen."""

from __future__ import annotations

from collections.abc import Callable

from cvae_bench.core.errors import CvaeBenchError
from cvae_bench.sweep.executors.base import Executor, ExecutorSettings


def _local() -> type[Executor]:
    from cvae_bench.sweep.executors.local import LocalExecutor

    return LocalExecutor


def _ray() -> type[Executor]:
    from cvae_bench.sweep.executors.ray import RayExecutor

    return RayExecutor


#: `--executor` names and how to load each (late, so that listing them imports no Ray).
EXECUTORS: dict[str, Callable[[], type[Executor]]] = {"local": _local, "ray": _ray}


def make_executor(name: str, settings: ExecutorSettings) -> Executor:
    """The executor called `name`.

    Raises:
        CvaeBenchError: an unknown name (the message lists the known ones).
    """
    if name not in EXECUTORS:
        raise CvaeBenchError(f"unknown executor {name!r}; known: {', '.join(EXECUTORS)}")
    return EXECUTORS[name]()(settings)


__all__ = ["EXECUTORS", "Executor", "ExecutorSettings", "make_executor"]
