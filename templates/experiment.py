"""A sacred experiment skeleton for ptslurm (written by `ptslurm init`): a training loop that
survives time limits and preemptions.

    ptslurm sweep experiment.py with 'lr=[1e-3,1e-4]'

ptslurm injects each point's storage dir into ``storage_dir``; sacred's records land in
``<storage_dir>/sacred/<attempt>``. The loop saves its state after every step (atomically:
a temp file, then ``os.replace``), resumes from it when the job starts again, and stops at
the step boundary when ``ptslurm.should_stop()`` says SLURM asked (time limit, preemption,
requeue): the attempt is recorded as stopped and the job requeued, and the next attempt picks
up where this one stopped. Reporting progress with its total lets ``ptslurm status`` show
how far along each point is (and tells ptslurm when the training is complete).
"""
import json
import os
from pathlib import Path

from sacred import Experiment

import ptslurm

ex = Experiment("experiment")


@ex.config
def config():
    lr = 1e-3
    epochs = 10
    storage_dir = None  # set by ptslurm for every point


@ex.automain
def main(lr, epochs, storage_dir, _run):
    storage_dir = Path(storage_dir or ".")
    checkpoint = storage_dir / "checkpoints" / "state.json"
    state = {"epoch": 0, "loss": None}
    if checkpoint.exists():  # a requeued or resubmitted point: resume
        state = json.loads(checkpoint.read_text())
        print(f"resuming from epoch {state['epoch']}")
    while state["epoch"] < epochs:
        if ptslurm.should_stop():  # SLURM asked: the checkpoint is current, stop here
            return state["loss"]
        state["loss"] = 1.0 / (1 + state["epoch"] * lr * 100)  # replace with your training
        state["epoch"] += 1
        _run.log_scalar("loss", state["loss"], state["epoch"])
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        tmp = checkpoint.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, checkpoint)
        ptslurm.report_progress(state["epoch"], epoch=state["epoch"], total={"epoch": epochs})
    (storage_dir / "result.txt").write_text(f"{state['loss']}\n")
    return state["loss"]
