"""What an attempt does before running the experiment (issue 20): a point that already
completed in this submission is not run again when its job is requeued; a checkpoints
folder left with only temp files (a kill during the first save) is a fresh start."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLES, TEST_EXPERIMENTS, read_status, run_cli

PADERTORCH_STYLE = """
import os, signal
from pathlib import Path
from sacred import Experiment
ex = Experiment("first-save")

@ex.config
def config():
    storage_dir = None

@ex.automain
def main(storage_dir):
    ckpts = Path(storage_dir) / "checkpoints"
    resume = ckpts.exists()  # the padertorch pattern
    if resume and not list(ckpts.glob("ckpt_*.pth")):
        raise RuntimeError("resume=True but no checkpoint to resume from")
    marker = Path(storage_dir) / "killed-once"
    if not marker.exists():
        marker.write_text("")
        ckpts.mkdir()
        (ckpts / ".ckpt_1.pth.x8k2.tmp").write_bytes(b"half a checkpoint")
        os.kill(os.getpid(), signal.SIGKILL)  # killed during its first save
    ckpts.mkdir(exist_ok=True)
    (ckpts / "ckpt_1.pth").write_bytes(b"done")
    return sorted(p.name for p in ckpts.iterdir())
"""


def test_a_kill_during_the_first_checkpoint_save_is_a_fresh_start(tmp_path, no_slurm):
    exp = tmp_path / "proj" / "exp.py"
    exp.parent.mkdir()
    exp.write_text(PADERTORCH_STYLE)
    args = ["sweep", "--json", "--root", tmp_path / "runs", exp]
    first = run_cli(*args)
    summary = json.loads(first.stdout)
    assert summary["points"][0]["state"] != "completed", first.stderr
    again = run_cli(*args)  # the same command runs what the killed run left
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    point = summary["points"][0]
    assert point["state"] == "completed", again.stderr
    run = json.loads((Path(point["storage_dir"]) / "sacred" / "2" / "run.json").read_text())
    assert run["result"] == ["ckpt_1.pth"], "the killed writer's temp file was removed"


def test_a_requeued_job_of_a_completed_point_exits_at_once(tmp_path, no_slurm):
    proc = run_cli("sweep", "--json", "--root", tmp_path / "runs", EXAMPLES / "tiny.py", "with", "steps=5")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    storage_dir = summary["points"][0]["storage_dir"]
    before = read_status(storage_dir)["attempts"]
    # what SLURM does after a node failure or `scontrol requeue` of a completed job: start it again
    again = subprocess.run([sys.executable, "-m", "ptslurm.job", summary["sweep_dir"], "0"],
                           capture_output=True, text=True, env=dict(os.environ))
    assert again.returncode == 0, again.stderr
    assert "already completed in this submission" in again.stderr
    assert read_status(storage_dir)["attempts"] == before, "no new attempt, nothing ran"
    assert sorted(p.name for p in (Path(storage_dir) / "sacred").iterdir() if p.name.isdigit()) == ["1"]
    # a resubmission is a new submission: it runs
    proc = run_cli("resubmit", summary["sweep_dir"], "--points", "0")
    assert proc.returncode == 0, proc.stderr
    assert len(read_status(storage_dir)["attempts"]) == len(before) + 1


def squeue_has(job: str) -> bool:
    out = subprocess.run(["squeue", "-h", "-r", "-j", job.split("_")[0], "-o", "%i"], capture_output=True, text=True)
    return job in out.stdout.split()


@pytest.mark.slurm
def test_scontrol_requeue_of_a_completed_job_runs_no_point_again(slurm_cluster, tmp_path):
    from conftest import wait_for

    proc = run_cli("sweep", "--wait", "--json", "--root", tmp_path / "runs", EXAMPLES / "tiny.py",
                   "with", "lr=[0.05,0.1]", "steps=5", env={"PTSLURM_POLL_S": "0.5"})
    assert proc.returncode == 0, proc.stderr
    points = json.loads(proc.stdout)["points"]
    before = {p["job_id"]: read_status(p["storage_dir"])["attempts"] for p in points}
    for job in before:
        subprocess.run(["scontrol", "requeue", job], check=True, capture_output=True)
    for job in before:  # each job starts again and ends
        wait_for(f"requeued {job} to run and end", lambda: not squeue_has(job), timeout=120)
    for p in points:
        assert read_status(p["storage_dir"])["attempts"] == before[p["job_id"]], "a completed point ran again"
        log = Path(json.loads(proc.stdout)["sweep_dir"]) / "slurm"
        assert any("already completed in this submission" in f.read_text(errors="replace")
                   for f in log.glob(f"{p['job_id']}*.out")), "the requeued job did start and stood down"
    status = json.loads(run_cli("status", json.loads(proc.stdout)["sweep_dir"], "--json").stdout)
    assert [r["state"] for r in status] == ["completed", "completed"]


@pytest.mark.parametrize("planted", ["cloudpickle.py", "submitit/__init__.py", "tiny_helpers.py"])
def test_a_file_added_to_the_snapshot_never_runs(tmp_path, no_slurm, planted):
    """The job starts outside the snapshot and refuses files its hash list does not name."""
    proc = run_cli("sweep", "--json", "--root", tmp_path / "runs", EXAMPLES / "tiny.py", "with", "steps=5")
    summary = json.loads(proc.stdout)
    marker = tmp_path / "pwned"
    evil = Path(summary["sweep_dir"]) / "code" / planted
    evil.parent.mkdir(parents=True, exist_ok=True)
    evil.write_text(f"open({str(marker)!r}, 'w').close()\n")
    proc = run_cli("resubmit", summary["sweep_dir"], "--points", "0")
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists(), "a planted module ran"
    last = read_status(summary["points"][0]["storage_dir"])["attempts"][-1]
    assert last["state"] == "failed" and "was added" in last["error"] and planted in last["error"]


NEVER_ASKS = """
import time
from sacred import Experiment
ex = Experiment("never-asks")

@ex.automain
def main(_run):
    for step in range(600):
        print(f"step {step}", flush=True)
        time.sleep(0.1)
"""


def test_a_watchdog_stop_leaves_honest_sacred_records(tmp_path, no_slurm):
    """Code that never asks should_stop(): ptslurm ends it, and sacred's records say so."""
    import signal

    from conftest import wait_for

    exp = tmp_path / "proj" / "exp.py"
    exp.parent.mkdir()
    exp.write_text(NEVER_ASKS)
    runner = subprocess.Popen([sys.executable, "-m", "ptslurm", "sweep", "--json", "--root", str(tmp_path / "runs"),
                               str(exp)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    storage_dir = wait_for("the point to start", lambda: next((tmp_path / "runs" / "never-asks").glob("1"), None))
    pid = wait_for("its attempt", lambda: (read_status(storage_dir).get("attempts") or [{}])[-1].get("pid"))
    log = next((tmp_path / "runs" / "sweeps").glob("*/logs/0.log"))
    wait_for("the loop to run", lambda: "step 10\n" in log.read_text(), timeout=60)
    os.kill(pid, signal.SIGUSR2)  # a stop request the code never looks at
    runner.communicate(timeout=60)
    run = json.loads((storage_dir / "sacred" / "1" / "run.json").read_text())
    assert run["status"] == "INTERRUPTED" and run.get("stop_time"), run["status"]
    cout = (storage_dir / "sacred" / "1" / "cout.txt").read_text().strip().splitlines()
    assert cout[-1].startswith("ptslurm: this attempt stopped for"), cout[-3:]
    steps = [ln for ln in cout if ln.startswith("step ")]
    assert len(steps) >= 20, "the output up to the end is in cout.txt (2 s of it after the signal)"
    attempt = read_status(storage_dir)["attempts"][-1]
    assert attempt.get("unheeded") and attempt["state"] == "interrupted"


def _forged_pyc(source: Path, evil: str) -> bytes:
    """A .pyc of ``evil`` whose header claims ``source`` (its mtime and size): what Python's
    default loader would take instead of the source."""
    import importlib._bootstrap_external as external

    st = source.stat()
    return bytes(external._code_to_timestamp_pyc(compile(evil, str(source), "exec"), int(st.st_mtime), st.st_size))


def test_a_compiled_module_planted_in_the_snapshot_never_runs(tmp_path, no_slurm):
    """The snapshot's hash list covers sources, not __pycache__: the job imports the
    experiment and its modules from their verified source, never from a planted .pyc."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "helper.py").write_text("VALUE = 7\n")
    (proj / "exp.py").write_text(
        "from sacred import Experiment\nimport helper\nex = Experiment('planted')\n\n"
        "@ex.automain\ndef main():\n    return helper.VALUE\n")
    proc = run_cli("sweep", "--json", "--root", tmp_path / "runs", proj / "exp.py", cwd=proj)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    code = Path(summary["sweep_dir"]) / "code"
    marker = tmp_path / "pwned"
    evil = f"open({str(marker)!r}, 'w').close()\nVALUE = 666\n"
    tag = sys.implementation.cache_tag
    for name in ("exp", "helper"):
        pyc = code / "__pycache__" / f"{name}.{tag}.pyc"
        pyc.parent.mkdir(exist_ok=True)
        pyc.write_bytes(_forged_pyc(code / f"{name}.py", evil))
    proc = run_cli("resubmit", summary["sweep_dir"], "--points", "0", "--keep-code")
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists(), "a planted .pyc ran"
    last = read_status(summary["points"][0]["storage_dir"])["attempts"][-1]
    assert last["state"] == "completed" and last["result"] == 7, last
    assert sorted(p.name for p in (code / "__pycache__").iterdir()) == sorted(
        f"{n}.{tag}.pyc" for n in ("exp", "helper")), "the job wrote compiled modules into the snapshot"


@pytest.mark.slurm
def test_a_node_crash_while_points_finish_runs_no_completed_point_again(slurm_cluster, tmp_path):
    """slurmd and the job steps SIGKILLed after the points recorded their end but before
    their processes exited (a lingering shutdown), the node DOWN: SLURM requeues the jobs it
    lost on the node; each starts again, sees its point completed in this submission and
    stands down."""
    from conftest import wait_for

    proc = run_cli("sweep", "--json", "--root", tmp_path / "runs", TEST_EXPERIMENTS / "probe.py",
                   "with", "x=[1,2]", "exit_delay_s=60")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    points = summary["points"]
    wait_for("both points to record their end", lambda: all(read_status(p["storage_dir"]).get("state") == "completed"
                                                             for p in points), timeout=120)
    before = {p["job_id"]: read_status(p["storage_dir"])["attempts"] for p in points}
    assert all(squeue_has(job) for job in before), "the jobs still run (their processes linger)"
    slurm_cluster.kill_node()
    slurm_cluster.start_node()

    def restarted(job):
        out = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True, text=True).stdout
        return "Restarts=0" not in out

    wait_for("SLURM to requeue the jobs it lost", lambda: all(restarted(job) for job in before), timeout=240, every=1)
    for job in before:
        wait_for(f"requeued {job} to run and end", lambda: not squeue_has(job), timeout=240, every=1)
    log = Path(summary["sweep_dir"]) / "slurm"
    for p in points:
        assert read_status(p["storage_dir"])["attempts"] == before[p["job_id"]], "a completed point ran again"
        assert any("already completed in this submission" in f.read_text(errors="replace")
                   for f in log.glob(f"{p['job_id']}*.out")), "the requeued job started and stood down"
    status = json.loads(run_cli("status", summary["sweep_dir"], "--json").stdout)
    assert [r["state"] for r in status] == ["completed", "completed"]
