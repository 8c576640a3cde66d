"""Records what the job saw: CUDA_VISIBLE_DEVICES, SLURM ids, the storage dir."""
import json
import os
import time

from sacred import Experiment

import ptslurm

ex = Experiment("probe")


@ex.config
def config():
    x = 0
    inverse = 1 / (x + 1)  # fails for x=-1: a config scope that raises
    fail = False
    fail_if_exists = ""  # fails while this file exists (a failure that can be fixed)
    hold_while_exists = ""  # keeps running while this file exists
    exit_delay_s = 0  # the process lingers this long after the run ended (as a wandb or DataLoader shutdown)
    storage_dir = None


@ex.automain
def main(x, fail, fail_if_exists, hold_while_exists, exit_delay_s, storage_dir, _run):
    if exit_delay_s:
        import atexit

        atexit.register(time.sleep, exit_delay_s)
    seen = {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", "SLURM_ARRAY_TASK_ID",
                                           "SLURM_ARRAY_JOB_ID", "SLURM_STEP_ID")}
    seen["storage_dir"] = storage_dir
    seen["env_storage_dir"] = str(ptslurm.get_storage_dir())
    with open(os.path.join(storage_dir, "seen.json"), "w") as fh:
        json.dump(seen, fh)
    if fail or (fail_if_exists and os.path.exists(fail_if_exists)):
        raise ValueError("probe failing on purpose")
    for step in range(600):
        if not (hold_while_exists and os.path.exists(hold_while_exists)):
            break
        _run.log_scalar("held", step, step)
        time.sleep(0.5)
    _run.log_scalar("score", x * 0.5, 1)
    _run.log_scalar("score", x * 1.0, 2)
    return x
