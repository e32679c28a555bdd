"""The benchmark groups, by name: the one registry the runner, the report, the CLI and the pytest suite read.

A new group is one module in this folder (a `BackendGroup` or `StandaloneGroup` subclass, see `base.py`)
and one line below. The order here is the order of bench.json's entries and of the report's tables.
"""

from __future__ import annotations

from typing import Any

from cvae_bench.bench.groups.anatomy import AnatomyGroup
from cvae_bench.bench.groups.base import BackendGroup, BenchGroup, StandaloneGroup
from cvae_bench.bench.groups.sample_native import SampleNative
from cvae_bench.bench.groups.sample_onnxruntime import SampleOnnxruntime
from cvae_bench.bench.groups.sample_onnxruntime_web import SampleOnnxruntimeWeb
from cvae_bench.bench.groups.train_step import TrainStep
from cvae_bench.core.checks import did_you_mean
from cvae_bench.core.errors import UsageError

GROUPS: dict[str, BenchGroup[Any]] = {
    group.name: group
    for group in (
        TrainStep(),
        SampleNative(),
        SampleOnnxruntime(),
        SampleOnnxruntimeWeb(),
        AnatomyGroup(),
    )
}

#: The groups `cvae-bench bench` runs when `--groups` is not given, as the groups themselves declare.
DEFAULT_GROUPS: tuple[str, ...] = tuple(name for name, group in GROUPS.items() if group.by_default)


def select(names: tuple[str, ...] | list[str]) -> list[BenchGroup[Any]]:
    """The registered groups named in `names`, in registry order (every registered group when `names` is empty).

    Raises:
        UsageError: a name that is not registered (the message lists the known ones).
    """
    if not names:
        return list(GROUPS.values())
    unknown = sorted(set(names) - set(GROUPS))
    if unknown:
        hint = did_you_mean(unknown[0], GROUPS)
        raise UsageError(f"unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}.{hint}")
    return [group for name, group in GROUPS.items() if name in names]


__all__ = ["DEFAULT_GROUPS", "GROUPS", "BackendGroup", "BenchGroup", "StandaloneGroup", "select"]
