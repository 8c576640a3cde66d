"""A plain sacred training loop that saves its own checkpoint and never asks ptslurm anything
(the way padertorch's or Lightning's trainers behave): it resumes, padertorch-style, when its
checkpoints folder exists. The state is a running sum, so the result tells whether every step
ran exactly once."""
import json
import os
import time
from pathlib import Path

from sacred import Experiment

ex = Experiment("plainloop")


@ex.config
def config():
    storage_dir = None
    steps = 60
    delay_s = 0.5
    save_every = 5
    crash_at = -1  # raise once, in the first attempt, right after the checkpoint of this step


@ex.automain
def main(storage_dir, steps, delay_s, save_every, crash_at, _run):
    ckpt_dir = Path(storage_dir) / "checkpoints"
    ckpt = ckpt_dir / "state.json"
    resume = ckpt_dir.exists()
    state = json.loads(ckpt.read_text()) if resume and ckpt.exists() else {"step": 0, "total": 0}
    print(f"starting at step {state['step']}", flush=True)
    while state["step"] < steps:
        time.sleep(delay_s)
        state["step"] += 1
        state["total"] += state["step"]
        _run.log_scalar("total", state["total"], state["step"])
        if state["step"] % save_every == 0:
            ckpt_dir.mkdir(exist_ok=True)
            tmp = ckpt.with_suffix(".tmp")
            tmp.write_text(json.dumps(state))
            os.replace(tmp, ckpt)
        if state["step"] == crash_at and not resume:
            raise RuntimeError("crashing after progress, on purpose")
    return state["total"]
