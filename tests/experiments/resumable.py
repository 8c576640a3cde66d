"""Deterministic CPU training for the preemption tests: a small MLP with dropout (so the RNG
must be restored), `delay_s` per step to leave time for interruptions."""
import time

import torch
from sacred import Experiment

import ptslurm as pt

ex = Experiment("resumable")


class Net(pt.Model):
    def __init__(self, hidden=16, dropout=0.2, delay_s=0.0):
        super().__init__()
        self.delay_s = delay_s
        self.net = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Dropout(dropout),
                                       torch.nn.Linear(hidden, 1))

    def forward(self, batch):
        return self.net(batch[0]).squeeze(-1)

    def review(self, batch, output):
        if self.delay_s:
            time.sleep(self.delay_s)
        return {"loss": torch.nn.functional.mse_loss(output, batch[1])}


@ex.config
def config():
    trainer = {
        "factory": pt.Trainer,
        "storage_dir": None,
        "model": {"factory": Net},
        "stop_trigger": (120, "iteration"),
        "checkpoint_trigger": (10, "iteration"),
        "summary_trigger": (10, "iteration"),
    }
    crash = False
    pt.Trainer.get_config(trainer)


@ex.automain
def main(trainer, crash, _config):
    if crash:
        raise RuntimeError("crashing at start-up on purpose")
    trainer = pt.Trainer.from_config(trainer)
    pt.dump_config(_config, trainer.storage_dir / "config.json")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=g)
    data = pt.Batches((x, x.sum(-1).sin()), batch_size=8, seed=0)
    trainer.train(data)
    return trainer.iteration
