"""A padertorch-style training script without ptslurm's Trainer (issue 15): a torch model
trained step by step, saved as ``checkpoints/ckpt_<iteration>.pth`` (torch.save) with a
``ckpt_latest.pth`` link moved after each save, resumed when the checkpoints folder exists,
as padertorch's Trainer does. It never asks ptslurm anything. Deterministic: the result is
the same however often the training is stopped and resumed."""
import os
import time
from pathlib import Path

import torch
from sacred import Experiment

ex = Experiment("ptstyle")


@ex.config
def config():
    storage_dir = None
    steps = 100
    delay_s = 0.1
    checkpoint_every = 10


@ex.automain
def main(storage_dir, steps, delay_s, checkpoint_every):
    ckpts = Path(storage_dir) / "checkpoints"
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    iteration = 0
    if ckpts.exists():  # padertorch: resume=True when the folder exists
        state = torch.load(ckpts / "ckpt_latest.pth", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        iteration = state["iteration"]
        print(f"resumed from ckpt_{iteration}.pth", flush=True)
    ckpts.mkdir(exist_ok=True)
    x = torch.linspace(-1, 1, 32).reshape(8, 4)
    while iteration < steps:
        time.sleep(delay_s)
        g = torch.Generator().manual_seed(iteration)  # the batch of this iteration, whichever attempt runs it
        noise = torch.randn(8, 1, generator=g)
        loss = ((model(x) - noise) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        iteration += 1
        if iteration % checkpoint_every == 0 or iteration == steps:
            path = ckpts / f"ckpt_{iteration}.pth"
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "iteration": iteration},
                       path)
            link = ckpts / ".ckpt_latest.pth.tmp"
            if link.is_symlink():
                link.unlink()
            os.symlink(path.name, link)
            os.replace(link, ckpts / "ckpt_latest.pth")
    return [round(float(v), 6) for v in model.weight.flatten()] + [iteration]
