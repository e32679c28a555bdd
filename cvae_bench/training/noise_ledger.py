"""The training ε the run-time audit reads: its distribution, and the same examples' and batches' ε across epochs.

A run draws hundreds of thousands of ε; the audit reads a few steps' worth per epoch. It keeps sufficient
statistics of all of them (so that the distribution can be tested at the end of the run) and, for a few keys
that recur every epoch — a tracked example, the first and the last batch of an epoch — the first and the
latest draw, so that a draw that repeats an earlier epoch's is seen. All of it is a `Record`, so a
checkpoint carries it and `run --resume` goes on with the same ledger.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from cvae_bench.core.records import Record

#: P(|ε| > 2) for a standard normal.
_P_TAIL = math.erfc(2.0 / math.sqrt(2.0))


@dataclass(frozen=True)
class Repeat:
    """A draw that looks like an earlier epoch's draw of the same key."""

    key: str
    epoch: int
    earlier_epoch: int
    cosine: float


@dataclass
class NoiseLedger(Record):
    """Sufficient statistics of every ε the audit read, and the draws it compares across epochs.

    Mutable (the audit adds to it step by step); a `Record` for checkpoints (float32 draws are exact in JSON).
    """

    first: dict[str, list[float]] = field(default_factory=dict)
    first_epoch: dict[str, int] = field(default_factory=dict)
    last: dict[str, list[float]] = field(default_factory=dict)
    last_epoch: dict[str, int] = field(default_factory=dict)
    #: Σ a·b over every element of every pair compared across epochs, and the number of products.
    cross_dot: float = 0.0
    cross_count: int = 0
    count: int = 0
    sum1: float = 0.0
    sum2: float = 0.0
    sum4: float = 0.0
    tail: int = 0
    #: Σ ε_a·ε_b over elements for each pair a < b of KL samples, and of latent dimensions.
    sample_dot: list[float] = field(default_factory=list)
    sample_count: int = 0
    latent_dot: list[float] = field(default_factory=list)
    latent_count: int = 0

    def add(self, eps: NDArray[np.floating]) -> None:
        """Count one step's ε (kl_samples, batch, latent) into the distribution's statistics."""
        e = np.asarray(eps, np.float64)
        flat = e.ravel()
        self.count += flat.size
        self.sum1 += float(flat.sum())
        self.sum2 += float(np.sum(flat**2))
        self.sum4 += float(np.sum(flat**4))
        self.tail += int(np.sum(np.abs(flat) > 2.0))
        samples = e.reshape(e.shape[0], -1)
        dots = [float(samples[a] @ samples[b]) for a, b in itertools.combinations(range(len(samples)), 2)]
        self.sample_dot = [x + d for x, d in itertools.zip_longest(self.sample_dot, dots, fillvalue=0.0)]
        self.sample_count += samples.shape[1]
        lat = e.reshape(-1, e.shape[-1])
        dots = [float(lat[:, a] @ lat[:, b]) for a, b in itertools.combinations(range(lat.shape[1]), 2)]
        self.latent_dot = [x + d for x, d in itertools.zip_longest(self.latent_dot, dots, fillvalue=0.0)]
        self.latent_count += len(lat)

    def compare(self, key: str, eps: NDArray[np.floating], epoch: int, same_cosine: float) -> list[Repeat]:
        """Compare a draw of `key` with the first and the latest draws of it in earlier epochs, then keep it.

        Every element pair counts into the pooled cross-epoch correlation (`z_scores`); a draw whose cosine
        with an earlier one reaches `same_cosine` is returned as a repeat (independent draws of 10 or more
        standard normals reach 0.99 with a probability below 1e-8).
        """
        values = np.asarray(eps, np.float64).ravel()
        repeats = []
        earlier = [(self.first.get(key), self.first_epoch.get(key)), (self.last.get(key), self.last_epoch.get(key))]
        compared: set[int] = set()
        for old, old_epoch in earlier:
            if old is None or old_epoch is None or old_epoch >= epoch or old_epoch in compared:
                continue
            compared.add(old_epoch)
            a = np.asarray(old, np.float64)
            if a.shape != values.shape:
                continue
            self.cross_dot += float(a @ values)
            self.cross_count += values.size
            norm = float(np.linalg.norm(a) * np.linalg.norm(values))
            cosine = float(a @ values) / norm if norm > 0 else 1.0
            if cosine >= same_cosine:
                repeats.append(Repeat(key, epoch, old_epoch, cosine))
        if key not in self.first:
            self.first[key], self.first_epoch[key] = values.tolist(), epoch
        self.last[key], self.last_epoch[key] = values.tolist(), epoch
        return repeats

    def z_scores(self) -> dict[str, float]:
        """z-scores of the statistics under 'independent standard normal' (≈ N(0, 1) for a correct backend)."""
        z: dict[str, float] = {}
        n = self.count
        if n:
            z["mean"] = self.sum1 / math.sqrt(n)
            z["variance − 1"] = (self.sum2 / n - 1.0) / math.sqrt(2.0 / n)
            z["fourth moment − 3"] = (self.sum4 / n - 3.0) / math.sqrt(96.0 / n)
            z["share of |ε| > 2"] = (self.tail / n - _P_TAIL) / math.sqrt(_P_TAIL * (1 - _P_TAIL) / n)
        if self.sample_count and self.sample_dot:
            z["corr(KL samples)"] = max((d / math.sqrt(self.sample_count) for d in self.sample_dot), key=abs)
        if self.latent_count and self.latent_dot:
            z["corr(latent dimensions)"] = max((d / math.sqrt(self.latent_count) for d in self.latent_dot), key=abs)
        if self.cross_count:
            z["corr(the same example or batch across epochs)"] = self.cross_dot / math.sqrt(self.cross_count)
        return z
