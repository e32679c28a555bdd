"""Sweeps on Ray, on this machine: a one-node Ray with one bench slot, and a two-node cluster losing a node."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cvae_bench.backends import registry
from cvae_bench.sweep.api import sweep_command
from cvae_bench.sweep.config import read_sweep_file
from cvae_bench.sweep.options import SweepCommand
from cvae_bench.sweep.store import CellRecord, SweepStore
from tests.test_sweep import Heard

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
pytestmark = pytest.mark.skipif("numpy" not in registry.all_backends(), reason="the numpy plugin is not installed")


def tiny(seeds: int) -> str:
    """A sweep of `seeds` one-epoch numpy runs on 640 images, one thread each."""
    return (
        '[sweep]\nname = "ray"\ncommands = ["run"]\nbackends = ["numpy"]\nthreads = [1]\n'
        f"seeds = {list(range(seeds))}\n[run]\nepochs = 1\ntrain_subset = 640\nval_subset = 200\n"
    )


@pytest.fixture(scope="session")
def one_node_ray() -> Iterator[Any]:
    """A Ray of this machine with one bench slot: cells run one at a time, as Ray tasks."""
    ray.shutdown()
    ray.init(num_cpus=2, resources={"bench_slot": 1}, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def final_elbo(folder: Path, record: CellRecord) -> float:
    return float(json.loads((folder / "cells" / record.key / "result.json").read_text())["final"]["val_elbo"])


def test_a_cell_runs_as_a_ray_task(tmp_path: Path, one_node_ray: Any) -> None:
    """One cell through Ray: its files travel back whole, and it set every framework's threads itself."""
    path = tmp_path / "sweep.toml"
    path.write_text(tiny(1))
    ran = sweep_command(SweepCommand(str(path), executor="ray", out=str(tmp_path / "ray")), Heard()).ran
    assert [(r.status, r.executor, r.attempts) for r in ran] == [("fixed-epochs", "ray", 1)]
    # Ray gave the task OMP_NUM_THREADS; the cell kept it in the audit and set the worker's threads itself.
    threads = ran[0].threads
    assert threads is not None and threads.used == 1 and threads.worker_env["OMP_NUM_THREADS"] == "1"
    assert "OMP_NUM_THREADS" in threads.executor_env
    assert (tmp_path / "ray" / "cells" / ran[0].key / "weights.safetensors").stat().st_size > 3_000_000


@pytest.mark.ray
def test_ray_results_equal_the_local_ones(tmp_path: Path, one_node_ray: Any) -> None:
    """The same cells through Ray and locally: same keys, same machine, the same trained numbers."""
    path = tmp_path / "sweep.toml"
    path.write_text(tiny(2))
    ran = sweep_command(SweepCommand(str(path), executor="ray", out=str(tmp_path / "ray")), Heard()).ran
    local = sweep_command(SweepCommand(str(path), out=str(tmp_path / "local")), Heard()).ran
    by_key = {r.key: r for r in local}
    assert sorted(by_key) == sorted(r.key for r in ran)
    for record in ran:
        assert record.machine == by_key[record.key].machine
        assert final_elbo(tmp_path / "ray", record) == final_elbo(tmp_path / "local", by_key[record.key])


@pytest.mark.ray
def test_no_slot_node_is_refused_before_anything_waits(tmp_path: Path, one_node_ray: Any) -> None:
    path = tmp_path / "sweep.toml"
    path.write_text(tiny(1) + '[ray]\nslot = "gpu_slot"\n')
    with pytest.raises(Exception, match="no live Ray node advertises the resource 'gpu_slot'"):
        sweep_command(SweepCommand(str(path), executor="ray", out=str(tmp_path / "o")), Heard())
    path.write_text(tiny(1) + "[ray]\ncpus = 64\n")
    with pytest.raises(Exception, match="needs bench_slot 1, CPU 64"):
        sweep_command(SweepCommand(str(path), executor="ray", out=str(tmp_path / "o")), Heard())


@pytest.mark.ray
def test_two_node_cluster_losing_a_node_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """A head that runs no cells, two worker nodes with one slot each; one node is removed mid-sweep."""
    from ray.cluster_utils import Cluster

    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        node_a = cluster.add_node(num_cpus=1, resources={"bench_slot": 1})
        node_b = cluster.add_node(num_cpus=1, resources={"bench_slot": 1})
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        path = tmp_path / "sweep.toml"
        path.write_text(tiny(6))
        out = tmp_path / "out"
        removed: list[Any] = []

        def lose_a_node(record: CellRecord) -> None:
            if not removed:  # the other node is busy with a cell now (or about to be): take it away
                removed.append(cluster.remove_node(node_b, allow_graceful=False))

        cmd = SweepCommand(str(path), executor="ray", out=str(out), retries=2)
        outcome = sweep_command(cmd, Heard(), on_cell=lose_a_node)
        assert removed
        keys = [c.key for c in read_sweep_file(path, out).cells]
        records = {r.key: r for r in SweepStore(out).records()}
        assert sorted(records) == sorted(keys)  # nothing lost
        assert sorted(r.key for r in outcome.ran) == sorted(keys)  # nothing written twice
        assert {r.status for r in records.values()} == {"fixed-epochs"}
        assert sorted(p.name for p in (out / "cells").iterdir()) == sorted(keys)  # nothing half-written
        assert all((out / "cells" / k / "result.json").is_file() for k in keys)
        assert node_a is not None
    finally:
        ray.shutdown()
        cluster.shutdown()
