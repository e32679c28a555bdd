"""`--executor ray`: each cell a Ray task that holds one bench slot (a whole node), its CPUs and a GPU for CUDA.

Fair timing on a shared cluster rests on three things, all set here: every cell asks for one unit of the
slot resource that each worker node advertises once (`ray start --resources='{"bench_slot": 1}'`), so a node
runs one measurement at a time, and the head, which advertises none, runs no cells; every cell asks for
the CPUs it will use, so that nothing else Ray schedules lands beside it; and the cell sets every
framework's threads itself (`execute.execute_cell`), overriding the OMP_NUM_THREADS Ray gives its tasks.
Ray's resources are logical only: they order the scheduling, they do not fence the cores.

A node lost mid-cell fails its task; Ray runs it again elsewhere (`max_retries`, system failures only) and,
should that fail too, the driver sees a failed outcome and submits it again within `--retries`. The task
writes only into a scratch folder on its node, so nothing of the lost attempt reaches the sweep folder.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
from typing import Any

from cvae_bench.core.errors import CvaeBenchError
from cvae_bench.runtime.threads import available_cores
from cvae_bench.sweep.cells import Cell, Resources, resources
from cvae_bench.sweep.execute import CellOutcome, execute_cell
from cvae_bench.sweep.executors.base import Executor, ExecutorSettings

#: What to do when Ray is missing, in one line.
INSTALL_HINT = "Ray is not installed; install it with: pip install 'cvae-bench[ray]'"
#: Times Ray itself runs a task again after its node or worker died (never after an error of the cell).
SYSTEM_RETRIES = 3


def import_ray() -> Any:
    """The `ray` module.

    Raises:
        CvaeBenchError: Ray is not installed (the message says how to install it).
    """
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise CvaeBenchError(INSTALL_HINT) from None


class RayExecutor(Executor):
    """Runs cells as Ray tasks on a cluster (`--address`, $RAY_ADDRESS, or a Ray already initialised here).

    With no address and no Ray running, it starts a one-node Ray on this machine with one slot: cells then
    run one at a time here, as with the local executor, but through Ray.
    """

    name = "ray"

    def __init__(self, settings: ExecutorSettings) -> None:
        super().__init__(settings)
        self._ray: Any = None
        self._task: Any = None
        self._owned = False
        self._refs: dict[Any, Cell] = {}
        self._slot_nodes: list[dict[str, float]] = []

    def describe(self) -> str:
        """'ray (N nodes with bench_slot)'."""
        if not self._slot_nodes:
            return f"ray ({self.settings.address or os.environ.get('RAY_ADDRESS') or 'a one-node Ray here'})"
        cpus = sorted({int(n.get("CPU", 0)) for n in self._slot_nodes})
        return f"ray ({len(self._slot_nodes)} node(s) with {self.settings.slot}; CPUs per node {cpus})"

    def check(self) -> None:
        """Refuse a machine without Ray before the results folder is made (found, not imported: Ray loads slowly).

        Raises:
            CvaeBenchError: Ray is not installed (the message says how to install it).
        """
        if importlib.util.find_spec("ray") is None:
            raise CvaeBenchError(INSTALL_HINT)

    def start(self) -> None:
        """Connect to the cluster (or start a one-node Ray), and check that some node can hold a cell.

        Raises:
            CvaeBenchError: Ray is missing, or no live node advertises the slot resource.
        """
        ray = self._ray = import_ray()
        if not ray.is_initialized():
            address = self.settings.address or os.environ.get("RAY_ADDRESS")
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(
                    num_cpus=available_cores(),
                    resources={self.settings.slot: 1},
                    include_dashboard=False,
                    log_to_driver=False,
                )
            self._owned = True
        self._task = ray.remote(execute_cell)
        self._slot_nodes = self._nodes()
        if not self._slot_nodes:
            slot = self.settings.slot
            raise CvaeBenchError(
                f"no live Ray node advertises the resource {slot!r}, so no cell could ever be scheduled; start "
                f"each worker node with `ray start --address=HEAD:6379 --resources='{{\"{slot}\": 1}}'`"
            )

    def _nodes(self) -> list[dict[str, float]]:
        """The resources of every live node that advertises the slot."""
        nodes = self._ray.nodes()
        return [n["Resources"] for n in nodes if n.get("Alive") and n["Resources"].get(self.settings.slot, 0) >= 1]

    def resources(self, cell: Cell) -> Resources:
        """A slot, the cell's CPUs (its threads, `[ray] cpus`, else the smallest slot node's), a GPU for CUDA."""
        cpus = self.settings.cpus or cell.threads
        if cpus is None and self._slot_nodes:
            cpus = int(min(n.get("CPU", 1) for n in self._slot_nodes))
        return resources(cell, cpus)

    def _check_feasible(self, cell: Cell, need: Resources) -> None:
        """Ray waits forever for a task no node can hold: refuse it here instead."""
        fits = [n for n in self._slot_nodes if n.get("CPU", 0) >= (need.cpus or 0) and n.get("GPU", 0) >= need.gpus]
        if not fits:
            raise CvaeBenchError(
                f"no node with {self.settings.slot} can hold cell {cell.key} ({cell.label}): it needs "
                f"{need.describe(self.settings.slot)}; nodes have "
                + "; ".join(f"CPU {int(n.get('CPU', 0))}, GPU {int(n.get('GPU', 0))}" for n in self._slot_nodes)
            )

    def submit(self, cell: Cell) -> None:
        """Submit `cell` as a task holding one slot, its CPUs and, for CUDA, one GPU.

        Raises:
            CvaeBenchError: no live slot node has the CPUs or GPU the cell asks for.
        """
        need = self.resources(cell)
        self._check_feasible(cell, need)
        ref = self._task.options(
            num_cpus=need.cpus or 1,
            num_gpus=need.gpus,
            resources={self.settings.slot: need.slots},
            max_retries=SYSTEM_RETRIES,
            retry_exceptions=False,
            name=f"cvae-bench {cell.label}",
        ).remote(cell, self.settings.data_path, self.settings.idle_timeout)
        self._refs[ref] = cell

    def next_done(self) -> CellOutcome:
        """Wait for the first task to finish; a task lost with its node (after Ray's retries) is a failed outcome."""
        ray = self._ray
        ready, _ = ray.wait(list(self._refs), num_returns=1)
        cell = self._refs.pop(ready[0])
        try:
            outcome: CellOutcome = ray.get(ready[0])
        except ray.exceptions.RayError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            return CellOutcome.failed(cell, f"lost on the cluster ({type(exc).__name__}): {first}")
        return outcome

    @property
    def in_flight(self) -> int:
        """Tasks submitted and not yet returned."""
        return len(self._refs)

    def stop(self) -> None:
        """Cancel what still runs (an interrupted sweep) and shut down a Ray this executor started."""
        if self._ray is None:
            return
        for ref in list(self._refs):
            # A task that has already ended cannot be cancelled; there is nothing to do about it then.
            with contextlib.suppress(Exception):
                self._ray.cancel(ref, force=True)
        self._refs.clear()
        if self._owned:
            self._ray.shutdown()
            self._owned = False
