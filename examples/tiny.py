"""A tiny CPU regression experiment that finishes in seconds (no torch needed).

    ptslurm sweep examples/tiny.py with 'lr=[0.05,0.1]' 'batch_size=[4,8]'

Fits y = 3x - 1 by minibatch SGD on data it generates itself and reports the loss as a
sacred metric. ``fail=True`` makes it raise, for trying out failure handling.
"""
import json
import random
from pathlib import Path

from sacred import Experiment

import ptslurm

ex = Experiment("tiny")


@ex.config
def config():
    lr = 0.1
    batch_size = 8
    steps = 200
    n_samples = 256
    fail = False
    storage_dir = None  # ptslurm injects each point's storage dir here


@ex.named_config
def long():
    steps = 1000


@ex.automain
def main(lr, batch_size, steps, n_samples, fail, storage_dir, _run, _seed):
    if fail:
        raise RuntimeError("tiny: failing on purpose (fail=True)")
    rng = random.Random(_seed)
    xs = [rng.uniform(-1, 1) for _ in range(n_samples)]
    data = [(x, 3 * x - 1 + rng.gauss(0, 0.1)) for x in xs]
    w = b = 0.0
    loss = float("nan")
    for step in range(1, steps + 1):
        batch = rng.sample(data, batch_size)
        gw = sum(2 * (w * x + b - y) * x for x, y in batch) / batch_size
        gb = sum(2 * (w * x + b - y) for x, y in batch) / batch_size
        w, b = w - lr * gw, b - lr * gb
        if step % 20 == 0 or step == steps:
            loss = sum((w * x + b - y) ** 2 for x, y in data) / len(data)
            _run.log_scalar("loss", loss, step)
    storage_dir = Path(storage_dir or ptslurm.get_storage_dir() or ".")
    (storage_dir / "model.json").write_text(json.dumps({"w": w, "b": b}))
    print(f"final loss {loss:.5f} (w={w:.3f}, b={b:.3f})")
    return loss
