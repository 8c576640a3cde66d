"""``ptslurm extend``: train ended points longer. A padertorch-shaped script with its own
checkpoints (it never asks ptslurm) trained to ``stop_trigger=(10,'iteration')`` and extended to
30 continues from its checkpoint and ends bit-identical to a run straight to 30; its config
and `show` say the new budget and its history; every other change is refused with the reason
and leaves the sweep as it was."""
import json
from pathlib import Path

import pytest

from conftest import TEST_EXPERIMENTS, run_cli

PTTRIGGER = TEST_EXPERIMENTS / "pttrigger.py"


def sweep(root: Path, *updates: str) -> dict:
    proc = run_cli("sweep", "--root", root, "--executor", "local", "--json", PTTRIGGER, "with", *updates, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def final_weights(storage_dir: str, iteration: int):
    import torch

    return torch.load(Path(storage_dir, "checkpoints", f"ckpt_{iteration}.pth"), weights_only=True)


def test_extend_continues_a_padertorch_style_point_to_a_larger_stop_trigger_exactly(tmp_path):
    import torch

    root = tmp_path / "root"
    short = sweep(root, "trainer.lr=[0.05,0.02]", "trainer.stop_trigger=(10,'iteration')")
    name = short["name"]
    before = (root / "sweeps" / name / "manifest.json").read_text()
    refused = [
        (["with", "trainer.lr=0.1"], "say which config key is the training's budget: --budget-key KEY"),
        (["--budget-key", "trainer.stop_trigger", "with", "trainer.lr=0.1", "trainer.stop_trigger=(30,'iteration')"],
         "extend changes only the budget (trainer.stop_trigger); 'trainer.lr' would not be the same training"),
        (["--budget-key", "trainer.stop_trigger", "with", "trainer.stop_trigger=(5,'iteration')"],
         "point 0 already trains to trainer.stop_trigger=10: extend only trains longer (give more than 10)"),
        (["--budget-key", "trainer.stop_trigger", "with", "trainer.stop_trigger=[20,30]"],
         "extend takes one KEY=VALUE after `with`"),
        (["--budget-key", "trainer.stop_trigger", "with", "trainer.stop_trigger='long'"],
         "trainer.stop_trigger='long' is no budget"),
    ]
    for words, message in refused:
        proc = run_cli("extend", "--root", root, name, *words)
        assert proc.returncode != 0 and message in proc.stderr, (words, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1
        assert (root / "sweeps" / name / "manifest.json").read_text() == before, "a refusal changes nothing"
    proc = run_cli("extend", "--root", root, name, "--budget-key", "trainer.stop_trigger",
                   "with", "trainer.stop_trigger=(30,'iteration')", timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "extended 2 point(s) to trainer.stop_trigger=[30, 'iteration']" in proc.stdout
    straight = sweep(tmp_path / "straight", "trainer.lr=[0.05,0.02]", "trainer.stop_trigger=(30,'iteration')")
    for point, reference in zip(short["points"], straight["points"]):
        ours, theirs = final_weights(point["storage_dir"], 30), final_weights(reference["storage_dir"], 30)
        for key in ours["model"]:
            assert torch.equal(ours["model"][key], theirs["model"][key]), key
        assert ours["optimizer"]["state"][0]["momentum_buffer"].equal(theirs["optimizer"]["state"][0]["momentum_buffer"])
        config = json.loads(Path(point["storage_dir"], "config.json").read_text())
        assert config["trainer"]["stop_trigger"] == [30, "iteration"]
        infos = sorted(Path(point["storage_dir"], "sacred").glob("*/info.json"))
        assert [json.loads(p.read_text())["started_at"] for p in infos] == [0, 10], "continued, not restarted"
    shown = run_cli("show", "--root", root, name, "1")
    assert "# budget trainer.stop_trigger: [10, 'iteration'] (sweep) -> [30, 'iteration'] (extend)" in shown.stderr
    again = run_cli("extend", "--root", root, name, "with", "trainer.stop_trigger=(30,'iteration')")
    assert "point 0 already trains to trainer.stop_trigger=30" in again.stderr, "the key is remembered"


def test_extend_of_ptslurms_trainer_ends_bit_identical_to_a_run_straight_to_the_new_budget(tmp_path):
    """examples/train.py (ptslurm's Trainer: dropout, shuffled batches, validation): 25
    iterations, extended to 75, against 75 at once with the same seed."""
    import torch

    train = Path(__file__).resolve().parent.parent / "examples" / "train.py"
    root = tmp_path / "root"

    def run(*words):
        proc = run_cli(*words, timeout=600)
        assert proc.returncode == 0, proc.stderr
        return proc

    short = json.loads(run("sweep", "--root", root, "--executor", "local", "--json", train, "with",
                           "trainer.stop_trigger=(25,'iteration')", "seed=7").stdout)
    run("extend", "--root", root, short["name"], "--budget-key", "trainer.stop_trigger", "with",
        "trainer.stop_trigger=(75,'iteration')")
    straight = json.loads(run("sweep", "--root", root, "--executor", "local", "--json", train, "with",
                              "trainer.stop_trigger=(75,'iteration')", "seed=7").stdout)
    ours, theirs = (torch.load(Path(s["points"][0]["storage_dir"], "checkpoints", "ckpt_75.pth"), weights_only=False)
                    for s in (short, straight))
    assert all(torch.equal(ours["model"][k], theirs["model"][k]) for k in theirs["model"])
    assert ours["best_loss"] == theirs["best_loss"]
