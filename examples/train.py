"""The seed document's example, written the same way, on ptslurm's Configurable, Trainer and
Model, with the seed's traps fixed (see ../README.md). Run it directly or as a sweep:

    python examples/train.py print_config
    ptslurm sweep examples/train.py with 'trainer.optimizer.lr=[1e-3,1e-2]'

A preempted or requeued point resumes from ckpt_latest.pth in its own storage dir.
"""
from pathlib import Path

import torch
from sacred import Experiment
from sacred.commands import print_config
from sacred.observers import FileStorageObserver

import ptslurm as pt

# Define the experiment. Experiment is the main class for managing experiments.
ex = Experiment("my-experiment-name")


class MyModel(pt.Model):
    """A small MLP regressor (dropout included, so resuming must restore the RNG)."""

    def __init__(self, num_layers=2, hidden=32, in_features=8, dropout=0.1):
        super().__init__()
        layers, width = [], in_features
        for _ in range(num_layers):
            layers += [torch.nn.Linear(width, hidden), torch.nn.ReLU(), torch.nn.Dropout(dropout)]
            width = hidden
        self.net = torch.nn.Sequential(*layers, torch.nn.Linear(width, 1))

    def forward(self, batch):
        x, _ = batch
        return self.net(x).squeeze(-1)

    def review(self, batch, output):
        _, y = batch
        return {"loss": torch.nn.functional.mse_loss(output, y)}


def make_data(n, in_features, seed, task_seed=1234):
    """``n`` samples (drawn with ``seed``) of one regression task (its weights drawn with
    ``task_seed``): training and validation sets differ in samples, never in the target."""
    w = torch.randn(in_features, generator=torch.Generator().manual_seed(task_seed))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, in_features, generator=g)
    return x, torch.tanh(x @ w / 2) + 0.05 * torch.randn(n, generator=g)


@ex.config
def config():
    """The trainer config is filled with the defaults of the Configurable classes."""
    trainer = {
        "factory": pt.Trainer,
        "storage_dir": None,  # ptslurm injects the point's storage dir here
        "model": {"factory": MyModel},
        "stop_trigger": (300, "iteration"),
        "checkpoint_trigger": (25, "iteration"),
        "summary_trigger": (25, "iteration"),
    }
    data = {"n_train": 512, "n_valid": 128, "batch_size": 16, "seed": 0}
    if trainer["storage_dir"] is None:  # only when started without ptslurm (the seed had `not`)
        trainer["storage_dir"] = str(pt.get_new_storage_dir(ex.path))
    pt.Trainer.get_config(trainer)
    # the seed adds its own observer; under ptslurm it is replaced by ptslurm's on the same folder
    ex.observers.append(FileStorageObserver(Path(trainer["storage_dir"]) / "sacred"))


@ex.named_config
def deep():
    trainer = {"model": {"num_layers": 4}}


@ex.automain
def main(trainer, data, _config, _run):
    print_config(_run)
    trainer = pt.Trainer.from_config(trainer)
    # copies the read-only config first (the seed's pt.io.dump_config would raise here)
    pt.dump_config(_config, trainer.storage_dir / "config.json")
    in_features = _config["trainer"]["model"]["in_features"]
    train_set = pt.Batches(make_data(data["n_train"], in_features, data["seed"]), data["batch_size"],
                           seed=data["seed"])
    valid_set = pt.Batches(make_data(data["n_valid"], in_features, data["seed"] + 1), 64, shuffle=False)
    trainer.register_validation_hook(valid_set)
    trainer.train(train_set, resume=(trainer.storage_dir / "checkpoints").exists())
    return trainer.best_loss
