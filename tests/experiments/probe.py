"""Records what the job saw: CUDA_VISIBLE_DEVICES, SLURM ids, the storage dir."""
import json
import os

from sacred import Experiment

import ptslurm

ex = Experiment("probe")


@ex.config
def config():
    x = 0
    inverse = 1 / (x + 1)  # fails for x=-1: a config scope that raises
    fail = False
    storage_dir = None


@ex.automain
def main(x, fail, storage_dir, _run):
    seen = {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", "SLURM_ARRAY_TASK_ID",
                                           "SLURM_ARRAY_JOB_ID", "SLURM_STEP_ID")}
    seen["storage_dir"] = storage_dir
    seen["env_storage_dir"] = str(ptslurm.get_storage_dir())
    with open(os.path.join(storage_dir, "seen.json"), "w") as fh:
        json.dump(seen, fh)
    if fail:
        raise ValueError("probe failing on purpose")
    return x
