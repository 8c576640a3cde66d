"""Shaped like the seed document's example, traps included: the inverted storage-dir test
that allocates a directory under $STORAGE_ROOT while the config is built, and an observer
appended in the config scope."""
import os
from pathlib import Path

from sacred import Experiment
from sacred.observers import FileStorageObserver

ex = Experiment("seedlike")


def get_new_storage_dir(name):
    root = Path(os.environ["STORAGE_ROOT"]) / name
    root.mkdir(parents=True, exist_ok=True)
    n = len(list(root.iterdir())) + 1
    (root / str(n)).mkdir()
    return root / str(n)


@ex.config
def config():
    trainer = {
        "storage_dir": None,
        "model": {"num_layers": 2},
        "optimizer": {"lr": 0.001},
    }
    if not trainer["storage_dir"] is None:  # inverted, as in the seed
        trainer["storage_dir"] = get_new_storage_dir(ex.path)
    ex.observers.append(FileStorageObserver(Path(trainer["storage_dir"]) / "sacred"))


@ex.named_config
def big():
    trainer = {"model": {"num_layers": 8}}


@ex.automain
def main(trainer, _config, _run):
    Path(trainer["storage_dir"], "done.txt").write_text(str(trainer["model"]["num_layers"]))
    return trainer["optimizer"]["lr"]
