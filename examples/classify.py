"""Classification of synthetic Gaussian blobs, in the seed document's style: a config scope
with a nested trainer/model/optimizer dict and named configs.

    ptslurm sweep examples/classify.py with 'trainer.optimizer.lr=[1e-2,1e-3]' '[small,large]'

The data is generated from the config's seed, so every point is reproducible.
"""
import json
from pathlib import Path

from sacred import Experiment

ex = Experiment("classify")


@ex.config
def config():
    trainer = {
        "storage_dir": None,  # ptslurm injects each point's storage dir
        "epochs": 5,
        "batch_size": 64,
        "model": {"hidden": [64, 64], "dropout": 0.1},
        "optimizer": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0},
    }
    data = {"n_classes": 4, "n_features": 16, "n_train": 2048, "n_valid": 512, "spread": 0.4}


@ex.named_config
def small():
    trainer = {"model": {"hidden": [32]}}


@ex.named_config
def large():
    trainer = {"model": {"hidden": [256, 256, 128], "dropout": 0.2}}


def make_data(n_classes, n_features, n_train, n_valid, spread, seed):
    import torch

    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(n_classes, n_features, generator=g) * spread
    def sample(n):
        y = torch.randint(0, n_classes, (n,), generator=g)
        return centers[y] + torch.randn(n, n_features, generator=g), y
    return sample(n_train), sample(n_valid)


def build_model(n_features, n_classes, hidden, dropout):
    import torch

    layers, width = [], n_features
    for h in hidden:
        layers += [torch.nn.Linear(width, h), torch.nn.ReLU(), torch.nn.Dropout(dropout)]
        width = h
    return torch.nn.Sequential(*layers, torch.nn.Linear(width, n_classes))


@ex.automain
def main(trainer, data, _run, _seed):
    import torch

    torch.manual_seed(_seed)
    (x, y), (xv, yv) = make_data(seed=_seed, **data)
    model = build_model(data["n_features"], data["n_classes"], **trainer["model"])
    opt_cfg = dict(trainer["optimizer"])
    name = opt_cfg.pop("name")
    optimizer = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[name](model.parameters(), **opt_cfg)
    for epoch in range(trainer["epochs"]):
        model.train()
        perm = torch.randperm(len(x))
        for i in range(0, len(x), trainer["batch_size"]):
            idx = perm[i:i + trainer["batch_size"]]
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            logits = model(xv)
            valid_loss = torch.nn.functional.cross_entropy(logits, yv).item()
            accuracy = (logits.argmax(-1) == yv).float().mean().item()
        _run.log_scalar("valid_loss", valid_loss, epoch)
        _run.log_scalar("accuracy", accuracy, epoch)
    storage_dir = Path(trainer["storage_dir"] or ".")
    torch.save(model.state_dict(), storage_dir / "model.pth")
    (storage_dir / "result.json").write_text(json.dumps({"accuracy": accuracy, "valid_loss": valid_loss}))
    return accuracy
