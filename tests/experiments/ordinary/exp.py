"""An experiment written the way research code is, never having heard of ptslurm: it reads its
data relative to the working directory and writes its outputs there too (a result file, a
TensorBoard-style ``runs/`` folder, Lightning's default ``lightning_logs/version_<n>/``, a file
beside itself through ``__file__``), and imports a module that lies beside it."""
import os
import time
from pathlib import Path

from helpers import scale  # a module of the project beside the script

from sacred import Experiment

ex = Experiment("ordinary")


@ex.config
def config():
    lr = 0.1
    delay_s = 0.0


@ex.automain
def main(lr, delay_s):
    with open("data/x.txt") as fh:
        x = float(fh.read())
    time.sleep(delay_s)
    result = scale(x, lr)
    with open(Path(__file__).parent / "next_to_me.txt", "w") as fh:  # beside the script, as many do
        fh.write(f"{lr}\n")
    with open("result.txt", "w") as fh:
        fh.write(f"{lr} {result}\n")
    os.makedirs("runs/exp", exist_ok=True)
    with open(f"runs/exp/events.{os.getpid()}", "w") as fh:
        fh.write(f"lr={lr}\n")
    os.makedirs("lightning_logs", exist_ok=True)
    version = len([d for d in os.listdir("lightning_logs") if d.startswith("version_")])
    os.makedirs(f"lightning_logs/version_{version}")
    with open(f"lightning_logs/version_{version}/metrics.csv", "w") as fh:
        fh.write(f"lr,result\n{lr},{result}\n")
    return result
