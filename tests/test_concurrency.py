"""Exactly once under concurrent commands (issue 20): two `resubmit`s and a `cancel` at the
same moment, ten rounds, on the local cluster. Every job that ran is on record, no point
ever has two attempts at once, and cancel leaves nothing queued."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TEST_EXPERIMENTS, read_status, run_cli, wait_for

pytestmark = pytest.mark.slurm

PROBE = TEST_EXPERIMENTS / "probe.py"


def sweep_jobs(sweep_dir):
    """Array tasks sacct knows for the sweep (its jobs carry the sweep's name)."""
    name = Path(sweep_dir).name
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,JobName", "-S", "now-1hours"],
                         capture_output=True, text=True).stdout
    return {line.split("|")[0] for line in out.splitlines()
            if "|" in line and line.split("|", 1)[1] == name and "_" in line.split("|")[0]}


def queued(sweep_dir):
    from ptslurm.submit.submission import submit_marker

    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%k"], capture_output=True, text=True).stdout
    return [ln for ln in out.splitlines() if submit_marker(Path(sweep_dir)) in ln]


def overlapping(storage_dir):
    spans = sorted((a["started"], a.get("ended") or a.get("heartbeat"), a["job_id"])
                   for a in read_status(storage_dir).get("attempts", []) if a.get("started"))
    return [(a, b) for a, b in zip(spans, spans[1:]) if a[1] and b[0] < a[1]]


def test_two_resubmits_and_a_cancel_at_once_ten_times(slurm_cluster, tmp_path):
    hold = tmp_path / "hold"
    proc = run_cli("sweep", "--json", "--wait", "--root", tmp_path / "runs", PROBE, "with", "x=[1,2]",
                   f"hold_while_exists={hold}", env={"PTSLURM_POLL_S": "0.5"})
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    sweep_dir = summary["sweep_dir"]
    hold.write_text("")  # resubmitted points keep running until cancelled
    for round_ in range(10):
        commands = [["resubmit", sweep_dir, "--points", "0,1"], ["resubmit", sweep_dir, "--points", "0,1"],
                    ["cancel", sweep_dir]]
        procs = [subprocess.Popen([sys.executable, "-m", "ptslurm", *c], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for c in commands]
        outs = [p.communicate(timeout=120) for p in procs]
        for p, (out, err) in zip(procs, outs):
            assert p.returncode in (0, 2), err  # 2: refused (still queued or running): one line
            if p.returncode == 2:
                assert len(err.strip().splitlines()) == 1 and "cancel" in err, err
        assert run_cli("cancel", sweep_dir).returncode == 0  # whatever a resubmit queued after the cancel
        wait_for(f"round {round_}: nothing of the sweep left in the queue", lambda: not queued(sweep_dir), timeout=120)
    manifest = json.loads((Path(sweep_dir) / "manifest.json").read_text())
    recorded = {j for e in manifest["points"] for j in [e.get("job_id"), *e.get("job_history", [])] if j}
    ran = wait_for("sacct to know every job", lambda: sweep_jobs(sweep_dir) or None, timeout=60)
    assert ran <= recorded, f"jobs that ran but are on no record: {sorted(ran - recorded)}"
    for p in summary["points"]:
        assert overlapping(p["storage_dir"]) == [], "two attempts of one point ran at once"
    status = json.loads(run_cli("status", sweep_dir, "--json").stdout)
    assert all(r["state"] in ("cancelled", "completed") for r in status), status
