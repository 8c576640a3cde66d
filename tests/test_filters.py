"""seml's habit: every verb that acts on points takes the filters `status` and `collect` take
(`--state`, `--where KEY=VALUE`), not only point indices."""
import json
import subprocess
from pathlib import Path

import pytest

from conftest import EXAMPLES, TEST_EXPERIMENTS, read_status, run_cli, wait_for


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("filters")
    env = {"SLURM_CONF": str(tmp / "none.conf")}
    proc = run_cli("sweep", "--json", "--root", tmp / "runs", "-j", "2", EXAMPLES / "tiny.py", "with",
                   "lr=[0.05,0.1,0.2]", "fail=[False,True]", "steps=5", env=env)
    assert proc.returncode == 1, proc.stderr
    return json.loads(proc.stdout), env


def test_failures_and_resubmit_take_where_and_state(mixed):
    summary, env = mixed
    sweep = summary["sweep_dir"]
    index = {(p["varied"]["lr"], p["varied"]["fail"]): p["index"] for p in
             json.loads(run_cli("status", sweep, "--json", env=env).stdout)}
    listed = run_cli("failures", sweep, "--where", "lr=0.1", env=env).stdout
    assert f"points {index[(0.1, True)]}\n" in listed and "1 point(s) failed" in listed, listed
    again = run_cli("resubmit", sweep, "--failed", "--where", "lr=0.2", env=env)
    assert again.returncode == 0 and f"resubmitted 1 point(s): {index[(0.2, True)]} " in again.stdout, again.stdout
    attempts = {p["index"]: p["attempts"] for p in json.loads(run_cli("status", sweep, "--json", env=env).stdout)}
    assert attempts[index[(0.2, True)]] == 2 and attempts[index[(0.1, True)]] == 1
    by_state = run_cli("resubmit", sweep, "--state", "failed", "--where", "lr=0.05", env=env)
    assert by_state.returncode == 0 and f"resubmitted 1 point(s): {index[(0.05, True)]} " in by_state.stdout
    none = run_cli("resubmit", sweep, "--where", "lr=0.3", env=env)
    assert none.returncode == 0 and "no point matches" in none.stderr
    bare = run_cli("resubmit", sweep, env=env)
    assert bare.returncode == 2 and "--failed, --points LIST, --state STATES or --where" in bare.stderr
    bad = run_cli("failures", sweep, "--where", "nope=1", env=env)
    assert bad.returncode == 2 and "'nope' is no column" in bad.stderr


@pytest.mark.slurm
def test_cancel_takes_where_and_state_on_the_cluster(slurm_cluster, tmp_path):
    hold = tmp_path / "hold"
    hold.write_text("")
    proc = run_cli("sweep", "--json", "--root", tmp_path / "runs", TEST_EXPERIMENTS / "probe.py", "with", "x=[1,2,3]",
                   f"hold_while_exists={hold}", env={"PTSLURM_POLL_S": "0.5"})
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    try:
        dirs = [Path(p["storage_dir"]) for p in summary["points"]]
        wait_for("the points to run", lambda: all(read_status(d).get("state") == "running" for d in dirs))
        done = run_cli("cancel", summary["sweep_dir"], "--where", "x=2", "--state", "running")
        assert done.returncode == 0 and "cancelled 1 point(s): 1" in done.stdout, done.stdout + done.stderr
        wait_for("point 1 to end cancelled", lambda: read_status(dirs[1]).get("state") == "cancelled")
        assert [read_status(d).get("state") for d in (dirs[0], dirs[2])] == ["running", "running"]
    finally:
        hold.unlink()
        subprocess.run(["scancel", *(p["job_id"] for p in summary["points"])], capture_output=True)


@pytest.mark.slurm
def test_hold_and_release_queued_points_shown_in_status(slurm_cluster, tmp_path):
    """seml's hold/release (scontrol hold): a held point does not start while the others run;
    status says why a point waits, in squeue's words (`pending (held)`)."""
    import time

    hold_file = tmp_path / "hold"
    hold_file.write_text("")
    proc = run_cli("sweep", "--json", "--root", tmp_path / "runs", "--array-parallelism", "1",
                   TEST_EXPERIMENTS / "probe.py", "with", "x=[1,2]", f"hold_while_exists={hold_file}",
                   env={"PTSLURM_POLL_S": "0.5"})
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    sweep, dirs = summary["sweep_dir"], [Path(p["storage_dir"]) for p in summary["points"]]
    try:
        wait_for("point 0 to run", lambda: read_status(dirs[0]).get("state") == "running")
        held = run_cli("hold", sweep, "--where", "x=2")
        assert held.returncode == 0 and f"held 1 job(s): {summary['points'][1]['job_id']}" in held.stdout, held.stdout
        rows = wait_for("squeue to say held", lambda: (r := json.loads(run_cli("status", sweep, "--json").stdout))
                        and r[1]["reason"] and r[1]["reason"].startswith("JobHeld") and r)
        assert rows[1]["state"] == "pending"
        assert "pending (held)" in run_cli("status", sweep, env={"COLUMNS": "120"}).stdout
        hold_file.unlink()
        wait_for("point 0 to complete", lambda: read_status(dirs[0]).get("state") == "completed")
        time.sleep(3)
        assert read_status(dirs[1]) == {}, "a held point does not start"
        released = run_cli("release", sweep)
        assert released.returncode == 0 and "released 1 job(s)" in released.stdout, released.stdout
        wait_for("point 1 to complete", lambda: read_status(dirs[1]).get("state") == "completed", timeout=120)
    finally:
        if hold_file.exists():
            hold_file.unlink()
        subprocess.run(["scancel", *(p["job_id"] for p in summary["points"])], capture_output=True)


def test_hold_on_a_local_sweep_says_it_is_slurms(tmp_path, no_slurm):
    proc = run_cli("sweep", "--root", tmp_path, "--name", "l", EXAMPLES / "tiny.py", "with", "steps=3")
    assert proc.returncode == 0
    held = run_cli("hold", "l", "--root", tmp_path)
    assert held.returncode == 2 and "hold and release are SLURM's" in held.stderr
