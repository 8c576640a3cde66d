"""Reading a sweep never submits (issues 17 and 20): `collect`, `list` and `ptslurm.collect()`
make no sbatch call whatever the sweep's state, `status` included (issue 29): it names `next-wave`,
which tops up a stalled wave of a sweep the caller owns; commands that change a sweep refuse
another user's."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import EXAMPLES, run_cli


def fake_slurm(folder: Path, log: Path) -> dict:
    """sbatch, squeue, sacct, scontrol that log each call; a controller that answers; an empty queue."""
    folder.mkdir()
    scripts = {
        "sbatch": 'echo "Submitted batch job 900"',
        "scontrol": 'case "$1" in ping) echo "Slurmctld(primary) at ctl is UP";; esac',
        "squeue": f"cat '{folder}/queue' 2>/dev/null || true", "sacct": "", "sacctmgr": "", "sinfo": "",
        "scancel": f"if [ -f '{folder}/scancel_fails' ]; then "
                   "echo 'scancel: error: Unable to contact slurm controller (connect failure)' >&2; exit 1; fi",
    }
    for name, body in scripts.items():
        path = folder / name
        path.write_text(f"#!/bin/bash\necho \"{name} $*\" >> '{log}'\n{body}\n")
        path.chmod(0o755)
    (folder / "slurm.conf").write_text("")
    return {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}", "SLURM_CONF": str(folder / "slurm.conf")}


@pytest.fixture
def stalled_sweep(tmp_path, monkeypatch):
    """A sweep in waves whose wave job is gone: point 0 completed, 1 lost (its job vanished
    without a word), 2 and 3 waiting for a wave nobody will submit."""
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "none.conf"))
    root = tmp_path / "runs"
    proc = run_cli("sweep", "--json", "--name", "stalled", "--root", root, EXAMPLES / "tiny.py",
                   "with", "lr=[0.01,0.02,0.03,0.04]", "steps=5")
    assert proc.returncode == 0, proc.stderr
    sweep = Path(json.loads(proc.stdout)["sweep_dir"])
    manifest = json.loads((sweep / "manifest.json").read_text())
    manifest.update(executor="slurm", waves={"limit": 3, "job": "77"}, state="submitted")
    for i, entry in enumerate(manifest["points"]):
        entry["job_id"] = f"5_{i}" if i < 2 else None
        if i > 0:
            os.unlink(Path(entry["storage_dir"]) / "ptslurm_status.json")
    (sweep / "manifest.json").write_text(json.dumps(manifest))
    log = tmp_path / "calls.log"
    log.write_text("")
    env = fake_slurm(tmp_path / "bin", log)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return sweep, log


def sbatch_calls(log: Path) -> int:
    return sum(1 for line in log.read_text().splitlines() if line.startswith("sbatch"))


def test_collect_list_and_the_python_api_never_submit(stalled_sweep):
    sweep, log = stalled_sweep
    for args in (["collect", sweep], ["collect", sweep, "--format", "json"], ["list", sweep.parent.parent]):
        proc = run_cli(*args)
        assert proc.returncode == 0, proc.stderr
    code = f"import ptslurm; rows = ptslurm.collect([{str(sweep)!r}]); print(sorted(r['state'] for r in rows))"
    proc = subprocess.run([os.sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "waiting" in proc.stdout and "lost" in proc.stdout
    assert sbatch_calls(log) == 0, log.read_text()
    assert "squeue" in log.read_text(), "the scheduler was asked (the fake is on PATH)"


@pytest.mark.parametrize("lost", [True, False], ids=["a-point-lost", "wave-job-killed-after-its-sbatch"])
def test_status_only_reads_a_stalled_wave_and_next_wave_submits_it(stalled_sweep, lost):
    """Whenever points wait and no wave job is queued, not only when a point was lost:
    `status` says so and submits nothing; `ptslurm next-wave` submits the waiting points."""
    sweep, log = stalled_sweep
    if not lost:  # point 1 completed too: nothing is lost, only the wave job is gone
        manifest = json.loads((sweep / "manifest.json").read_text())
        done = Path(manifest["points"][0]["storage_dir"]) / "ptslurm_status.json"
        status = json.loads(done.read_text())
        for attempt in status.get("attempts", []):
            attempt["job_id"] = "5_1"
        (Path(manifest["points"][1]["storage_dir"]) / "ptslurm_status.json").write_text(json.dumps(status))
    before = (sweep / "manifest.json").read_text()
    for args in (["status", sweep, "--json"], ["status", sweep]):
        proc = run_cli(*args)
        assert proc.returncode == 0, proc.stderr
        assert f"`ptslurm next-wave {sweep}` submits the next one" in proc.stderr
    assert sbatch_calls(log) == 0 and (sweep / "manifest.json").read_text() == before, "status wrote"
    proc = run_cli("next-wave", sweep)
    assert proc.returncode == 0 and proc.stdout.startswith("submitted 2 waiting point(s)"), proc
    assert sbatch_calls(log) >= 1, "the waiting points were submitted"
    manifest = json.loads((sweep / "manifest.json").read_text())
    assert all(e["job_id"] for e in manifest["points"][2:]), manifest["points"]


def test_status_and_collect_of_a_sweep_whose_wave_job_is_queued_submit_nothing(stalled_sweep):
    """Points wait and the wave job is queued (squeue says so): it will submit them, so
    neither `status` nor `collect` nor `ptslurm.collect()` calls sbatch."""
    sweep, log = stalled_sweep
    (log.parent / "bin" / "queue").write_text("77 PENDING\n")
    manifest = json.loads((sweep / "manifest.json").read_text())
    manifest["waves"]["limit"] = 100  # room in the queue: only the queued wave job stops a submission
    (sweep / "manifest.json").write_text(json.dumps(manifest))
    for args in (["status", sweep], ["status", sweep, "--json"], ["collect", sweep]):
        proc = run_cli(*args)
        assert proc.returncode == 0, proc.stderr
    code = f"import ptslurm; print(len(ptslurm.collect([{str(sweep)!r}])))"
    proc = subprocess.run([os.sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "squeue" in log.read_text() and sbatch_calls(log) == 0, log.read_text()
    states = [row["state"] for row in json.loads(run_cli("status", sweep, "--json").stdout)]
    assert states.count("waiting") == 2, states


def chown_tree(path: Path, uid: int) -> None:
    for dirpath, dirnames, filenames in os.walk(path):
        os.chown(dirpath, uid, -1)
        for name in filenames:
            os.chown(os.path.join(dirpath, name), uid, -1)


def test_reading_another_users_sweep_never_submits_and_changing_it_is_refused(stalled_sweep, other_user):
    sweep, log = stalled_sweep
    chown_tree(sweep, other_user)
    for args in (["status", sweep], ["status", sweep, "--json"], ["collect", sweep], ["list", sweep.parent.parent]):
        proc = run_cli(*args)
        assert proc.returncode == 0, proc.stderr
    assert sbatch_calls(log) == 0, "another user's sweep ran jobs as you"
    for args in (["resubmit", sweep, "--failed"], ["resubmit", sweep, "--points", "1"], ["cancel", sweep],
                 ["run", sweep, "1"], ["next-wave", sweep]):
        proc = run_cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "belongs to ptslurm-other" in lines[0] and "only your own" in lines[0], lines
    assert sbatch_calls(log) == 0 and "scancel" not in log.read_text()


def test_cancel_checks_scancel_and_cancels_again_what_still_runs(stalled_sweep, tmp_path):
    sweep, log = stalled_sweep
    fake = tmp_path / "bin"
    (fake / "queue").write_text("5_1 RUNNING\n")
    (fake / "scancel_fails").write_text("")
    proc = run_cli("cancel", sweep, "--points", "1")
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "scancel failed" in lines[0] and "`ptslurm cancel` again" in lines[0], lines
    (fake / "scancel_fails").unlink()
    log.write_text("")
    proc = run_cli("cancel", sweep, "--points", "1")  # status says cancelled; the job still runs
    assert proc.returncode == 0, proc.stderr
    assert "scancel 5_1" in log.read_text(), "the still-running job was cancelled again"
    (fake / "queue").write_text("")
    log.write_text("")
    proc = run_cli("cancel", sweep, "--points", "1")
    assert proc.returncode == 0 and "scancel" not in log.read_text(), "nothing left to stop"
