"""What `cvae-bench loadtest` and `cvae-bench web` were asked: one frozen record per command, whose declared
fields generate the command's options.

The command line imports this module for the options, so it stays light: no numpy, no onnxruntime.
"""

from __future__ import annotations

from dataclasses import dataclass

from cvae_bench.core.defaults import MAX_BATCH_SIZE, PRECISIONS
from cvae_bench.core.errors import UsageError
from cvae_bench.core.options import check_declared, force_option, option, out_option

#: MLPerf's scenarios, in the order they run.
SCENARIOS = ("single-stream", "server", "offline")
#: Who issues the queries: MLPerf LoadGen where it imports (auto), LoadGen only, or the built-in scheduler.
SCHEDULERS = ("auto", "loadgen", "builtin")
#: The onnxruntime provider of each device kind the load test can serve on.
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


@dataclass(frozen=True)
class LoadtestCommand:
    """What `cvae-bench loadtest` was asked: the decoder, where the results go, and the configurations.

    Attributes:
        model: the decoder (an exported decoder.onnx): the command's argument.
        out: the folder for loadtest.json, loadtest.md and LoadGen's logs.
        precisions: the variants measured, made from an fp32 decoder.
        devices: the device kinds served on, each through its onnxruntime provider where the build has it.
        serving: SESSIONSxTHREADS choices (`1x1,1x2,2x1`); None: 1x1, 1xN and Nx1 for N cores.
        latency_bound_ms: the server scenario's p99 bound.
        duration_s, min_queries: each scenario run lasts at least this long and this many queries.
        max_probes: server rates tried at most in the search for the highest within the bound.
        offline_batches: the offline scenario's batch sizes.
        scenarios: MLPerf's scenarios run.
        offline_queries: samples in the offline scenario's one query.
        scheduler: who issues the queries (`SCHEDULERS`).
        force: write into an `out` folder that already holds files (an earlier load test's are replaced).
        The others are `cvae-bench loadtest`'s options, each declared with `option`.
    """

    model: str
    out: str = out_option("Folder for loadtest.json, loadtest.md and LoadGen's logs.", folder=True, default="loadtest")
    precisions: tuple[str, ...] = option(
        PRECISIONS,
        "--precisions",
        "Variants to measure (made from fp32).",
        aliases=("--precision",),
        choices=PRECISIONS,
    )
    devices: tuple[str, ...] = option(
        tuple(PROVIDERS),
        "--devices",
        "onnxruntime providers, where available (gpu reads as cuda).",
        aliases=("--device",),
        choices=tuple(PROVIDERS),
        synonyms=(("gpu", "cuda"),),
    )
    serving: str | None = option(
        None, "--serving", "SESSIONSxTHREADS choices, e.g. 1x1,1x2,2x1 [default: 1x1,1xN,Nx1 for N cores]."
    )
    latency_bound_ms: float = option(1.0, "--latency-bound", "Server p99 bound, ms.", minimum=1e-3)
    duration_s: float = option(0.5, "--duration", "Seconds per run at least.", minimum=0.01)
    min_queries: int = option(1000, "--min-queries", "Queries per run at least.", minimum=1)
    max_probes: int = option(6, "--max-probes", "Server rates tried at most.", minimum=1)
    offline_batches: tuple[int, ...] = option(
        (64, 1024),
        "--offline-batches",
        "Offline batch sizes.",
        aliases=("--offline-batch",),
        minimum=1,
        maximum=MAX_BATCH_SIZE,
    )
    scenarios: tuple[str, ...] = option(
        SCENARIOS, "--scenarios", "LoadGen's scenarios to run.", aliases=("--scenario",), choices=SCENARIOS
    )
    offline_queries: int = option(16384, "--offline-queries", "Samples in the offline scenario's one query.", minimum=1)
    scheduler: str = option(
        "auto",
        "--scheduler",
        "Who issues the queries: MLPerf LoadGen, the built-in scheduler, or LoadGen where it imports.",
        choices=SCHEDULERS,
    )
    force: bool = force_option()

    def check(self) -> LoadtestCommand:
        """This record with its choices spelt as declared, when everything can work; else one `UsageError`.

        Nothing is opened or made here: each value must keep its option's bounds and choices, `serving` read
        as SESSIONSxTHREADS items (usage errors, exit 2), then the decoder's file exist (a file problem, exit 1).

        Raises:
            UsageError: a value out of its bounds or choices.
            CvaeBenchError: no decoder file at `model`.
        """
        from cvae_bench.core.checks import check_input_file

        checked = check_declared(self)
        serving_counts(checked.serving)
        check_input_file("MODEL", self.model)
        return checked


def serving_counts(text: str | None) -> list[tuple[int, int]]:
    """'1x1,1x2,2x1' as (sessions, intra-op threads) pairs, each once, in order; None or '' gives none.

    Raises:
        UsageError: an item that is not two positive integers joined by 'x'.
    """
    out: list[tuple[int, int]] = []
    for item in text.split(",") if text else ():
        try:
            sessions, threads = (int(v) for v in item.strip().lower().split("x"))
        except ValueError:
            raise UsageError(f"--serving: expected SESSIONSxTHREADS items such as 1x2,2x1; received {item!r}") from None
        if sessions < 1 or threads < 1:
            raise UsageError(f"--serving: expected positive counts; received {item!r}")
        if (sessions, threads) not in out:
            out.append((sessions, threads))
    return out


@dataclass(frozen=True)
class WebCommand:
    """What `cvae-bench web` was asked: a static page that runs `model` in the browser, written into `out`.

    Attributes:
        model: the decoder (an exported decoder.onnx): the command's argument.
        out: the site folder; one that already holds files is refused unless `force`.
        webgpu: also ship onnxruntime-web's WebGPU build (40 MB in all); without it the page runs WASM only (14 MB).
        force: write into an `out` folder that already holds files (files of the same names are replaced).
    """

    model: str = ""
    out: str = out_option("Folder for the static site.", folder=True, default="site")
    webgpu: bool = option(
        True,
        "--webgpu",
        "Ship onnxruntime-web's WebGPU build beside WASM (40 MB); --no-webgpu: WASM only (14 MB).",
        negatable=True,
    )
    force: bool = force_option()
