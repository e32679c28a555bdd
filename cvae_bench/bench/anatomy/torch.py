"""The anatomy adapter for torch (native torch and keras-torch): torch.profiler's CPU op events."""

from __future__ import annotations

from collections.abc import Callable

from cvae_bench.bench.anatomy.records import Profiled, op_times, timed_calls

NOTE = (
    "torch.profiler (CPU activity): each op's self time on the calling thread (intra-op threads work inside "
    "their op); autograd and optimizer wrappers count as overhead; the remainder is Python between ops and "
    "the profiler's own cost. Compiled mode: inductor's fused C++ kernels run inside the compiled graph's "
    "call and show as its self time (counted as element-wise: they hold the element-wise, loss and Adam "
    "arithmetic together); extern GEMMs show as aten::mm/addmm."
)


def profile(call: Callable[[], None], calls: int, sync: Callable[[], None], workdir: str) -> Profiled:
    """`calls` calls of `call` under torch.profiler; returns the ops' self times per call."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        wall = timed_calls(call, calls, sync)
    events = [(e.name, e.self_cpu_time_total * 1e-6) for e in prof.events()]
    return Profiled("torch.profiler", "torch", wall / calls, op_times("torch", events, calls), note=NOTE)
