"""The bench's memory figures: the idle worker's baseline, each worker's report per epoch, and each entry's figures.

The runner asks every live worker for its memory report (`runtime.memory.memory_job`) when an epoch's rounds
end, keeps them by row, and hands each backend run the figures of each call (`core.memory.figures`): the
median peak over the epochs' fresh worker processes with its range. `attach` puts them into the entries'
`extra_info["memory"]` when bench.json is written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from cvae_bench.bench.options import BenchOptions
from cvae_bench.bench.records import Entry
from cvae_bench.core.memory import MemoryFigures, ProcessMemory, figures
from cvae_bench.runtime.memory import baseline_job, memory_job


def memory_key(group: str, batch: int | None) -> str:
    """The key of a call's figures in `BackendRun.memory`: its group and batch (what an entry also knows)."""
    return f"{group}@{batch}"


def baseline(options: BenchOptions) -> int:
    """The resident set of an idle bare worker (the same worker code, no framework imported), in bytes."""
    from cvae_bench.bench.groups.base import BARE_WORKER, start_worker  # the groups import this module

    with start_worker(BARE_WORKER, options) as w:
        value: int = w.run_job(baseline_job)
    return value


def report(host: Any) -> ProcessMemory:
    """The memory report of a live worker (a `RemoteBackend` or a bare `Worker`)."""
    return ProcessMemory.of(host.run_job(memory_job))


def by_call(contestants: Sequence[Any], processes: Sequence[ProcessMemory], base: int) -> dict[str, MemoryFigures]:
    """Each contestant's figures over the worker processes of its row, by `memory_key` of its plan."""
    out = {}
    for c in contestants:
        found = figures(processes, c.plan.key, base)
        if found is not None:
            out[memory_key(c.plan.group, c.plan.batch)] = found
    return out


def with_memory(entry: Entry, found: MemoryFigures | None) -> Entry:
    """`entry` with `extra_info["memory"]` (unchanged without figures)."""
    if found is None:
        return entry
    return dataclasses.replace(entry, extra_info={**entry.extra_info, "memory": found.to_json()})


def attach(entries: Sequence[Entry], memory: Mapping[str, MemoryFigures]) -> list[Entry]:
    """`entries` with `extra_info["memory"]` from `memory` (matched by group and batch; a group's only figures
    when an entry has no batch); entries without figures are left as they are."""
    out = []
    for e in entries:
        found = memory.get(memory_key(e.group, e.batch))
        if found is None:
            mine = [f for k, f in memory.items() if k.startswith(f"{e.group}@")]
            found = mine[0] if len(mine) == 1 else None
        out.append(with_memory(e, found))
    return out
