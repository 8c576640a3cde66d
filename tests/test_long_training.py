"""Trainings longer than any one job (issue 15), all at once on the cluster under load (time
limits cost minutes of wall time; run together they cost the longest):

- code that never asks ptslurm anything (a plain loop with its own checkpoint, a
  padertorch-style torch script saving ckpt_<n>.pth) at a 1-minute limit with no option but
  --time lives through five time limits and more, and completes with the result of an
  uninterrupted run;
- at a 3-minute limit such code runs each attempt to the margin before the job's end, not
  to the stop signal (at least 85 % of the limit), and its records say how it ended;
- ptslurm's Trainer, which asks should_stop(), checkpoints at each time limit and resumes
  from there; only --max-attempts ends it."""
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TEST_EXPERIMENTS, read_status, run_cli, wait_for

PLAIN = TEST_EXPERIMENTS / "plainloop.py"
PTSTYLE = TEST_EXPERIMENTS / "ptstyle.py"
RESUMABLE = TEST_EXPERIMENTS / "resumable.py"
STEPS = 520  # 260 s of work at 0.5 s a step: at most 50 s of it fit in each 1-minute job, so 6+ attempts


def uninterrupted(tmp_path: Path) -> list:
    folder = tmp_path / "reference"
    folder.mkdir()
    proc = subprocess.run([sys.executable, str(PTSTYLE), "with", f"storage_dir={folder}", f"steps={STEPS}",
                           "delay_s=0", "checkpoint_every=20"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stderr.splitlines() if "Result: " in ln)
    return ast.literal_eval(line.split("Result: ", 1)[1])


def submit(root: Path, *args) -> dict:
    proc = run_cli("sweep", "--root", root, "--json", *args)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    return {"sweep": summary["sweep_dir"], "dir": Path(summary["points"][0]["storage_dir"])}


def sacred_runs(storage_dir: Path) -> list:
    runs = sorted((storage_dir / "sacred").glob("[0-9]*/run.json"), key=lambda p: int(p.parent.name))
    return [json.loads(r.read_text()) for r in runs]


@pytest.fixture(scope="module")
def trained(own_slurm_cluster, tmp_path_factory):
    """The four trainings, submitted at once and waited for to their ends with one core kept
    busy (in the suite the SLURM tier runs beside them, on the other cluster); each test below
    checks one of them."""
    tmp_path = tmp_path_factory.mktemp("long")
    expected = uninterrupted(tmp_path)
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])]
    try:
        points = {
            "plain": submit(tmp_path / "plain", "--time", "1", PLAIN, "with", f"steps={STEPS}", "delay_s=0.5"),
            "ptstyle": submit(tmp_path / "ptstyle", "--time", "1", PTSTYLE, "with", f"steps={STEPS}", "delay_s=0.5",
                              "checkpoint_every=20"),
            "allocation": submit(tmp_path / "allocation", "--time", "3", PLAIN, "with", "steps=360", "delay_s=0.5"),
            "trainer": submit(tmp_path / "trainer", "--time", "1", "--max-attempts", "2", RESUMABLE, "with",
                              "seed=7", "trainer.model.delay_s=0.2", "trainer.stop_trigger=(100000,'iteration')"),
        }
        for name, point in points.items():  # status: the files and the scheduler (a job that died unrecorded ends too)
            wait_for(f"the {name} point to end", lambda: json.loads(run_cli("status", point["sweep"], "--json").stdout)[0]
                     ["state"] not in ("pending", "running", "requeued", "waiting"), timeout=1200, every=5)
    finally:
        for burner in burners:
            burner.kill()
        subprocess.run(["scancel", "--user", str(os.getuid())], capture_output=True, timeout=60)
    return points, expected


@pytest.mark.slurm
@pytest.mark.parametrize("name", ["plain", "ptstyle"])
def test_code_that_never_asks_lives_through_five_time_limits_and_ends_exact(trained, name):
    points, expected = trained
    storage_dir = points[name]["dir"]
    status = read_status(storage_dir)
    attempts = status["attempts"]
    brief = [(a["state"], a.get("cause"), a.get("progressed"), a.get("gave_up")) for a in attempts]
    assert status["state"] == "completed", brief
    assert len(attempts) >= 6, f"{name}: only {len(attempts)} attempts: {brief}"
    stops = attempts[:-1]
    assert all(a["cause"] == "timeout" and a["action"] == "requeue" and a["progressed"] and a.get("unheeded")
               for a in stops), brief
    result = attempts[-1]["result"]
    assert result == (STEPS * (STEPS + 1) // 2 if name == "plain" else expected), f"{name}: {result}"
    runs = sacred_runs(storage_dir)
    assert [r["status"] for r in runs] == ["INTERRUPTED"] * len(stops) + ["COMPLETED"]
    assert all(r.get("stop_time") for r in runs), "an attempt's run has no stop time"
    cout = (storage_dir / "sacred" / "1" / "cout.txt").read_text()
    assert cout.rstrip().splitlines()[-1].startswith("ptslurm: this attempt stopped for the time limit"), cout[-500:]
    rows = json.loads(run_cli("collect", points[name]["sweep"], "--format", "json").stdout)
    assert rows[0]["state"] == "completed", rows


@pytest.mark.slurm
def test_at_a_3_minute_limit_each_attempt_runs_to_the_margin_not_to_the_signal(trained):
    from ptslurm.read.state import timestamp

    points, _ = trained
    storage_dir = points["allocation"]["dir"]
    attempts = read_status(storage_dir)["attempts"]
    stops = attempts[:-1]
    assert stops and all(a["cause"] == "timeout" and a["action"] == "requeue" for a in stops), attempts
    for a in stops:
        ran = timestamp(a["ended"]) - timestamp(a["started"])
        assert ran >= 0.85 * 180, f"an attempt ran {ran:.0f} s of a 180-s limit"
    assert attempts[-1]["result"] == 360 * 361 // 2
    cout = (storage_dir / "sacred" / "1" / "cout.txt").read_text()
    assert "keeps running until 10 s before the end" in cout and "ptslurm: this attempt stopped for the time limit" in cout
    run = sacred_runs(storage_dir)[0]
    assert run["status"] == "INTERRUPTED" and run["stop_time"]


@pytest.mark.slurm
def test_the_trainer_resumes_from_its_stop_checkpoint_until_max_attempts_ends_it(trained):
    """The Trainer asks should_stop(): each time limit is told from SLURM's record and resumed
    from its stop checkpoint; it makes progress, so only --max-attempts 2 ends it (timed out)."""
    points, _ = trained
    trainer = points["trainer"]
    attempts = read_status(trainer["dir"])["attempts"]
    assert [(a["cause"], a["state"]) for a in attempts] == [("timeout", "requeued"), ("timeout", "timeout")]
    assert attempts[-1]["gave_up"] == "--max-attempts 2 reached" and attempts[0]["progressed"] is True
    assert not any(a.get("unheeded") for a in attempts)
    assert [r["status"] for r in sacred_runs(trainer["dir"])] == ["INTERRUPTED", "INTERRUPTED"]
    assert "resuming from" in run_cli("logs", trainer["sweep"], "0", "--attempt", "2").stdout
    status = json.loads(run_cli("status", trainer["sweep"], "--json").stdout)
    assert status[0]["gave_up"] == "--max-attempts 2 reached", status
