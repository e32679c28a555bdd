"""The `evaluate` command: its options record, checked before any work, and the score of a weights file.

The record lives in the data wing, beside the shared evaluator it drives (`data.evaluation`), because that is
all the command is: the evaluator on a data set's validation split. It is a module of its own because the
command line imports it for the record at start-up, and `data.evaluation` imports numpy and the worker; here
they are imported when the command runs.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, replace
from typing import TYPE_CHECKING

from cvae_bench.core.events import Reporter
from cvae_bench.core.options import check_declared, device_option, option
from cvae_bench.data.specs import data_option, dataset_option, val_subset_option

if TYPE_CHECKING:
    from cvae_bench.models.evaluator import Evaluation


@dataclass(frozen=True, kw_only=True)
class EvaluateCommand:
    """What `cvae-bench evaluate` was asked: score `weights` with `backend`'s networks on `device`.

    Every field is an option of the command; `backend` and `weights` have no default.
    """

    backend: str = option(MISSING, "--backend", "Backend that runs the networks.", required=True)
    weights: str = option(MISSING, "--weights", "Canonical weights to score.", path="file", required=True)
    device: str = device_option()
    dataset: str = dataset_option()
    data_path: str | None = data_option()
    val_subset: int | None = val_subset_option()

    def check(self) -> EvaluateCommand:
        """This record with its backend's name made canonical and its device parsed, once every value can work.

        The usage errors come first (exit 2), then the weights file (exit 1). The device is probed; nothing is
        started.

        Raises:
            UsageError: a data set, subset, device or backend name that cannot work (a misspelt name is answered
                with the closest known one).
            CvaeBenchError: the backend's framework is missing, or the weights file is.
        """
        checked = check_declared(self)
        backend, device = check_scoring(
            checked.backend, checked.weights, checked.device, checked.dataset, checked.val_subset
        )
        return replace(checked, backend=backend, device=device)


@dataclass(frozen=True)
class EvaluateOutcome:
    """The score of a weights file, and what was asked."""

    command: EvaluateCommand
    evaluation: Evaluation

    def line(self) -> str:
        """E.g. `torch: val -ELBO 234.9120  (KL 5.1234, NLL 229.7886)  [run/weights.safetensors]`."""
        ev = self.evaluation
        return (
            f"{self.command.backend}: val -ELBO {ev.val_elbo:.4f}  (KL {ev.kl:.4f}, NLL {ev.nll:.4f})  "
            f"[{self.command.weights}]"
        )


def evaluate_command(cmd: EvaluateCommand, reporter: Reporter) -> EvaluateOutcome:
    """`cvae-bench evaluate`: check every option (`EvaluateCommand.check`), fetch the data set if needed (its
    progress reported), then score the weights with the shared evaluator in the backend's worker.

    Raises:
        UsageError: an option that cannot work (nothing is started).
        CvaeBenchError: a missing or unreadable weights file, the data set, the worker, or a non-finite score.
    """
    from cvae_bench.backends import registry
    from cvae_bench.data.evaluation import evaluate_weights

    checked = cmd.check()
    evaluation = evaluate_weights(
        registry.get(checked.backend),
        checked.weights,
        device=checked.device,
        dataset=checked.dataset,
        data_path=checked.data_path,
        val_subset=checked.val_subset,
        reporter=reporter,
    )
    return EvaluateOutcome(checked, evaluation)


def check_scoring(backend: str, weights: str, device: str, dataset: str, val_subset: int | None) -> tuple[str, str]:
    """The backend's canonical name and the device parsed (and probed), once `backend` can score `weights` on
    `device` against `dataset`'s validation split: the checks `evaluate` and `export` share, before any work.

    Raises:
        UsageError: a subset larger than the data set, a device or backend name that cannot work.
        CvaeBenchError: the backend's framework is missing, or the weights file is.
    """
    from cvae_bench.backends.selection import check_backend
    from cvae_bench.core import checks
    from cvae_bench.data.specs import check_subsets

    check_subsets(dataset, None, val_subset)
    device = checks.check_device("--device", device)
    info = check_backend("--backend", backend, device)
    checks.check_input_file("--weights", weights)
    return info.name, device
