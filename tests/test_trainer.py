"""Configurable, Trainer and checkpoints in-process: exact resume after stop requests, the
fallback past a truncated checkpoint, and writers killed mid-write."""
import json
import os
import random
import signal
import subprocess
import sys

import pytest
import torch

import ptslurm as pt
from ptslurm.train import checkpoint as ckpt
from ptslurm.job import interrupt
from ptslurm.train.configurable import from_config
from ptslurm.errors import UsageError

pytestmark = pytest.mark.fast  # in-process rules, seconds (the inner loop runs them)


class Net(pt.Model):
    def __init__(self, hidden=8, dropout=0.3, stop_at=()):
        super().__init__()
        self.stop_at = list(stop_at)
        self.calls = 0
        self.net = torch.nn.Sequential(torch.nn.Linear(3, hidden), torch.nn.Dropout(dropout), torch.nn.Linear(hidden, 1))

    def forward(self, batch):
        return self.net(batch[0]).squeeze(-1)

    def review(self, batch, output):
        self.calls += 1
        if self.calls in self.stop_at:
            interrupt.request_stop()  # as if SLURM had sent the signal during this step
        return {"loss": torch.nn.functional.mse_loss(output, batch[1]), "scalars": {"x": random.random()}}


def data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 3, generator=g)
    return pt.Batches((x, x[:, 0] * 2), batch_size=6, seed=3)  # 7 batches, the last one short


def config(storage_dir, **trainer):
    cfg = {"factory": pt.Trainer, "storage_dir": str(storage_dir), "model": {"factory": Net},
           "stop_trigger": (50, "iteration"), "checkpoint_trigger": (1, "epoch"), "summary_trigger": (5, "iteration"),
           "virtual_minibatch_size": 2, "keep_checkpoints": 2}
    cfg.update(trainer)
    return pt.Trainer.get_config(cfg)


def train(cfg, seed=0):
    random.seed(seed)
    torch.manual_seed(seed)
    trainer = pt.Trainer.from_config(cfg)
    trainer.train(data())
    return trainer


def test_get_config_fills_defaults_recursively_and_round_trips_through_json(tmp_path):
    cfg = config(tmp_path)
    assert cfg["factory"] == "ptslurm.train.trainer.Trainer"
    assert cfg["model"] == {"factory": f"{__name__}.Net", "hidden": 8, "dropout": 0.3, "stop_at": []}
    assert cfg["optimizer"]["factory"] == "ptslurm.train.trainer.Adam" and cfg["optimizer"]["betas"] == [0.9, 0.999]
    again = json.loads(json.dumps(cfg))
    assert again == cfg
    trainer = pt.Trainer.from_config(again)
    assert isinstance(trainer.model, Net) and isinstance(trainer.optimizer, pt.Adam)
    with pytest.raises(UsageError, match="has no argument 'hidenn'.*valid: dropout, hidden, stop_at"):
        from_config({"factory": Net, "hidenn": 3})


@pytest.mark.parametrize("stops", [[7], [3, 11, 12, 30], [14, 35, 49]])
def test_interrupted_training_ends_bit_identical_to_an_uninterrupted_one(tmp_path, stops):
    """``stops``: iterations during which a stop request arrives (as from SLURM)."""
    reference = train(config(tmp_path / "ref"))
    assert reference.iteration == 50
    cfg = config(tmp_path / "run")
    start, interruptions = 0, 0
    while True:
        interrupt.reset()
        attempt = json.loads(json.dumps(cfg))
        attempt["model"]["stop_at"] = [s - start for s in stops if s > start]
        try:
            # the first attempt initialises like the reference; later ones start from other RNG
            # states, which resuming must override
            trainer = train(attempt, seed=0 if interruptions == 0 else 100 + interruptions)
            break
        except pt.Interrupted:
            interruptions += 1
            start = ckpt.load_latest(tmp_path / "run" / "checkpoints")[1]["iteration"]
    interrupt.reset()
    assert interruptions == len([s for s in stops if s < 50])
    for a, b in zip(reference.model.state_dict().values(), trainer.model.state_dict().values()):
        assert torch.equal(a, b), "resumed training diverged from the uninterrupted run"
    ref_opt, opt = reference.optimizer.state_dict()["state"], trainer.optimizer.state_dict()["state"]
    assert all(torch.equal(ref_opt[k]["exp_avg"], opt[k]["exp_avg"]) for k in ref_opt)


def test_checkpoints_links_and_retention(tmp_path):
    train(config(tmp_path, stop_trigger=(30, "iteration"), checkpoint_trigger=(5, "iteration")))
    d = tmp_path / "checkpoints"
    assert os.readlink(d / ckpt.LATEST) == "ckpt_30.pth"
    assert os.readlink(d / ckpt.BEST_LOSS) == "ckpt_30.pth", "without validation, best follows latest"
    assert sorted(p.name for p in d.glob("ckpt_*.pth")) == ["ckpt_25.pth", "ckpt_30.pth", "ckpt_best_loss.pth",
                                                           "ckpt_latest.pth"]
    state = torch.load(d / ckpt.LATEST, weights_only=False)
    assert {"model", "optimizer", "iteration", "epoch", "epoch_iteration", "rng", "best_loss"} <= set(state)
    assert set(state["rng"]) >= {"python", "torch"}


def test_validation_tracks_the_best_loss(tmp_path):
    cfg = config(tmp_path, stop_trigger=(3, "epoch"))
    trainer = pt.Trainer.from_config(cfg)
    trainer.register_validation_hook(data())
    trainer.train(data())
    target = os.readlink(tmp_path / "checkpoints" / ckpt.BEST_LOSS)
    best = torch.load(tmp_path / "checkpoints" / target, weights_only=False)
    assert best["best_loss"] == trainer.best_loss < float("inf")
    (tmp_path / "config.json").write_text(json.dumps({"trainer": cfg}))
    model = pt.Model.from_storage_dir(tmp_path)
    assert isinstance(model, Net)
    assert torch.equal(model.net[0].weight, best["model"]["net.0.weight"])


def test_truncated_latest_falls_back_to_the_previous_checkpoint_with_a_warning(tmp_path):
    d = tmp_path / "checkpoints"
    for it in (10, 20):
        ckpt.save({"model": {"w": torch.full((100,), float(it))}, "iteration": it}, d, it)
    target = d / os.readlink(d / ckpt.LATEST)
    target.write_bytes(target.read_bytes()[:200])
    with pytest.warns(RuntimeWarning, match="ckpt_20.pth is unreadable"):
        path, state = ckpt.load_latest(d)
    assert path.name == "ckpt_10.pth" and state["iteration"] == 10


def test_a_writer_killed_mid_write_never_leaves_a_loadable_partial_checkpoint(tmp_path):
    d = tmp_path / "checkpoints"
    ckpt.save({"model": {"w": torch.zeros(3)}, "iteration": 1}, d, 1)
    code = ("import os, torch, ptslurm.train.checkpoint as c\n"
            "real = os.fsync\n"
            "def die(fd):\n    os.kill(os.getpid(), 9)\n"
            "c.os.fsync = die\n"
            f"c.save({{'model': {{'w': torch.ones(10**6)}}, 'iteration': 2}}, {str(d)!r}, 2)\n")
    proc = subprocess.run([sys.executable, "-c", code])
    assert proc.returncode == -signal.SIGKILL
    assert not (d / "ckpt_2.pth").exists()
    assert os.readlink(d / ckpt.LATEST) == "ckpt_1.pth"
    path, state = ckpt.load_latest(d)
    assert state["iteration"] == 1


def test_resume_false_refuses_to_overwrite_and_true_needs_a_checkpoint(tmp_path):
    with pytest.raises(UsageError, match="no loadable checkpoint"):
        pt.Trainer.from_config(config(tmp_path)).train(data(), resume=True)
    train(config(tmp_path, stop_trigger=(5, "iteration")))
    with pytest.raises(UsageError, match="holds checkpoints"):
        pt.Trainer.from_config(config(tmp_path)).train(data(), resume=False)


def test_checkpoints_load_without_unpickling_code_and_foreign_ones_need_trust(tmp_path):
    import pickle

    import numpy

    numpy.random.seed(3)
    cfg = config(tmp_path, stop_trigger=(2, "epoch"))
    trainer = pt.Trainer.from_config(cfg)
    trainer.train(data())
    state = torch.load(tmp_path / "checkpoints" / ckpt.LATEST, weights_only=True)  # plain values only
    assert state["rng"]["numpy"][0] == "MT19937" and state["iteration"] == trainer.iteration
    (tmp_path / "config.json").write_text(json.dumps({"trainer": cfg}))

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    evil = tmp_path / "checkpoints" / "evil.pth"
    torch.save({"model": {}, "payload": Evil()}, evil)
    with pytest.raises(ValueError, match="trusted=True only if you trust"):
        pt.Model.from_storage_dir(tmp_path, checkpoint_name="evil.pth")
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(pickle.UnpicklingError):
        torch.load(evil, weights_only=True)


class TwoLosses(Net):
    """A padertorch-style review: named losses, weighted by the Trainer's loss_weights."""

    def review(self, batch, output):
        mse = torch.nn.functional.mse_loss(output, batch[1])
        return {"losses": {"mse": mse, "huge": 1e6 * output.abs().mean()}}


def test_padertorch_reviews_train_on_the_weighted_sum_of_their_losses(tmp_path):
    def final(make, **options):
        random.seed(0)
        torch.manual_seed(0)
        trainer = pt.Trainer(make(dropout=0.0), storage_dir=tmp_path / str(len(list(tmp_path.iterdir()))),
                             stop_trigger=(6, "iteration"), **options)
        trainer.train(data())
        return trainer.model.state_dict()

    plain = final(Net)
    ignored = final(TwoLosses, loss_weights={"huge": 0.0})
    weighted = final(TwoLosses, loss_weights={"huge": 1.0})
    assert all(torch.equal(plain[k], ignored[k]) for k in plain)  # weight 0: as if the loss were not there
    assert not all(torch.equal(plain[k], weighted[k]) for k in plain)
    with pytest.raises(UsageError, match="must return"):
        pt.Trainer(Net(), storage_dir=tmp_path / "x")._loss({"scalars": {}})


@pytest.mark.parametrize("where", ["top", "nested"])
def test_from_storage_dir_calls_no_factory_that_is_not_a_model_part(tmp_path, where):
    """config.json naming `subprocess.run` (or any callable) is refused before it is called."""
    pwned = tmp_path / "pwned"
    attack = {"factory": "subprocess.run", "args": ["touch", str(pwned)]}
    model = attack if where == "top" else {"factory": "test_trainer.Net", "hidden": 2,
                                           "stop_at": attack}
    (tmp_path / "config.json").write_text(json.dumps({"trainer": {"model": model}}))
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(UsageError, match="refused without trusted=True"):
        pt.Model.from_storage_dir(tmp_path)
    assert not pwned.exists(), "the config's factory ran"


def test_from_storage_dir_builds_nested_torch_modules_and_trusted_allows_more(tmp_path):
    cfg = {"factory": "test_trainer.Net", "hidden": 4}
    (tmp_path / "config.json").write_text(json.dumps({"trainer": {"model": cfg}}))
    net = Net(hidden=4)
    ckpt.save({"model": net.state_dict(), "iteration": 1}, tmp_path / "checkpoints", 1)
    os.symlink("ckpt_1.pth", tmp_path / "checkpoints" / ckpt.BEST_LOSS)
    model = pt.Model.from_storage_dir(tmp_path)
    assert isinstance(model, Net) and torch.equal(model.net[0].weight, net.net[0].weight)
    from ptslurm.train.configurable import from_config

    class Plain:
        def __init__(self, n=1):
            self.n = n

    pt_cfg = {"factory": "test_trainer.Holder", "part": {"factory": "collections.OrderedDict"}}
    with pytest.raises(UsageError, match="neither a Configurable nor a torch module"):
        Holder.from_config(pt_cfg, trusted=False)
    assert isinstance(Holder.from_config(pt_cfg, trusted=True).part, dict)
    assert from_config({"factory": Plain, "n": 2}).n == 2, "plain from_config keeps building anything"


class Holder(pt.Model):
    def __init__(self, part=None):
        super().__init__()
        self.part = part


class Accurate(Net):
    def review(self, batch, output):
        err = (output - batch[1]).abs()
        return {"loss": torch.nn.functional.mse_loss(output, batch[1]), "scalars": {"accuracy": (err < 0.5).float().mean()}}


def test_a_running_training_prints_summaries_and_records_validation_scalars(tmp_path, capsys):
    cfg = config(tmp_path, stop_trigger=(2, "epoch"), model={"factory": Accurate})
    trainer = pt.Trainer.from_config(cfg)
    trainer.register_validation_hook(data())
    trainer.train(data())
    out = capsys.readouterr().out.splitlines()
    summaries = [ln for ln in out if ln.startswith("ptslurm: iteration ")]
    assert len(summaries) >= 2 and any("training/loss" in ln for ln in summaries), out
    assert summaries[-1].startswith("ptslurm: iteration 14 epoch 2/2: "), summaries[-1]
    validations = [ln for ln in summaries if "validation/loss" in ln]
    assert validations and "validation/accuracy" in validations[-1]
    assert 0.0 <= trainer.validation_scalars["accuracy"] <= 1.0
