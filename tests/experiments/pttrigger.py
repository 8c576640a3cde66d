"""padertorch's config shape without padertorch: ``trainer.stop_trigger=(N, 'iteration')``
and ``trainer.storage_dir``; a torch model saved as ``checkpoints/ckpt_<iteration>.pth`` with
a ``ckpt_latest.pth`` link, resumed when the checkpoints folder exists. It never asks ptslurm
anything. Each attempt records where it started (``info.started_at``)."""
import os
from pathlib import Path

import torch
from sacred import Experiment

ex = Experiment("pttrigger")


@ex.config
def config():
    trainer = {"storage_dir": None, "stop_trigger": (20, "iteration"), "checkpoint_trigger": (5, "iteration"),
               "lr": 0.05}


@ex.automain
def main(trainer, _run):
    ckpts = Path(trainer["storage_dir"]) / "checkpoints"
    stop, unit = trainer["stop_trigger"]
    assert unit == "iteration", unit
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=trainer["lr"], momentum=0.9)
    iteration = 0
    if ckpts.exists():
        state = torch.load(ckpts / "ckpt_latest.pth", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        iteration = state["iteration"]
    _run.info["started_at"] = iteration
    ckpts.mkdir(exist_ok=True)
    x = torch.linspace(-1, 1, 32).reshape(8, 4)
    while iteration < stop:
        g = torch.Generator().manual_seed(iteration)
        loss = ((model(x) - torch.randn(8, 1, generator=g)) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        iteration += 1
        _run.log_scalar("loss", float(loss), iteration)
        if iteration % trainer["checkpoint_trigger"][0] == 0 or iteration == stop:
            path = ckpts / f"ckpt_{iteration}.pth"
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "iteration": iteration}, path)
            link = ckpts / ".ckpt_latest.pth.tmp"
            if link.is_symlink():
                link.unlink()
            os.symlink(path.name, link)
            os.replace(link, ckpts / "ckpt_latest.pth")
    return iteration
