"""Trainings longer than any one job (issue 15): code that never asks ptslurm anything (a
plain loop with its own checkpoint, a padertorch-style torch script saving ckpt_<n>.pth), at
a 1-minute limit with no option but --time, needs 8 and more attempts, and completes with
the result of an uninterrupted run, while both cores are kept busy."""
import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TEST_EXPERIMENTS, read_status, run_cli, wait_for

PLAIN = TEST_EXPERIMENTS / "plainloop.py"
PTSTYLE = TEST_EXPERIMENTS / "ptstyle.py"
STEPS = 700  # 350 s of work at 0.5 s a step: about 40 s of it fit in each 1-minute job


def uninterrupted(tmp_path: Path) -> list:
    folder = tmp_path / "reference"
    folder.mkdir()
    proc = subprocess.run([sys.executable, str(PTSTYLE), "with", f"storage_dir={folder}", f"steps={STEPS}",
                           "delay_s=0", "checkpoint_every=20"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stderr.splitlines() if "Result: " in ln)
    return ast.literal_eval(line.split("Result: ", 1)[1])


@pytest.mark.slurm
def test_never_asking_trainings_need_many_one_minute_jobs_and_complete_exactly_under_load(slurm_cluster, tmp_path):
    expected = uninterrupted(tmp_path)
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        dirs, sweeps = {}, {}
        for name, experiment, extra in (("plain", PLAIN, []), ("ptstyle", PTSTYLE, ["checkpoint_every=20"])):
            proc = run_cli("sweep", "--root", tmp_path / name, "--json", "--time", "1", experiment, "with",
                           f"steps={STEPS}", "delay_s=0.5", *extra)
            assert proc.returncode == 0, proc.stderr
            dirs[name] = Path(json.loads(proc.stdout)["points"][0]["storage_dir"])
            sweeps[name] = json.loads(proc.stdout)["sweep_dir"]
        for name, storage_dir in dirs.items():
            wait_for(f"the {name} point to end", lambda: read_status(storage_dir).get("state") not in
                     (None, "pending", "running", "requeued"), timeout=1500, every=2)
    finally:
        for burner in burners:
            burner.kill()
    for name, storage_dir in dirs.items():
        status = read_status(storage_dir)
        attempts = status["attempts"]
        brief = [(a["state"], a.get("cause"), a.get("progressed"), a.get("gave_up")) for a in attempts]
        assert status["state"] == "completed", brief
        assert len(attempts) >= 8, f"{name}: only {len(attempts)} attempts: {brief}"
        stops = attempts[:-1]
        assert all(a["cause"] == "timeout" and a["action"] == "requeue" and a["progressed"] and a.get("unheeded")
                   for a in stops), brief
        result = attempts[-1]["result"]
        assert result == (STEPS * (STEPS + 1) // 2 if name == "plain" else expected), f"{name}: {result}"
        # each stop is on record as sacred's own observers would write an interrupt
        runs = sorted((storage_dir / "sacred").glob("[0-9]*/run.json"), key=lambda p: int(p.parent.name))
        assert [json.loads(r.read_text())["status"] for r in runs] == ["INTERRUPTED"] * len(stops) + ["COMPLETED"]
        assert all(json.loads(r.read_text()).get("stop_time") for r in runs)
        cout = (runs[0].parent / "cout.txt").read_text()
        assert cout.rstrip().splitlines()[-1].startswith("ptslurm: ended this attempt for the time limit")
        rows = json.loads(run_cli("collect", sweeps[name], "--format", "json").stdout)
        assert rows[0]["state"] == "completed", rows
