"""Which molecules the next batch holds, as a function of the saved position alone, so that a resumed
run sees exactly the batches the uninterrupted run would have seen.

Without a plan, epoch ``e`` visits the data in the order of a permutation seeded by ``(seed, e)``, and
the position follows from the number of molecules seen (a run resumed with another batch size carries
on from where the last one stopped). A dataset with ``plan(epoch, seed, batch_size)`` gives each
epoch's global batches itself; the position is then (epoch, batch in the epoch). Under DDP rank ``r``
takes its share of each global batch.
"""
from __future__ import annotations

from typing import Any

import numpy as np


class DataOrder:
    """The batches of ``dataset`` for one process (``rank`` of ``world``) at per-process ``batch_size``."""

    def __init__(self, dataset: Any, batch_size: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.dataset, self.batch_size, self.seed, self.rank, self.world = dataset, batch_size, seed, rank, world
        self._perm_epoch, self._perm = -1, np.empty(0, dtype=np.int64)
        self._plan_key: tuple[int, int] | None = None
        self._plan: list[np.ndarray] = []
        #: after :meth:`next` on a planned dataset: (epoch, next batch index, molecules in the global batch)
        self.position: tuple[int, int, int] | None = None

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world

    def batches_per_epoch(self) -> int:
        return max(len(self.dataset) // self.global_batch, 1)

    def next(self, state: Any) -> np.ndarray:
        """This rank's share of the next global batch, from ``state`` (``samples`` seen, and for a
        planned dataset ``epoch``, ``batch_index``, ``plan_batch_size``)."""
        if hasattr(self.dataset, "plan"):
            return self._next_planned(state)
        b = self.batch_size
        per_epoch = self.batches_per_epoch() * self.global_batch  # the tail that fills no batch is skipped
        epoch, offset = divmod(max(state.samples, 0), per_epoch)
        if offset + self.global_batch > per_epoch:  # after a batch-size change: start the next epoch
            epoch, offset = epoch + 1, 0
        if self._perm_epoch != epoch:  # one permutation per epoch, cached
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.dataset))
            self._perm_epoch = epoch
        start = offset + self.rank * b
        self.position = None
        return self._perm[start:start + b]

    def _epoch_plan(self, epoch: int) -> list[np.ndarray]:
        key = (epoch, self.global_batch)
        if self._plan_key != key:
            plan = [np.asarray(b, dtype=np.int64) for b in self.dataset.plan(epoch, self.seed, self.global_batch)]
            if not plan or any(len(b) < self.world for b in plan):
                raise ValueError(f"the dataset's plan for epoch {epoch} is empty or has a batch smaller than "
                                 f"the {self.world} process(es)")
            self._plan_key, self._plan = key, plan
        return self._plan

    def _next_planned(self, st: Any) -> np.ndarray:
        epoch, index = st.epoch, st.batch_index
        if st.plan_batch_size == 0 and st.samples > 0:  # a state from a run without a plan
            epoch, index = -(-st.samples // max(len(self.dataset), 1)), 0
        elif st.plan_batch_size not in (0, self.global_batch) and index > 0:  # batch size changed: next epoch
            epoch, index = epoch + 1, 0
        plan = self._epoch_plan(epoch)
        if index >= len(plan):
            epoch, index = epoch + 1, 0
            plan = self._epoch_plan(epoch)
        batch = plan[index]
        self.position = (epoch, index + 1, len(batch))
        return batch[self.rank::self.world]


def fixed_subset(n_total: int, n: int | None) -> np.ndarray:
    """Indices of a fixed random subset of ``n`` of ``n_total`` items (seed 0, in their original order),
    the same in every run and on resume; all of them when ``n`` is None or not smaller."""
    if n is None or n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(0).choice(n_total, n, replace=False))
