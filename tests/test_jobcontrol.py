"""Control around a running point on the real local SLURM cluster (and locally): cancel that
stops, one writer per storage dir, code that never asks ptslurm surviving time limits and
preemption, killed attempts on record, and the retry policy."""
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import TEST_EXPERIMENTS, run_cli, wait_for
from conftest import read_status

PLAIN = TEST_EXPERIMENTS / "plainloop.py"
RESUMABLE = TEST_EXPERIMENTS / "resumable.py"


def step(storage_dir) -> int:
    """The plain loop's step in its own checkpoint (0 before the first)."""
    try:
        return json.loads((Path(storage_dir) / "checkpoints" / "state.json").read_text())["step"]
    except (OSError, ValueError):
        return 0


def sweep(root, *args, env=None, timeout=300):
    proc = run_cli("sweep", "--root", root, "--json", *args, env=env, timeout=timeout)
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout), proc


def queued(job_ids):
    arrays = sorted({j.split("_")[0] for j in job_ids})
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i", "-j", ",".join(arrays)], capture_output=True, text=True)
    return [j for j in out.stdout.split() if j in set(job_ids)]


def states(command, sweep_dir):
    if command == "status":
        return [r["state"] for r in json.loads(run_cli("status", sweep_dir, "--json").stdout)]
    if command == "collect":
        return [r["state"] for r in json.loads(run_cli("collect", sweep_dir, "--format", "json").stdout)]
    listed = run_cli("list", Path(sweep_dir).parent.parent).stdout
    line = next(ln for ln in listed.splitlines() if ln.startswith(Path(sweep_dir).name))
    return line.split()[-2:]


@pytest.mark.slurm
@pytest.mark.parametrize("how", ["ptslurm cancel", "scancel"])
def test_cancel_stops_running_points_for_good(slurm_cluster, tmp_path, how):
    summary, _ = sweep(tmp_path, RESUMABLE, "with", "trainer.model.delay_s=0.2", "seed=[1,2]")
    jobs = [p["job_id"] for p in summary["points"]]
    dirs = [Path(p["storage_dir"]) for p in summary["points"]]
    wait_for("both points training", lambda: all((d / "checkpoints").exists() for d in dirs), timeout=120)
    if how == "scancel":
        subprocess.run(["scancel", *jobs], check=True)
    else:
        proc = run_cli("cancel", summary["sweep_dir"])
        assert proc.returncode == 0 and "cancelled 2 point(s)" in proc.stdout, proc.stderr
    wait_for("the queue to be empty of them", lambda: not queued(jobs), timeout=30)
    time.sleep(10)  # long enough for a requeued task to show up again
    assert not queued(jobs), "a cancelled point came back"
    for d in dirs:
        attempts = read_status(d)["attempts"]
        assert len(attempts) == 1 and attempts[0]["cause"] == "cancelled" and attempts[0].get("action") is None
    assert states("status", summary["sweep_dir"]) == ["cancelled", "cancelled"]
    assert states("collect", summary["sweep_dir"]) == ["cancelled", "cancelled"]
    assert states("list", summary["sweep_dir"]) == ["cancelled", "2"]


def writers(storage_dir):
    """(job, pid) of every attempt that ran in the storage dir, from its records."""
    return [(a["job_id"], a["pid"], a["started"], a.get("ended")) for a in read_status(storage_dir)["attempts"]]


def no_overlap(storage_dir):
    spans = sorted((a["started"], a.get("ended") or a.get("heartbeat")) for a in read_status(storage_dir)["attempts"])
    return all(end <= nxt_start for (_, end), (nxt_start, _) in zip(spans, spans[1:]))


@pytest.mark.slurm
def test_cancel_then_resubmit_at_once_has_one_writer_and_ends_bit_identical(slurm_cluster, tmp_path):
    import torch

    ref_root = tmp_path / "ref"
    ref, _ = sweep(ref_root, "--executor", "local", RESUMABLE, "with", "seed=7")
    reference = torch.load(Path(ref["points"][0]["storage_dir"]) / "checkpoints" / "ckpt_120.pth",
                           weights_only=False)["model"]
    summary, _ = sweep(tmp_path / "root", RESUMABLE, "with", "seed=7", "trainer.model.delay_s=0.1")
    storage_dir = Path(summary["points"][0]["storage_dir"])
    wait_for("progress", lambda: (storage_dir / "checkpoints" / "ckpt_30.pth").exists(), timeout=120)
    assert run_cli("cancel", summary["sweep_dir"]).returncode == 0
    again = run_cli("resubmit", summary["sweep_dir"], "--points", "0")
    assert again.returncode == 0, again.stderr
    wait_for("completion", lambda: read_status(storage_dir).get("state") == "completed"
             and read_status(storage_dir).get("submission") == 1, timeout=240)
    attempts = read_status(storage_dir)["attempts"]
    assert [a["state"] for a in attempts] == ["cancelled", "completed"]
    assert no_overlap(storage_dir), f"two attempts wrote the storage dir at once: {writers(storage_dir)}"
    params = torch.load(storage_dir / "checkpoints" / "ckpt_120.pth", weights_only=False)["model"]
    assert all(torch.equal(t, params[k]) for k, t in reference.items())
    assert "resuming from ckpt_" in run_cli("logs", summary["sweep_dir"], "0").stdout


def test_local_cancel_kills_the_process_and_resubmit_resumes_with_one_writer(tmp_path, no_slurm):
    root = tmp_path / "root"
    runner = subprocess.Popen([os.sys.executable, "-m", "ptslurm", "sweep", "--root", str(root), "--name", "loc",
                               str(PLAIN), "with", "steps=40", "delay_s=0.1"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    sweep_dir = root / "sweeps" / "loc"
    storage_dir = wait_for("the point to start", lambda: next((root / "plainloop").glob("1"), None), timeout=60)
    wait_for("a checkpoint", lambda: (storage_dir / "checkpoints" / "state.json").exists(), timeout=60)
    pid = read_status(storage_dir)["attempts"][-1]["pid"]
    proc = run_cli("cancel", sweep_dir)
    assert proc.returncode == 0 and "cancelled 1 point(s)" in proc.stdout
    wait_for("the process to end", lambda: not os.path.exists(f"/proc/{pid}") or
             open(f"/proc/{pid}/stat").read().split(") ")[-1].startswith("Z"), timeout=20)
    runner.wait(timeout=60)
    assert states("status", sweep_dir) == ["cancelled"]
    time.sleep(1)
    assert states("status", sweep_dir) == ["cancelled"], "a cancelled local point came back"
    again = run_cli("resubmit", sweep_dir, "--points", "0")
    assert again.returncode == 0, again.stderr
    attempts = read_status(storage_dir)["attempts"]
    assert [a["state"] for a in attempts] == ["cancelled", "completed"]
    assert attempts[-1]["result"] == sum(range(41)), "every step ran exactly once"
    assert no_overlap(storage_dir)


def test_a_second_attempt_never_trains_into_a_held_storage_dir(tmp_path, monkeypatch):
    from ptslurm.job import lease

    monkeypatch.setattr(lease, "HEARTBEAT_S", 0.2)
    held = lease.acquire(tmp_path, "123_4", wait_s=0)
    with pytest.raises(lease.LeaseHeld, match="in use by another live attempt"):
        lease.acquire(tmp_path, "999_0", wait_s=0.5, scheduler_running=lambda job: True)
    # the scheduler no longer runs the holder but it still beats (its packing parent was
    # killed, it trains on): not taken over
    with pytest.raises(lease.LeaseHeld):
        lease.acquire(tmp_path, "999_0", wait_s=0, scheduler_running=lambda job: False)
    # ... until it has been silent for two heartbeats: taken over
    held._stop.set()
    time.sleep(0.5)
    import datetime

    data = json.loads((tmp_path / lease.LEASE).read_text())
    data["heartbeat"] = (datetime.datetime.now(datetime.timezone.utc)
                         - datetime.timedelta(seconds=lease.ENDED_JOB_STALE_S + 5)).isoformat()
    (tmp_path / lease.LEASE).write_text(json.dumps(data))
    taken = lease.acquire(tmp_path, "999_0", wait_s=0, scheduler_running=lambda job: False)
    assert not held.mine() and taken.mine()
    held.release()  # the old holder, back from the dead, does not remove the new lease
    assert (tmp_path / lease.LEASE).exists()
    taken.release()
    # the same array task (a requeue) takes its own stale lease at once; a torn lease too
    again = lease.acquire(tmp_path, "999_0", wait_s=0)
    again._stop.set()
    assert lease.acquire(tmp_path, "999_0", wait_s=0).mine()


@pytest.mark.slurm
def test_code_that_never_asks_survives_preemption(slurm_cluster, tmp_path):
    """30 s of training, preempted twice (by a job of the high-priority partition) at random
    moments; the time-limit cases run in tests/test_long_training.py."""
    steps = 120
    summary, _ = sweep(tmp_path, "--max-requeues", "8", PLAIN, "with", f"steps={steps}", "delay_s=0.25")
    storage_dir = Path(summary["points"][0]["storage_dir"])
    job = summary["points"][0]["job_id"]
    rng = random.Random()
    for _ in range(2):
        wait_for("an attempt running", lambda: read_status(storage_dir).get("state") == "running", timeout=120)
        start = read_status(storage_dir)["attempt"]
        target = step(storage_dir) + rng.randint(5, 15)
        wait_for("progress", lambda: step(storage_dir) >= target, timeout=120)
        subprocess.run(["sbatch", "-p", "high", "-c", "8", "-o", "/dev/null", "--wrap", "sleep 1"], check=True,
                       capture_output=True)
        wait_for("the next attempt", lambda: read_status(storage_dir).get("attempt", 0) > start, timeout=120)
    wait_for("completion", lambda: read_status(storage_dir).get("state") == "completed", timeout=400, every=1)
    attempts = read_status(storage_dir)["attempts"]
    stops = attempts[:-1]
    brief = [(a["state"], a.get("cause"), a.get("unheeded"), a.get("action")) for a in attempts]
    assert len(stops) >= 2, brief
    assert all(a.get("unheeded") and a["action"] == "requeue" for a in stops), brief
    assert {a["cause"] for a in stops} == {"preempted"}
    assert attempts[-1]["result"] == steps * (steps + 1) // 2, "resumed from its own checkpoint, no step twice"
    assert all(a["job_id"] == job for a in attempts)
    rows = json.loads(run_cli("collect", summary["sweep_dir"], "--format", "json").stdout)
    assert rows[0]["state"] == "completed" and rows[0]["total/final"] == steps * (steps + 1) // 2


@pytest.mark.slurm
def test_a_killed_attempt_keeps_its_metrics_and_its_own_logs(slurm_cluster, tmp_path):
    summary, _ = sweep(tmp_path, PLAIN, "with", "steps=110", "delay_s=0.2")
    storage_dir, job = Path(summary["points"][0]["storage_dir"]), summary["points"][0]["job_id"]
    wait_for("progress", lambda: step(storage_dir) >= 20, timeout=120)
    first = read_status(storage_dir)["attempts"][0]
    assert str(first["sacred_id"]) == "1", "the run id is on record while the attempt runs"
    time.sleep(11)  # one sacred heartbeat flushes metrics and output
    os.kill(first["pid"], signal.SIGKILL)
    wait_for("SLURM to notice", lambda: not queued([job]), timeout=60)
    subprocess.run(["scontrol", "requeue", job], check=True)
    wait_for("completion", lambda: read_status(storage_dir).get("state") == "completed", timeout=240)
    attempts = read_status(storage_dir)["attempts"]
    assert attempts[0]["state"] == "lost" and str(attempts[1]["sacred_id"]) == "2"
    killed = json.loads((storage_dir / "sacred" / "1" / "metrics.json").read_text())["total"]["steps"]
    rows = json.loads(run_cli("collect", summary["sweep_dir"], "--format", "json").stdout)
    assert rows[0]["total/final"] == 110 * 111 // 2
    from conftest import joined_metrics as join_metrics

    joined = join_metrics(storage_dir, attempts)["total"]["steps"]
    assert joined[: len(killed)][:5] == killed[:5], "the killed attempt's metrics are part of the curve"
    history = json.loads(run_cli("status", summary["sweep_dir"], "--json").stdout)[0]["history"]
    assert history[0]["state"] == "lost" and history[0]["cause"] in ("failed", "requeued", "node_fail"), history
    log1 = run_cli("logs", summary["sweep_dir"], "0", "--attempt", "1").stdout
    log2 = run_cli("logs", summary["sweep_dir"], "0", "--attempt", "2").stdout
    assert "starting at step 0" in log1 and "starting at step 0" not in log2 and log1 != log2


@pytest.mark.slurm
def test_a_start_up_bug_fails_at_once_and_a_failure_after_progress_is_retried(slurm_cluster, tmp_path):
    bug, _ = sweep(tmp_path, "--wait", RESUMABLE, "with", "crash=True", env={"PTSLURM_POLL_S": "0.5"})
    attempts = read_status(bug["points"][0]["storage_dir"])["attempts"]
    assert [(a["state"], a["cause"]) for a in attempts] == [("failed", "failed")]
    late, proc = sweep(tmp_path, "--wait", PLAIN, "with", "steps=12", "delay_s=0.1", "crash_at=10",
                       env={"PTSLURM_POLL_S": "0.5"})
    assert proc.returncode == 0, proc.stderr
    attempts = read_status(late["points"][0]["storage_dir"])["attempts"]
    assert [(a["state"], a.get("cause")) for a in attempts] == [("requeued", "failed"), ("completed", None)]
    assert attempts[-1]["result"] == sum(range(13))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_local_sweep_stops_its_points_and_resubmit_finishes_them(tmp_path, no_slurm, sig):
    root = tmp_path / "root"
    runner = subprocess.Popen([os.sys.executable, "-m", "ptslurm", "sweep", "--root", str(root), "--name", "int",
                               str(PLAIN), "with", "steps=30", "delay_s=0.1", "save_every=3", "crash_at=[-1,-2]"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              # as in a terminal: a suite started in the background (`cmd &` without job
                              # control) ignores SIGINT, and so would the command it starts
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    storage_dir = wait_for("the first point to start", lambda: next((root / "plainloop").glob("1"), None), timeout=60)
    wait_for("a checkpoint", lambda: step(storage_dir) >= 3, timeout=60)
    pid = read_status(storage_dir)["attempts"][-1]["pid"]
    runner.send_signal(sig)
    runner.wait(timeout=60)
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split(") ")[-1].startswith("Z")
    sweep_dir = root / "sweeps" / "int"
    assert states("status", sweep_dir) == ["interrupted", "lost"], "nothing stays pending forever"
    if sig == signal.SIGINT:
        again = run_cli("resubmit", sweep_dir, "--failed")
    else:  # the same command again finishes what the interrupted one left
        again = run_cli("sweep", "--root", root, "--name", "int", PLAIN, "with", "steps=30", "delay_s=0.1",
                        "save_every=3", "crash_at=[-1,-2]")
    assert again.returncode == 0, again.stderr
    assert states("status", sweep_dir) == ["completed", "completed"]
    assert [r["result"] for r in json.loads(run_cli("collect", sweep_dir, "--format", "json").stdout)] == [465, 465]


@pytest.mark.slurm
def test_a_submission_killed_at_random_moments_is_finished_exactly_once(slurm_cluster, tmp_path):
    """SIGKILL `ptslurm sweep` of 300 points (30 arrays here) at random moments, run it
    again each time: every point is queued exactly once, no storage dir is claimed twice or
    leaked, and cancel cancels what is really queued."""
    from conftest import MAX_ARRAY_SIZE

    root, hold = tmp_path / "root", tmp_path / "hold"
    hold.write_text("")
    name = f"kills-{random.randrange(10**6)}"
    n = 300
    head = [os.sys.executable, "-m", "ptslurm", "sweep", "--root", str(root), "--name", name, "--json"]
    tail = [str(TEST_EXPERIMENTS / "probe.py"), "with", f"x=[{','.join(map(str, range(n)))}]",
            f"hold_while_exists={hold}"]
    command = head + tail
    started = time.time()
    full = subprocess.run(head + ["--dry-run"] + tail, capture_output=True, text=True)
    assert full.returncode == 0, full.stderr
    dry_s = time.time() - started
    rng = random.Random()
    kills = 0
    for attempt in range(14):
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # moments across the whole command: pre-flight, allocation, manifest, the sbatch calls
        time.sleep(rng.uniform(0.3 * dry_s, dry_s + 3.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.communicate()
    assert kills >= 10, f"only {kills} runs were killed mid-way"
    final = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    manifest = json.loads((root / "sweeps" / name / "manifest.json").read_text())
    assert manifest["state"] == "submitted"
    jobs = [e["job_id"] for e in manifest["points"]]
    assert all(jobs) and len(set(jobs)) == n, "a point without a job, or two points on one"
    dirs = {e["storage_dir"] for e in manifest["points"]}
    on_disk = {str(p) for p in (root / "probe").iterdir() if p.name.isdigit()}
    assert len(dirs) == n and on_disk == dirs, f"leaked or shared storage dirs: {sorted(on_disk - dirs)[:5]}"
    from ptslurm.schedulers.commands import expand_ids

    def tasks_of_sweep():
        out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,JobName", "-S", "now-1hours"],
                             capture_output=True, text=True).stdout
        return [t for line in out.splitlines() if line.endswith(f"|{name}") for t in expand_ids(line.split("|")[0])]

    ever = wait_for("accounting of every array", lambda: (lambda t: t if len(t) >= n else None)(tasks_of_sweep()),
                    timeout=60)
    assert len(ever) == n and set(ever) == set(jobs), "a point was queued twice, or a queued job is not recorded"
    assert len(ever) // MAX_ARRAY_SIZE <= n  # (sanity: arrays of at most MaxArraySize tasks)
    cancelled = run_cli("cancel", root / "sweeps" / name)
    assert cancelled.returncode == 0, cancelled.stderr
    wait_for("nothing of the sweep in the queue", lambda: not queued(jobs), timeout=60)
    hold.unlink()


@pytest.fixture
def submit_limit_4(slurm_cluster):
    """The cluster's QOS caps this user at 4 queued jobs (array tasks count one each)."""
    def qos(value):
        subprocess.run(["sacctmgr", "-i", "modify", "qos", "normal", "set", f"MaxSubmitJobsPerUser={value}"],
                       check=True, capture_output=True)

    wait_for("an empty queue", lambda: not subprocess.run(["squeue", "-h", "-r"], capture_output=True,
                                                          text=True).stdout.strip(), timeout=120)
    qos(4)
    try:
        yield 4
    finally:
        qos(-1)


@pytest.mark.slurm
def test_a_sweep_over_the_submit_limit_runs_in_waves_and_cancel_stops_them(submit_limit_4, tmp_path):
    refused = subprocess.run(["sbatch", "--array=0-9", "-o", "/dev/null", "--wrap", "true"], capture_output=True,
                             text=True)
    assert refused.returncode != 0 and "QOSMaxSubmitJobPerUserLimit" in refused.stderr, "the limit is in force"
    summary, proc = sweep(tmp_path / "a", "--wait", TEST_EXPERIMENTS / "probe.py", "with",
                          f"x=[{','.join(map(str, range(20)))}]", env={"PTSLURM_POLL_S": "1"}, timeout=400)
    assert proc.returncode == 0, proc.stderr
    assert [p["state"] for p in summary["points"]] == ["completed"] * 20
    assert "--wait submitted the next wave" not in proc.stderr, "the wave jobs alone went on"
    arrays = {p["job_id"].split("_")[0] for p in summary["points"]}
    assert len(arrays) >= 5, "at most 4 queued at a time: several waves"
    # a second sweep: cancel while it waits; nothing of it runs or stays queued afterwards
    hold = tmp_path / "hold"
    hold.write_text("")
    second, _ = sweep(tmp_path / "b", TEST_EXPERIMENTS / "probe.py", "with", f"x=[{','.join(map(str, range(12)))}]",
                      f"hold_while_exists={hold}")
    sweep_dir = second["sweep_dir"]
    assert states("status", sweep_dir).count("waiting") == 9  # 3 queued + the wave job fill the 4 slots
    assert run_cli("cancel", sweep_dir).returncode == 0
    manifest = json.loads((Path(sweep_dir) / "manifest.json").read_text())
    jobs = [e["job_id"] for e in manifest["points"] if e["job_id"]]
    # the held points never ask should_stop(): the watchdog ends them after the signal (a hold
    # released before that would let them complete, which is right: they would have finished)
    wait_for("the queue to be empty", lambda: not queued(jobs), timeout=60)
    hold.unlink()
    time.sleep(3)
    manifest = json.loads((Path(sweep_dir) / "manifest.json").read_text())
    assert sum(1 for e in manifest["points"] if e["job_id"]) == 3, "a cancelled sweep submitted another wave"
    assert states("status", sweep_dir) == ["cancelled"] * 12


@pytest.mark.slurm
def test_a_wave_job_killed_right_after_its_sbatch_is_finished_by_the_points_jobs(submit_limit_4, tmp_path):
    """The wave job is SIGKILLed the moment its sbatch returned (an sbatch on PATH that kills
    its caller once): the next wave is queued but recorded nowhere and no wave job is left.
    The points' jobs, as they end, adopt the queued wave and submit the rest (a new wave job
    when no point fits); `status` only reads: every point runs exactly once (sacct), and
    every queued job is recorded."""
    from ptslurm.schedulers.commands import expand_ids

    real = subprocess.run(["which", "sbatch"], capture_output=True, text=True, check=True).stdout.strip()
    bin_dir, once = tmp_path / "bin", tmp_path / "kill-the-wave-once"
    bin_dir.mkdir()
    once.write_text("")
    wrapper = bin_dir / "sbatch"
    wrapper.write_text(f"""#!/bin/bash
{real} "$@"
rc=$?
if [ $rc = 0 ] && tr '\\0' ' ' < /proc/$PPID/cmdline | grep -q ptslurm.submit.waves && rm '{once}' 2>/dev/null; then
    kill -9 $PPID
fi
exit $rc
""")
    wrapper.chmod(0o755)
    name = f"waves-{random.randrange(10**6)}"
    n = 8
    summary, proc = sweep(tmp_path / "runs", "--name", name, TEST_EXPERIMENTS / "probe.py", "with",
                          f"x=[{','.join(map(str, range(n)))}]",
                          env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    assert proc.returncode == 0, proc.stderr
    sweep_dir = Path(summary["sweep_dir"])
    wait_for("the wave job to be killed after its sbatch", lambda: not once.exists(), timeout=180)

    def finished():
        rows = json.loads(run_cli("status", sweep_dir, "--json").stdout)
        return all(r["state"] == "completed" for r in rows)

    wait_for("the points' jobs to finish the sweep", finished, timeout=300, every=2)
    manifest = json.loads((sweep_dir / "manifest.json").read_text())
    recorded = [e["job_id"] for e in manifest["points"]]
    assert all(recorded) and len(set(recorded)) == n

    def tasks():
        out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,JobName", "-S", "now-1hours"],
                             capture_output=True, text=True).stdout
        return [t for line in out.splitlines() if line.endswith(f"|{name}") for t in expand_ids(line.split("|")[0])]

    ran = wait_for("accounting of every point", lambda: (lambda t: t if len(t) >= n else None)(tasks()), timeout=60)
    assert sorted(ran) == sorted(recorded), "a point ran twice, or a queued job is not recorded"
    assert all(len(read_status(e["storage_dir"])["attempts"]) == 1 for e in manifest["points"])
