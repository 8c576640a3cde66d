"""A plain loop as research code is written: its checkpoint a file in its working directory,
``return`` (not raise) when ``ptslurm.should_stop()`` says so, a ``\\r`` progress line, a slow
import. For the stop tests it can hold at one moment of its first attempt: while
``$MOMENTS_DIR/hold`` exists it waits there, after touching ``$MOMENTS_DIR/reached-<moment>``.
Moments: ``import`` (the point whose index is ``$MOMENTS_IMPORT_POINT``), ``setup`` (sacred's
pre-run hook: the run is started, main not yet), ``main`` (between steps), ``checkpoint`` (in
the middle of writing it), ``after`` (sacred's post-run hook: main has returned)."""
import json
import os
import time

from sacred import Experiment

import ptslurm

HOLD_DIR = os.environ.get("MOMENTS_DIR", "")


def hold(moment):
    if not HOLD_DIR:
        return
    reached = os.path.join(HOLD_DIR, f"reached-{moment}")
    if os.path.exists(reached):  # the first attempt only
        return
    open(reached, "w").close()
    for _ in range(900):
        if not os.path.exists(os.path.join(HOLD_DIR, "hold")):
            break
        time.sleep(0.1)


if os.environ.get("PTSLURM_POINT") and os.environ.get("PTSLURM_POINT") == os.environ.get("MOMENTS_IMPORT_POINT"):
    hold("import")  # as a slow `import torch, padertorch` under load

ex = Experiment("moments")


@ex.config
def config():
    moment = "none"
    steps = 20
    delay_s = 0.05


@ex.pre_run_hook
def setup(moment):
    if moment == "setup":
        hold("setup")


@ex.post_run_hook
def teardown(moment):
    if moment == "after":
        hold("after")


@ex.automain
def main(moment, steps, delay_s):
    state = {"step": 0, "total": 0}
    if os.path.exists("checkpoint.json"):
        with open("checkpoint.json") as fh:
            state = json.load(fh)
    print(f"starting at step {state['step']}", flush=True)
    while state["step"] < steps:
        if ptslurm.should_stop():
            print(f"\nstop requested at step {state['step']}: checkpoint saved", flush=True)
            return state["total"]
        time.sleep(delay_s)
        state["step"] += 1
        state["total"] += state["step"]
        print(f"\rstep {state['step']}/{steps}", end="", flush=True)
        if moment == "main" and state["step"] == steps // 2:
            hold("main")
        with open("checkpoint.json.tmp", "w") as fh:
            json.dump(state, fh)
            fh.flush()
            if moment == "checkpoint" and state["step"] == steps // 2:
                hold("checkpoint")
        os.replace("checkpoint.json.tmp", "checkpoint.json")
    print(flush=True)
    return state["total"]
