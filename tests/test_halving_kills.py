"""Successive halving survives kills: a local search (9 points, eta 3, rungs of 2 and 6 steps)
whose `ptslurm sweep` is killed with SIGKILL, with everything it started, at random moments
(12 trials; $PTSLURM_KILLS sets more, $PTSLURM_KILL_SEED another draw), and at each step of a decision (recorded, extended, acted: failpoints), is
finished by the same command run again: the same three points promoted, each once, each
continued exactly from its checkpoint, no promotion lost."""
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import kill_group_after, run_cli
from test_halving import CURVES, log_of, points_of, straight_run

GRID = {"speed": [0.2, 0.4, 0.6], "floor": [0.0, 0.02, 0.04]}
HALVING = {"budget": "steps", "min": 2, "max": 6, "eta": 3, "metric": "loss"}


def command(tmp_path: Path) -> list:
    spec = tmp_path / "sweep.yaml"
    spec.write_text(json.dumps({"grid": GRID, "halving": HALVING}))
    return [sys.executable, "-m", "ptslurm", "sweep", "--root", str(tmp_path / "root"), "--executor", "local",
            "-j", "2", "--json", "-f", str(spec), str(CURVES)]


def finish(tmp_path: Path) -> Path:
    """The same command again, until it reports the search done (a kill may have left a
    point running that the next run waits for)."""
    for _ in range(3):
        proc = subprocess.run(command(tmp_path), capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        sweep_dir = Path(json.loads(proc.stdout)["sweep_dir"])
        log = log_of(sweep_dir)
        if log["decisions"] and all(d["acted"] for d in log["decisions"]) and all(
                s["state"] == "completed" for s in json.loads(run_cli("status", sweep_dir, "--json").stdout)):
            return sweep_dir
    raise AssertionError(f"the search did not finish: {proc.stderr}")


REFERENCE = {}


def reference(tmp_path_factory) -> dict:
    """What an undisturbed run decides, and the checkpoints of its promoted points."""
    if not REFERENCE:
        sweep_dir = finish(tmp_path_factory.mktemp("reference"))
        (decision,) = log_of(sweep_dir)["decisions"]
        REFERENCE["promoted"] = sorted(decision["points"])
        REFERENCE["states"] = {i: straight_run(points_of(sweep_dir)[i]["updates"]) for i in decision["points"]}
    return REFERENCE


def check(sweep_dir: Path, expected: dict) -> None:
    log = log_of(sweep_dir)
    assert len(log["decisions"]) == 1, f"decided once: {log['decisions']}"
    assert sorted(log["decisions"][0]["points"]) == expected["promoted"]
    points = points_of(sweep_dir)
    for p in points:
        promoted = p["index"] in expected["promoted"]
        assert p["updates"]["steps"] == (6 if promoted else 2)
        assert len(p.get("budgets") or []) == (2 if promoted else 0), "extended once, or never"
        if promoted:
            assert Path(p["storage_dir"], "checkpoints", "state.json").read_text() == expected["states"][p["index"]]


@pytest.mark.parametrize("failpoint", ["created", "recorded", "extended", "acted"])
def test_a_search_killed_at_each_step_is_finished_by_the_same_command(failpoint, tmp_path, tmp_path_factory):
    """Killed with the sweep made and no point started (``created``), or in a decision."""
    expected = reference(tmp_path_factory)
    proc = subprocess.run(command(tmp_path), capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PTSLURM_FAILPOINT": failpoint})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    sweep_dir = next((tmp_path / "root" / "sweeps").iterdir())
    check(finish(tmp_path), expected)
    assert sweep_dir.exists()


def test_random_kills_of_a_local_search_never_promote_twice_nor_lose_a_promotion(tmp_path, tmp_path_factory):
    expected = reference(tmp_path_factory)
    rng = random.Random(int(os.environ.get("PTSLURM_KILL_SEED", "28")))
    for trial in range(int(os.environ.get("PTSLURM_KILLS", "12"))):
        where = tmp_path / str(trial)
        where.mkdir()
        kill_group_after(command(where), rng.uniform(0.3, 6.0))  # the command and every point it started
        check(finish(where), expected)
