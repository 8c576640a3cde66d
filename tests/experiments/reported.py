"""A small training loop as researchers write it, for the report's test: a loss that falls
at the speed of ``lr``, its state saved every few steps to a relative ``checkpoints/`` and
resumed from there, a ``\r`` progress line, and a learning rate too high to train at all
(it raises before its first step, as a NaN check would)."""
import json
import os
import time

from sacred import Experiment

ex = Experiment("reported")


@ex.config
def config():
    lr = 0.1
    steps = 40
    delay_s = 0.25


@ex.automain
def main(lr, steps, delay_s, _run):
    state = {"step": 0, "loss": 1.0}
    if os.path.exists("checkpoints/state.json"):
        with open("checkpoints/state.json") as fh:
            state = json.load(fh)
    if lr > 0.5:
        raise FloatingPointError(f"loss is nan at step {state['step']}: lr={lr} diverged")
    while state["step"] < steps:
        time.sleep(delay_s)
        state["step"] += 1
        state["loss"] *= 1 - lr
        _run.log_scalar("loss", state["loss"], state["step"])
        _run.log_scalar("accuracy", 1 - state["loss"] / 2, state["step"])
        print(f"\rstep {state['step']}/{steps} loss {state['loss']:.4f}", end="", flush=True)
        if state["step"] % 4 == 0:
            os.makedirs("checkpoints", exist_ok=True)
            with open("checkpoints/state.tmp", "w") as fh:
                json.dump(state, fh)
            os.replace("checkpoints/state.tmp", "checkpoints/state.json")
    print()
    return state["loss"]
