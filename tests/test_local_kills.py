"""The newcomer's default, a local `ptslurm sweep`, killed with SIGKILL (it and every point it
started) at random moments: while it loads and checks the experiment, while it makes the
sweep, while its points train (6 trials; $PTSLURM_KILLS sets more, $PTSLURM_KILL_SEED another
draw). The same command run again finishes the sweep: every point completed once, in the
storage dir it was given, each training step counted exactly once (the experiment's result is
a running sum, resumed from its own checkpoint), and no storage dir claimed twice."""
import json
import os
import random
import subprocess
import sys
from pathlib import Path

from conftest import TEST_EXPERIMENTS, kill_group_after, run_cli

STEPS = [4, 6, 8]


def command(where: Path) -> list:
    return [sys.executable, "-m", "ptslurm", "sweep", "--json", "--root", str(where / "runs"), "--executor", "local",
            "-j", "2", str(TEST_EXPERIMENTS / "plainloop.py"), "with", f"steps={STEPS}".replace(" ", ""),
            "delay_s=0.15", "save_every=2"]


def finish(where: Path) -> Path:
    """The same command again until every point completed (a run may only resume some)."""
    for _ in range(3):
        proc = subprocess.run(command(where), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        sweep_dir = Path(json.loads(proc.stdout)["sweep_dir"])
        rows = json.loads(run_cli("collect", sweep_dir, "--format", "json").stdout)
        if all(r["state"] == "completed" for r in rows):
            return sweep_dir
    raise AssertionError(f"the sweep did not finish: {proc.stderr}")


def test_a_local_sweep_killed_at_random_moments_is_finished_by_the_same_command(tmp_path, no_slurm):
    rng = random.Random(int(os.environ.get("PTSLURM_KILL_SEED", "7")))
    for trial in range(int(os.environ.get("PTSLURM_KILLS", "6"))):
        where = tmp_path / str(trial)
        where.mkdir()
        kill_group_after(command(where), rng.uniform(0.2, 5.0))  # the command and every point it started
        sweep_dir = finish(where)
        rows = json.loads(run_cli("collect", sweep_dir, "--format", "json").stdout)
        assert [(r["steps"], r["result"]) for r in rows] == [(n, n * (n + 1) // 2) for n in STEPS], trial
        manifest = json.loads((sweep_dir / "manifest.json").read_text())
        dirs = sorted(p.name for p in (where / "runs" / "plainloop").iterdir() if p.is_dir())
        assert dirs == sorted(Path(e["storage_dir"]).name for e in manifest["points"]), f"trial {trial}: {dirs}"
