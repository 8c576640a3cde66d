"""Known learning curves that cross, for successive halving: a point's loss falls towards
``floor + 0.3 * speed`` (fast learners settle higher), after ``lag`` slow steps. A plain loop
that saves its own checkpoint (``checkpoints/state.json``, the parameter as an exact float)
after every step and resumes from it, padertorch-style, when the checkpoints folder exists;
it never asks ptslurm anything. Each attempt records the steps it ran (``steps_run``)."""
import json
import os
import random
import time
from pathlib import Path

from sacred import Experiment

ex = Experiment("curves")


@ex.config
def config():
    storage_dir = None
    steps = 2
    speed = 0.4
    floor = 0.0
    lag = 0
    delay_s = 0.0


@ex.automain
def main(storage_dir, steps, speed, floor, lag, delay_s, _run):
    ckpt = Path(storage_dir) / "checkpoints" / "state.json"
    state = json.loads(ckpt.read_text()) if ckpt.parent.exists() and ckpt.exists() else {"step": 0, "w": 1.0}
    start = state["step"]
    loss = None
    while state["step"] < steps:
        time.sleep(delay_s)
        t = state["step"]
        rng = random.Random(f"{speed}:{floor}:{lag}:{t}")  # the noise of this step, whichever attempt runs it
        rate = speed if t >= lag else speed * 0.1
        state["w"] = state["w"] * (1 - rate) + 0.002 * rng.gauss(0, 1)
        state["step"] = t + 1
        loss = floor + 0.3 * speed + state["w"] ** 2
        state["loss"] = loss
        _run.log_scalar("loss", loss, t + 1)
        ckpt.parent.mkdir(exist_ok=True)
        tmp = ckpt.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, ckpt)
    _run.info["steps_run"] = state["step"] - start
    return state.get("loss", loss)
