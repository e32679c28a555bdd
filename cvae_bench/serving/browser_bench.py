"""The decoder timed in headless Chromium with onnxruntime-web (WASM): the browser as a sampling runtime."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

from cvae_bench.core.records import Record
from cvae_bench.serving.browser import open_page
from cvae_bench.serving.ort_web import ORT_WEB_VERSION
from cvae_bench.serving.web import write_site


@dataclass(frozen=True)
class BrowserRounds(Record):
    """One batch size timed in the page (`cvaeBench.timeRounds`): rounds of `iterations` calls each."""

    batch: int
    round_s: list[float]
    iterations: int
    warmup: int
    warmup_s: float
    first_call_s: float


@dataclass(frozen=True)
class BrowserSamples(Record):
    """Every batch size, with the execution provider, WASM threads and versions the page ran with."""

    ep: str
    threads: int
    cross_origin_isolated: bool
    ort_web: str
    browser: str
    batches: list[BrowserRounds]


def browser_sample(
    model: str,
    batch_sizes: Sequence[int],
    *,
    rounds: int = 15,
    min_time_s: float = 0.1,
    warmup: int = 10,
    threads: int = 1,
) -> BrowserSamples:
    """Time `model` at each batch size in headless Chromium, onnxruntime-web's WASM provider.

    Raises:
        RuntimeError: no browser can run here (the reason), or the page failed to start.
        CvaeBenchError: onnxruntime-web is missing (how to get it) or `model` is not a decoder.
    """
    with tempfile.TemporaryDirectory(prefix="cvae-bench-web-") as tmp:
        write_site(model, tmp, webgpu=False)
        with open_page(tmp, f"index.html?ep=wasm&threads={threads}", timeout_s=600) as (page, errors):
            page.wait_for_function("window.cvaeBench && window.cvaeBench.ready")
            page.evaluate("window.cvaeBench.ready")
            info = page.evaluate("window.cvaeBench.info")
            out = []
            for b in batch_sizes:
                r = page.evaluate(
                    "(a) => window.cvaeBench.timeRounds(a)",
                    {"batch": int(b), "rounds": rounds, "minTimeMs": min_time_s * 1e3, "warmup": warmup},
                )
                out.append(
                    BrowserRounds(
                        batch=int(b),
                        round_s=[t / 1e3 for t in r["round_ms"]],
                        iterations=int(r["iterations"]),
                        warmup=int(r["warmup"]),
                        warmup_s=float(r["warmup_ms"]) / 1e3,
                        first_call_s=float(r["first_ms"]) / 1e3,
                    )
                )
            if errors.all:
                raise RuntimeError(f"the page reported errors: {'; '.join(errors.all)[:500]}")
            version = page.context.browser.version if page.context.browser else "unknown"
    return BrowserSamples(
        ep=str(info["ep"]),
        threads=int(info["threads"]),
        cross_origin_isolated=bool(info["crossOriginIsolated"]),
        ort_web=str(info.get("ortVersion") or ORT_WEB_VERSION),
        browser=f"chromium {version}",
        batches=out,
    )
