"""Plain-loop reference rows: each framework's own loop trains the spec's model and counts its steps honestly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cvae_bench.backends import registry
from cvae_bench.bench.plain import PLAIN_LOOPS, PlainLoop, PlainLoopEnd, PlainLoopInfo, plain_torch_setup
from cvae_bench.bench.rounds import Opened, close_job, open_job, rounds_job, run_alone
from cvae_bench.models import DEFAULT_SPEC, reference
from cvae_bench.runtime.worker import Worker
from cvae_bench.testing.support import MnistArrays, require_or_skip

ROOT = str(Path(__file__).resolve().parent.parent)
ENV = {"PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}


def _need(loop: PlainLoop) -> None:
    info = loop.worker_info()
    if not info.available:
        require_or_skip(f"{loop.name}: {info.unavailable_reason()}")


def test_every_builtin_backend_has_its_plain_row() -> None:
    builtin = {name: info for name, info in registry.all_backends().items() if info.origin == "builtin"}
    assert {loop.shadows for loop in PLAIN_LOOPS.values()} == set(builtin)
    for name, loop in PLAIN_LOOPS.items():
        assert name == f"plain:{loop.shadows}"
        assert loop.env == builtin[loop.shadows].env  # KERAS_BACKEND and nothing of ours
        assert loop.worker_info().name == name and loop.worker_info().env == loop.env


def test_importing_the_rows_imports_no_framework() -> None:
    code = (
        "import sys, cvae_bench.bench.plain; print(sorted({'torch', 'keras', 'jax', 'tensorflow'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ, **ENV}
    )
    assert out.stdout.strip() == "[]"


def test_plain_torch_loop_trains_one_step_per_call(mnist: MnistArrays) -> None:
    _need(PLAIN_LOOPS["plain:torch"])
    events: list[Any] = []
    timing, info, end = run_alone(
        plain_torch_setup, None, events.append, rounds=2, min_time=0.0, warmup=10, train_subset=640
    )
    assert isinstance(info, PlainLoopInfo) and isinstance(end, PlainLoopEnd)
    assert info.framework == "torch" and info.keras_backend is None and info.steps_per_call == 1
    assert info.batch == DEFAULT_SPEC.batch_size and info.first_call_s > 0 and "torch" in info.versions
    assert [e["what"] for e in events] == ["first step"]
    assert len(timing.round_s) == 2 and all(s > 0 for s in timing.round_s)
    # Adam's own count: one optimiser step per call, first step, warm-up, calibration and rounds included.
    assert end.steps == end.calls >= 1 + 10 + 1 + 2 * timing.iterations
    assert np.isfinite(end.loss) and end.loss < 0.85 * info.first_loss  # ~540 nats at torch's init, ~400 after 10 steps


def test_plain_torch_loop_refuses_too_little_data(mnist: MnistArrays) -> None:
    _need(PLAIN_LOOPS["plain:torch"])
    with pytest.raises(ValueError, match="needs at least 64 training images per call, got 10"):
        plain_torch_setup(None, lambda e: None, train_subset=10)


def test_plain_torch_loss_and_gradients_are_the_references(mnist: MnistArrays) -> None:
    """At the reference's weights and ε, the user-written model and loss give the float64 judge's numbers."""
    _need(PLAIN_LOOPS["plain:torch"])
    import torch
    from torch import nn

    from cvae_bench.bench.plain import torch_loss, torch_model

    x, y = mnist[0][:16], mnist[1][:16]
    eps = np.random.default_rng(3).standard_normal((DEFAULT_SPEC.kl_samples, 16, DEFAULT_SPEC.latent_dim))
    weights = reference.init_weights(0)
    model = torch_model(DEFAULT_SPEC)
    linears = {
        f"{part}.dense_{i}": lin
        for part in ("encoder", "decoder")
        for i, lin in enumerate(m for m in getattr(model, part) if isinstance(m, nn.Linear))
    }
    with torch.no_grad():
        for name, lin in linears.items():
            lin.weight.copy_(torch.as_tensor(weights[f"{name}.kernel"].T))
            lin.bias.copy_(torch.as_tensor(weights[f"{name}.bias"]))
    xt = torch.as_tensor(x)
    loss = torch_loss(xt, *model(xt, torch.as_tensor(y), torch.as_tensor(eps, dtype=torch.float32)))
    loss.backward()
    want = reference.loss_parts(weights, x, y, eps).total.mean()
    assert loss.item() == pytest.approx(want, rel=1e-5)
    grads = reference.gradients(weights, x, y, eps)
    for name, lin in linears.items():
        assert lin.weight.grad is not None and lin.bias.grad is not None
        np.testing.assert_allclose(lin.weight.grad.numpy().T, grads[f"{name}.kernel"], rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(lin.bias.grad.numpy(), grads[f"{name}.bias"], rtol=1e-3, atol=1e-4)


KERAS_ROWS = [
    pytest.param(name, id=name, marks=[] if name == "plain:keras-jax" else [pytest.mark.slow])
    for name, loop in PLAIN_LOOPS.items()
    if "KERAS_BACKEND" in loop.env
]


@pytest.mark.parametrize("name", KERAS_ROWS)
def test_plain_keras_fit_in_its_worker_takes_steps_per_call_steps(name: str, mnist: MnistArrays) -> None:
    """The rounds engine's own jobs, in a bare worker with only KERAS_BACKEND set: one fit call is
    `steps_per_call` optimiser steps, and the loss falls."""
    loop = PLAIN_LOOPS[name]
    _need(loop)
    kwargs = {"train_subset": 640, "steps_per_call": 5, "warmup": 1}
    with Worker(loop.worker_info(), idle_timeout=300, extra_env=ENV) as worker:
        opened: Opened = worker.run_job(open_job, key=name, setup=loop.setup, min_time=0.0, setup_kwargs=kwargs)
        rounds = worker.run_job(rounds_job, key=name, rounds=2)
        end: PlainLoopEnd = worker.run_job(close_job, key=name)
    info = opened.info
    assert isinstance(info, PlainLoopInfo) and isinstance(end, PlainLoopEnd)
    assert info.framework == "keras" and info.keras_backend == loop.env["KERAS_BACKEND"]
    assert info.steps_per_call == 5 and info.first_call_s > 0 and set(info.versions) == {"keras", info.keras_backend}
    assert len(rounds) == 2 and all(s > 0 for s in rounds)
    # The optimiser's own count: 5 steps per fit call (first call, warm-up, calibration and rounds).
    assert end.steps == 5 * end.calls and end.calls >= 1 + 1 + 1 + 2 * opened.iterations
    assert np.isfinite(end.loss) and end.loss < info.first_loss
