"""A distributed point for the tests: ptslurm's Trainer with DistributedDataParallel on CPU
(gloo), a small MLP with dropout, ``delay_s`` per step to leave time for interruptions. Each
rank writes what it saw of its environment to ``ranks/<rank>.json`` in the storage dir."""
import json
import os

import torch
from sacred import Experiment

import ptslurm as pt
from resumable import Net  # noqa: F401 - the same model as the single-rank preemption tests

torch.set_num_threads(1)
ex = Experiment("ddp")


@ex.config
def config():
    trainer = {
        "factory": pt.Trainer,
        "storage_dir": None,
        "model": {"factory": Net},
        "stop_trigger": (60, "iteration"),
        "checkpoint_trigger": (10, "iteration"),
        "summary_trigger": (10, "iteration"),
    }
    pt.Trainer.get_config(trainer)


@ex.automain
def main(trainer):
    d = pt.distributed()
    trainer = pt.Trainer.from_config(trainer)
    seen = {"rank": d.rank, "world_size": d.world_size, "local_rank": d.local_rank,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "master": [d.master_addr, d.master_port]}
    (trainer.storage_dir / "ranks").mkdir(exist_ok=True)
    (trainer.storage_dir / "ranks" / f"{d.rank}.pid").write_text(str(os.getpid()))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=g)
    data = pt.Batches((x, x.sum(-1).sin()), batch_size=8, seed=0)
    trainer.train(data)
    seen["LOCAL_RANK"] = os.environ.get("LOCAL_RANK")
    (trainer.storage_dir / "ranks" / f"{d.rank}.json").write_text(json.dumps(seen))
    return trainer.iteration
