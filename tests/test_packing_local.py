"""``--points-per-job`` without SLURM: a job is one process group on this machine whose points
run side by side, each in its own process, storage dir and sacred run; `-j` counts jobs."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TEST_EXPERIMENTS, read_status, run_cli, wait_for

pytestmark = pytest.mark.fast  # the packed job's runner (job.pack.run_pack) on this machine, in seconds

PROBE = TEST_EXPERIMENTS / "probe.py"


def test_locally_the_points_of_a_job_run_side_by_side_and_jobs_one_after_another(tmp_path, no_slurm):
    hold = tmp_path / "hold"
    hold.write_text("")
    root = tmp_path / "root"
    runner = subprocess.Popen([sys.executable, "-m", "ptslurm", "sweep", "--root", str(root), "--name", "local",
                               "--points-per-job", "2", "-j", "1", "--json", str(PROBE), "with", "x=[1,2,3]",
                               f"hold_while_exists={hold}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    dirs = [root / "probe" / str(n) for n in (1, 2, 3)]
    wait_for("the first job's two points to run", lambda: all(read_status(d).get("state") == "running"
                                                             for d in dirs[:2]), timeout=90)
    assert read_status(dirs[2]) == {}, "-j 1: the next job waits"
    pids = [read_status(d)["attempts"][0]["pid"] for d in dirs[:2]]
    assert pids[0] != pids[1], "each point its own process"
    hold.unlink()
    out, err = runner.communicate(timeout=120)
    assert runner.returncode == 0, err
    assert "1 job(s) of up to 2 points at a time (--points-per-job)" in err
    summary = json.loads(out)
    assert [p["state"] for p in summary["points"]] == ["completed"] * 3
    for d in dirs:
        assert [r.name for r in (d / "sacred").iterdir() if r.name.isdigit()] == ["1"]
    logs = Path(summary["sweep_dir"]) / "logs"
    assert "Result: 2" in run_cli("logs", summary["sweep_dir"], "1").stdout
    assert "runs point 1 (2 points share the job)" in (logs / "job-0-1.log").read_text()


def test_ctrl_c_while_a_local_job_starts_stops_that_job_too(tmp_path, monkeypatch):
    """A signal that comes between a job's start and its record in the runner must not leave it
    running, orphaned (it once ran a whole point after Ctrl-C)."""
    import os
    import signal

    import pytest

    from ptslurm.schedulers import backends
    from ptslurm import programs

    started = []

    def start_then_interrupted(command, log, cwd):
        proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
        started.append(proc)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C right after the start, before it is recorded
        return proc

    monkeypatch.setattr(programs, "start_point", start_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        backends.LocalBackend(tmp_path, jobs=2).run([0, 1])
    assert len(started) == 1, "no job starts after the interrupt"
    assert started[0].wait(timeout=30) == -signal.SIGTERM, "the job that was starting is stopped"
