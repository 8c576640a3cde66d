"""A sacred experiment skeleton for ptslurm (written by `ptslurm init`).

    ptslurm sweep experiment.py with 'lr=[1e-3,1e-4]'

ptslurm injects each point's storage dir into ``storage_dir``; sacred's records land in
``<storage_dir>/sacred/<attempt>``.
"""
from pathlib import Path

from sacred import Experiment

ex = Experiment("experiment")


@ex.config
def config():
    lr = 1e-3
    epochs = 10
    storage_dir = None  # set by ptslurm for every point


@ex.automain
def main(lr, epochs, storage_dir, _run):
    storage_dir = Path(storage_dir or ".")
    for epoch in range(epochs):
        loss = 1.0 / (1 + epoch * lr * 100)  # replace with your training
        _run.log_scalar("loss", loss, epoch)
    (storage_dir / "result.txt").write_text(f"{loss}\n")
    return loss
