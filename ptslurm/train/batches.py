"""Data order and randomness that a resume rebuilds exactly: ``Batches`` (minibatches whose
order in any epoch follows from the seed and the epoch) and the RNG states of python, numpy,
torch and CUDA that a checkpoint holds.
"""
import math
import random
import sys

import torch


class Batches:
    """Minibatches of an in-memory dataset (a tensor or tuple of tensors), reshuffled every
    epoch from ``(seed, epoch)`` with a private generator, so the data order of any epoch can be
    rebuilt on resume. The trainer calls ``set_epoch``, and ``set_rank`` in a distributed
    point: each of ``world`` ranks then takes every ``world``-th example of the epoch's order
    (padded by repeating its start, as torch's DistributedSampler does, so every rank makes
    the same number of steps); ``batch_size`` is per rank."""

    def __init__(self, data, batch_size: int, shuffle: bool = True, seed: int = 0, drop_last: bool = False):
        self.data = data if isinstance(data, (tuple, list)) else (data,)
        self.n = len(self.data[0])
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.epoch = 0
        self.rank, self.world = 0, 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_rank(self, rank: int, world: int) -> None:
        self.rank, self.world = rank, world

    def _per_rank(self) -> int:
        return math.ceil(self.n / self.world)

    def __len__(self) -> int:
        n = self._per_rank()
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=g)
        else:
            order = torch.arange(self.n)
        if self.world > 1:
            total = self._per_rank() * self.world
            order = torch.cat([order, order[: total - self.n]])[self.rank::self.world]
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            yield tuple(d[idx] for d in self.data)


def rng_state() -> dict:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if "numpy" in sys.modules:  # plain values, so that torch.load(weights_only=True) reads it
        name, keys, pos, has_gauss, cached = sys.modules["numpy"].random.get_state()
        state["numpy"] = [name, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)]
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        import numpy

        name, keys, pos, has_gauss, cached = state["numpy"]
        numpy.random.set_state((name, numpy.asarray(keys, dtype=numpy.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])

