"""The run-time audit: steps of the run itself, at points the backend cannot predict, replayed with the reference.

The recipe check (`training.recipe`) looks at the start only: 30 steps on 1,920 examples before training. A
backend can train by the recipe there and otherwise afterwards — β2 0.99 on the full data set only, a
learning rate that steps down every 1,000 steps, each example's ε drawn once and reused every epoch, a short
last batch averaged over 64. The audit looks where the race is run. In every epoch of every run, at a few
steps drawn from a generator derived from (seed, epoch) that the backend never sees — always the epoch's
last (short) batch and, across the epoch boundary, the next epoch's first; the batch that holds a tracked
example; one more at random — the loop closes its timed chunk (`take_loss`), and the auditor

1. reads the weights and Adam's state (`get_weights`, `Backend.adam_state`);
2. lets the backend take its normal `train_step` and read its loss (`take_loss`: that step's alone);
3. reads the ε it drew (`last_train_noise`), the weights and Adam's state after it;
4. at the next evaluation or epoch end, where the clock is stopped anyway, replays the step with the float64
   reference from that state, on the rows of the epoch's order and that ε (`training.replay`), and compares
   the loss, the weights, both moments, the step count, and the share of the weights the step removed
   beyond Adam's (weight decay);
5. keeps the ε of the tracked examples and of the first and last batches, to compare across epochs
   (`NoiseLedger`), and the statistics of every ε it read, tested at the end of the run.

Before training it builds two throwaway instances of the backend: one with the run's seed, whose initial
weights must be the run's, and one with seed + 1, whose weights must differ; the run's first ε must be what
the backend declares for its seed (`Backend.first_train_noise`) and not what it declares for seed + 1
(`check_seeding`). It only reads the backend, so the run trains exactly as it would
unaudited; the step it audits is training time, its own work is not (`seconds`).
Its plan is a function of (seed, epoch, order) and what it has found is checkpointed (`AuditState`), so a
resumed run audits the same steps. A backend that notices the reads before a step could behave for that
step alone: the audit raises the bar for a port that trains differently, it does not prove a hostile one
honest. docs/design.md ("The run-time audit") gives the measurements behind `AUDIT_TOLERANCES`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cvae_bench.backends.base import Backend
from cvae_bench.conformance.checks import TOLERANCES, check_initialisation
from cvae_bench.core.records import Record
from cvae_bench.training.noise_ledger import NoiseLedger
from cvae_bench.training.records import AUDIT_LINES, AuditRecord
from cvae_bench.training.replay import Scratch, Snapshot, StepComparison, replay_step

Array = NDArray[Any]
WeightMap = Mapping[str, Array]

#: Mixed into the audit's seeds, so that its draws are not the run's order or noise draws.
AUDIT_SALT = 0xA0D17


@dataclass(frozen=True)
class AuditTolerances:
    """Every tolerance of the audit: 10× the largest float32 error measured on the real backends, rounded up.

    Measured with the job `tests/worker_jobs.audit_errors` (`pytest -m slow tests/test_audit.py -k
    tolerances -s` runs it for the 4 default modes): each backend trained on full MNIST from seed 0, and
    every 25th step and every epoch's short last batch replayed against the float64 reference — torch eager,
    keras-jax jit, keras-tensorflow jit, keras-torch eager over 2 epochs (77 steps each); torch eager over
    10 epochs (`steps=9380, every=150`: 72 steps) and torch compiled over 2 (`every=50`: 39 steps); on the
    2-core CPU, no GPU measured. The largest error of each comparison, and where:

    | comparison | largest measured | on | tolerance (×) |
    |---|---|---|---|
    | loss | 3.6e-7 | torch compiled | 4e-6 (11) |
    | weights | 1.41e-4 | torch eager, epoch 4 of 10 | 1.5e-3 (10.6) |
    | Adam's m | 1.04e-5 | keras-jax | 1.1e-4 (10.6) |
    | Adam's v | 2.92e-4 | keras-torch | 3e-3 (10.3) |
    | shrink | 3.6e-10 | torch eager, 10 epochs | 4e-9 (11) |

    The errors are float32 rounding of one step (the weights' ulp against a step of ~1e-4 of them; v's
    update (1 − β2)·(g² − v) against v's own ulp) and grow slowly with training (torch eager's weights:
    ≤ 6e-5 in epochs 1–3, 1.4e-4 at most over 10). What the mutants leave is 67× (a 10 % learning-rate step)
    to 200,000× the tolerances (docs/design.md): decoupled weight decay 0.001 shrinks the kernels by
    lr·0.001 = 1e-6 per step, 250×.

    Attributes:
        loss_rel: the audited step's loss (`take_loss`) against the reference's, relative.
        weights_rel: per tensor, ‖w − w_ref‖ / ‖w_ref − w₀‖ after the step: the distance from the
            reference's step over the step's length.
        m_rel, v_rel: the same for Adam's first and second moments.
        shrink: the share of the kernels the step removed beyond the reference's step (`replay._shrink`).
        same_cosine: an ε whose cosine with an earlier epoch's ε of the same example or batch (or with the
            other seed's) reaches this is the same draw.
        noise_z: the largest |z| of a statistic of the ε read (as the conformance suite's).
    """

    loss_rel: float = 4e-6
    weights_rel: float = 1.5e-3
    m_rel: float = 1.1e-4
    v_rel: float = 3e-3
    shrink: float = 4e-9
    same_cosine: float = 0.99
    noise_z: float = TOLERANCES.noise_z


AUDIT_TOLERANCES = AuditTolerances()


@dataclass(frozen=True)
class AuditPlan:
    """Which steps of each epoch the audit takes (a few; the run's global step 0, the compile step, never).

    Attributes:
        random_steps: steps drawn uniformly from the epoch, besides those below.
        tracked_examples: examples whose ε is compared across epochs; the batch holding each is audited.
    """

    random_steps: int = 1
    tracked_examples: int = 1

    def tracked(self, seed: int, n: int) -> list[int]:
        """The tracked examples of a run with `seed` on `n` training examples."""
        rng = np.random.default_rng([AUDIT_SALT, seed % 2**63])
        return sorted(int(i) for i in rng.choice(n, size=min(self.tracked_examples, n), replace=False))

    def steps(self, seed: int, epoch: int, order: Array, batch: int) -> list[int]:
        """The indices (within the epoch) of the steps audited in `epoch`, whose order is `order`."""
        per_epoch = math.ceil(len(order) / batch)
        chosen = {per_epoch - 1, 0}  # the last (short) batch, and the first after the epoch boundary
        position = np.empty(len(order), np.int64)
        position[np.asarray(order)] = np.arange(len(order))
        chosen.update(int(position[i]) // batch for i in self.tracked(seed, len(order)))
        rng = np.random.default_rng([AUDIT_SALT, seed % 2**63, epoch])
        chosen.update(int(i) for i in rng.integers(0, per_epoch, size=self.random_steps))
        if epoch == 0:
            chosen.discard(0)  # the run's first step is timed apart (compilation); it is never audited
        return sorted(chosen)


def _measures(got: StepComparison, tol: AuditTolerances) -> dict[str, tuple[float, float, str]]:
    """Every comparison of a replayed step with its tolerance, as (measured, tolerance, what was measured)."""
    loss = abs(got.loss - got.reference_loss) / abs(got.reference_loss)
    if not math.isfinite(got.loss):
        loss = math.inf
    return {
        "loss": (loss, tol.loss_rel, f"loss {got.loss:.7g} vs the reference's {got.reference_loss:.7g}"),
        "weights": (got.weights[0], tol.weights_rel, f"weights: {got.weights[1]} off the reference's step"),
        "m": (got.m[0], tol.m_rel, f"Adam's m: {got.m[1]} off the reference's"),
        "v": (got.v[0], tol.v_rel, f"Adam's v: {got.v[1]} off the reference's"),
        "shrink": (
            abs(got.shrink),
            tol.shrink,
            f"the step scaled the kernels by 1 − {got.shrink:.3g} beyond Adam's",
        ),
    }


@dataclass
class AuditState(Record):
    """What the audit has found so far (mutable as it goes); a checkpoint keeps it, so a resumed run goes on.

    `worst` holds, per comparison, the largest measured difference over its tolerance (capped at `_CAP`:
    a non-finite difference is recorded as the cap, strict JSON having no infinity).
    """

    points: int = 0
    lines: list[str] = field(default_factory=list)
    findings: int = 0
    seconds: float = 0.0
    seeding_seconds: float = 0.0
    worst: dict[str, float] = field(default_factory=dict)
    noise: NoiseLedger = field(default_factory=NoiseLedger)
    #: Whether the seeding check has run (a resumed run does not build the throwaway instances again).
    seeded: bool = False

    def find(self, line: str) -> None:
        """Record one finding (the first `AUDIT_LINES` are kept in full)."""
        self.findings += 1
        if len(self.lines) < AUDIT_LINES:
            self.lines.append(line)

    def measure(self, name: str, ratio: float) -> bool:
        """Keep the margin of one comparison; True when it is within its tolerance."""
        kept = ratio if math.isfinite(ratio) else _CAP
        self.worst[name] = min(max(self.worst.get(name, 0.0), kept), _CAP)
        return ratio <= 1.0

    def record(self) -> AuditRecord:
        """The result's record of it."""
        return AuditRecord(
            points=self.points,
            failed=list(self.lines),
            seconds=self.seconds,
            seeding_seconds=self.seeding_seconds,
            findings=self.findings,
            worst={k: float(f"{v:.3g}") for k, v in sorted(self.worst.items())},
        )


_CAP = 1e9


@dataclass(frozen=True)
class _Pending:
    """An audited step read, waiting for its replay."""

    step: int
    where: str
    rows: Array
    eps: Array
    before: Snapshot
    after: Snapshot
    loss: float


class Auditor:
    """Audits one run as the training loop (`training.loop.train`) goes; see the module docstring.

    Args:
        backend: the backend being trained (in this process).
        x, y: the run's training data (the replays take their batches from it).
        seed: the run's seed (the audit's plan derives from it, and the seeding check builds instances with
            it and with seed + 1).
        plan: which steps to audit.
        tolerances: the tolerances.
        state: what a checkpoint kept of the audit (a resumed run); None for a new run.
    """

    def __init__(
        self,
        backend: Backend,
        x: Array,
        y: Array,
        seed: int,
        plan: AuditPlan = AuditPlan(),
        tolerances: AuditTolerances = AUDIT_TOLERANCES,
        state: AuditState | None = None,
    ) -> None:
        self.backend, self.spec = backend, backend.spec
        self.x, self.y, self.seed = x, y, seed
        self.plan, self.tol = plan, tolerances
        self.state = state if state is not None else AuditState()
        self.per_epoch = math.ceil(len(x) / self.spec.batch_size)
        self._tracked = set(plan.tracked(seed, len(x)))
        self._steps: set[int] = set()
        #: The state after the last audited step, kept while the next step is audited too (to see a change
        #: outside train_step: at a new epoch's set_order, or an evaluation).
        self._after: tuple[int, Snapshot] | None = None
        #: What the run's first step must draw (None: not declared) and the first ε of seed + 1, until then.
        self._first_noise: tuple[Array | None, Array] | None = None
        self._unauditable = False
        self._scratch = Scratch()
        self._pending: list[_Pending] = []  # steps read, to be replayed at the next flush

    # -- the plan ----------------------------------------------------------------------------------------
    def start_epoch(self, epoch: int, order: Array) -> None:
        """Plan `epoch`, whose order is `order` (at its first step, or where a resumed run re-enters it)."""
        offset = epoch * self.per_epoch
        self._steps = {offset + i for i in self.plan.steps(self.seed, epoch, order, self.spec.batch_size)}

    def wants(self, step: int) -> bool:
        """Whether the run's `step` (0-based) is audited: the loop then calls `audit_step` instead of train_step."""
        return not self._unauditable and step in self._steps

    # -- one step ----------------------------------------------------------------------------------------
    def audit_step(self, step: int, order: Array) -> tuple[float, float]:
        """Take the run's `step` as the backend does, reading it before and after; returns (the step's own
        seconds, its loss).

        The step's seconds (its `train_step` through the `take_loss` that waits for it) are training time;
        the rest is the audit's (`AuditState.seconds`). Here the auditor only reads: the replay waits for
        `flush` — at the next evaluation, or after the epoch's last step — so that its float64 work (tens of
        megabytes through the caches, BLAS threads) does not slow the timed steps that follow.
        """
        t_start = time.perf_counter()
        b, index, epoch = self.spec.batch_size, step % self.per_epoch, step // self.per_epoch
        rows = np.asarray(order[index * b : (index + 1) * b], np.int64)
        where = f"step {step} (epoch {epoch + 1}, batch {index + 1} of {self.per_epoch}, {len(rows)} examples)"
        before = self._read(Snapshot.of, where)
        if before is not None and self._after is not None and self._after[0] == step:
            changed = before.same_as(self._after[1])
            if changed:
                self.state.find(
                    f"{where}: {', '.join(changed[:3])} changed since the step before without a training step "
                    "(between them only set_order, evaluations and checkpoints)"
                )
        self._after = None
        t0 = time.perf_counter()
        self.backend.train_step(index)
        loss = self.backend.take_loss()  # this step's alone: the loop closed its timed chunk before
        step_s = time.perf_counter() - t0
        eps = self._read(lambda backend: np.asarray(backend.last_train_noise(), np.float32), where)
        after = self._read(Snapshot.of, where) if eps is not None else None
        if before is not None and after is not None and eps is not None:
            want = (self.spec.kl_samples, len(rows), self.spec.latent_dim)
            if eps.shape != want:
                self.state.find(f"{where}: ε has shape {eps.shape}, the batch needs {want}")
            else:
                self._pending.append(_Pending(step, where, rows, eps, before, after, loss))
                self._noise(where, epoch, index, rows, eps)
                self._after = (step + 1, after)
            self.state.points += 1
        self.state.seconds += time.perf_counter() - t_start - step_s
        if index == self.per_epoch - 1:
            # The clock stays stopped until the next epoch's first step, audited too: replay here, so that
            # what waits for a flush is one epoch's few steps (20 MB each) whatever the evaluation interval.
            self.flush()
        return step_s, loss

    def _read(self, read: Any, where: str) -> Any:
        try:
            return read(self.backend)
        except NotImplementedError as exc:
            self.state.find(f"{where}: the step cannot be audited: {exc}")
            self._unauditable = True  # it will not get better: the remaining steps train unaudited
            return None

    def flush(self) -> None:
        """Replay the steps read since the last flush and compare them with the reference (at an evaluation,
        and at the end: the loop's clock is stopped there anyway)."""
        t0 = time.perf_counter()
        pending, self._pending = self._pending, []
        for p in pending:
            self._compare(p)
        self.state.seconds += time.perf_counter() - t0

    def _compare(self, p: _Pending) -> None:
        try:
            got = replay_step(
                p.before, p.after, self.x[p.rows], self.y[p.rows], p.eps, p.loss, self.spec, self._scratch
            )
        except KeyError as exc:
            self.state.find(f"{p.where}: adam_state() lacks {exc}: the step cannot be replayed")
            return
        if got.iterations != (p.step, p.step + 1):
            self.state.find(
                f"{p.where}: Adam's step count went from {got.iterations[0]} to {got.iterations[1]}; the run had "
                f"taken {p.step} steps before it"
            )
        for name, (measured, tolerance, what) in _measures(got, self.tol).items():
            if not self.state.measure(name, measured / tolerance if tolerance > 0 else math.inf):
                self.state.find(f"{p.where}: {what}: {measured:.3g} > {tolerance:.3g}")

    def _noise(self, where: str, epoch: int, index: int, rows: Array, eps: Array) -> None:
        ledger = self.state.noise
        ledger.add(eps)
        keyed = [(f"example {int(r)}", eps[:, j, :]) for j, r in enumerate(rows) if int(r) in self._tracked]
        if index == self.per_epoch - 1:
            keyed.append(("the last batch", eps))
        if index == 0:
            keyed.append(("the first batch", eps))
        for key, values in keyed:
            for repeat in ledger.compare(key, values, epoch, self.tol.same_cosine):
                self.state.find(
                    f"{where}: the ε of {key} repeats epoch {repeat.earlier_epoch + 1}'s (cosine "
                    f"{repeat.cosine:.4f}): the noise is not drawn afresh each epoch"
                )

    # -- the seeds -------------------------------------------------------------------------------------
    def check_seeding(self, initial: WeightMap) -> None:
        """Initialisation and noise against the seed: two throwaway instances, with the run's seed and seed + 1.

        The same seed must give the same initial weights; seed + 1 other weights, Glorot-uniform pooled with
        the run's. For the noise the backend says what the first step of a fresh instance draws with either
        seed (`Backend.first_train_noise`): `check_first_noise` holds the run's own first step to the first,
        and the two must differ. A backend without that hook has the seed + 1 instance take one step instead
        (a compilation, for a compiled backend). Call it before training, with the weights the backend was
        built with.
        """
        t0 = time.perf_counter()
        b, other_seed = self.backend, self.seed + 1
        n = min(len(self.x), self.spec.batch_size)
        try:
            twin = type(b)(b.spec, self.seed, b.device, b.mode)
            same_seed = dict(twin.get_weights())
            del twin
            other = type(b)(b.spec, other_seed, b.device, b.mode)
        except Exception as exc:  # whatever a plugin raises, the check says it could not be run
            self.state.find(f"seeding: a second instance of the backend could not be built ({exc!r})")
        else:
            changed = [k for k in initial if not np.array_equal(same_seed[k], initial[k])]
            if changed:
                self.state.find(
                    f"seeding: a second instance with seed {self.seed} has other initial {', '.join(changed[:3])}: "
                    "initialisation does not follow the seed alone"
                )
            init = check_initialisation([initial, dict(other.get_weights())], b.spec, backend=b.name)
            for line in init.differences:
                self.state.find(f"seeding: initial weights of seeds {self.seed} and {other_seed}: {line}")
            try:
                declared = np.asarray(b.first_train_noise(self.seed, n), np.float32)
                self._first_noise = (declared, np.asarray(b.first_train_noise(other_seed, n), np.float32))
            except NotImplementedError:
                theirs = self._first_draw(other, n)
                self._first_noise = (None, theirs) if theirs is not None else None
            del other
        self.state.seeded = True
        self.state.seeding_seconds = time.perf_counter() - t0
        self.state.seconds += self.state.seeding_seconds

    def _first_draw(self, instance: Backend, n: int) -> Array | None:
        instance.load_train_data(self.x[:n], self.y[:n])
        instance.set_order(np.arange(n))
        instance.train_step(0)
        instance.take_loss()
        try:
            return np.asarray(instance.last_train_noise(), np.float32)
        except NotImplementedError as exc:
            self.state.find(f"seeding: the noise cannot be checked: {exc}")
            return None

    def check_first_noise(self) -> None:
        """After the run's first step: its ε is what `first_train_noise` declared for the run's seed (where the
        backend has that hook), and not the first ε of seed + 1."""
        if self._first_noise is None:
            return
        t0 = time.perf_counter()
        (declared, theirs), self._first_noise = self._first_noise, None
        try:
            mine = np.asarray(self.backend.last_train_noise(), np.float32)
        except NotImplementedError:
            return  # the audited steps say so
        finally:
            self.state.seeding_seconds += time.perf_counter() - t0
            self.state.seconds += time.perf_counter() - t0
        if declared is not None and (mine.shape != declared.shape or not np.allclose(mine, declared, 0.0, 1e-6)):
            self.state.find(
                f"seeding: the run's first training ε is not what first_train_noise({self.seed}) says an instance "
                "built with that seed draws first: the noise does not follow the seed as declared"
            )
        if mine.shape != theirs.shape:
            return
        a, c = mine.astype(np.float64).ravel(), theirs.astype(np.float64).ravel()
        norm = float(np.linalg.norm(a) * np.linalg.norm(c))
        cosine = float(a @ c) / norm if norm > 0 else 1.0
        z = float(a @ c) / math.sqrt(a.size)
        self.state.measure("seeding noise z", abs(z) / self.tol.noise_z)
        seeds = f"seeds {self.seed} and {self.seed + 1}"
        if cosine >= self.tol.same_cosine:
            self.state.find(
                f"seeding: {seeds} drew the same first training ε (cosine {cosine:.4f}): the noise ignores the seed"
            )
        elif abs(z) > self.tol.noise_z:
            self.state.find(f"seeding: the first training ε of {seeds} correlate (z = {z:.3g})")

    # -- the end -----------------------------------------------------------------------------------------
    def finish(self) -> AuditRecord:
        """Replay what is left, test the distribution of every ε read over the run, and return the record."""
        self.flush()
        for what, z in self.state.noise.z_scores().items():
            if not self.state.measure("noise z", abs(z) / self.tol.noise_z):
                self.state.find(f"the training ε read over the run: |z| of {what} = {abs(z):.3g} > {self.tol.noise_z}")
        return self.state.record()
