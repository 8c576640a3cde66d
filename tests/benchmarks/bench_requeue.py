"""Signal -> durable checkpoint latency and requeue turnaround on the local SLURM cluster,
next to SLURM's own requeue of a bare `sleep` job (not part of the test run).

    python tests/benchmarks/bench_requeue.py [--repeats 3]

For a training point (tests/experiments/resumable.py): `scontrol requeue` at t0, then
 - checkpoint latency: until the stop checkpoint is on disk (fsynced, ckpt_latest moved),
 - turnaround: until the next attempt has loaded it and resumes training.
For a point whose code never asks ptslurm (tests/experiments/plainloop.py, its own
checkpoints): `scontrol requeue` at t0 until the next attempt has started its run (the
watchdog ended the first one ``interrupt.NEVER_ASKED_S`` after the signal).
For a bare `sleep` job: `scontrol requeue` at t0 until the job runs again.
Start-up (P3): from the moment squeue shows the job RUNNING until the log shows the first
training step, for a ptslurm point and for the same `python exp.py` started by `srun` in a
plain sbatch job on the same node.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from slurm_cluster import running_cluster  # noqa: E402

def read_status(storage_dir):
    """The status file as it is on disk ({} before it exists)."""
    try:
        return json.loads((Path(storage_dir) / "ptslurm_status.json").read_text())
    except (OSError, ValueError):
        return {}

EXP = HERE.parent / "experiments" / "resumable.py"
PLAIN = HERE.parent / "experiments" / "plainloop.py"


def poll(what, check, timeout=120, every=0.005, folder=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    status = json.dumps(read_status(folder))[-1500:] if folder else ""
    raise SystemExit(f"timed out after {timeout} s waiting for {what} {status}")


def latest(d: Path) -> str:
    try:
        return os.readlink(d / "checkpoints" / "ckpt_latest.pth")
    except OSError:
        return ""


def bench_point(root: Path):
    proc = subprocess.run([sys.executable, "-m", "ptslurm", "sweep", "--json", "--root", str(root), str(EXP), "with",
                           "trainer.model.delay_s=0.02", "trainer.stop_trigger=(100000,'iteration')",
                           "trainer.checkpoint_trigger=(100000,'iteration')"], capture_output=True, text=True)
    point = json.loads(proc.stdout)["points"][0]
    d, job = Path(point["storage_dir"]), point["job_id"]
    # training under way: the Trainer reported progress (and so asks should_stop() at each step)
    poll("training to start", lambda: read_status(d).get("state") == "running" and read_status(d).get("progress"),
         folder=d)
    time.sleep(1)
    before = latest(d)
    t0 = time.time()
    subprocess.run(["scontrol", "requeue", job], check=True)
    poll("the stop checkpoint", lambda: latest(d) != before, folder=d)
    t_ckpt = time.time()
    poll("the resumed attempt",
         lambda: len(read_status(d).get("attempts", [])) >= 2 and "resumed_from" in read_status(d)["attempts"][1], folder=d)
    t_resume = time.time()
    subprocess.run(["scancel", job])
    attempts = read_status(d)["attempts"]
    from datetime import datetime

    ended = datetime.fromisoformat(attempts[0]["ended"]).timestamp()
    started = datetime.fromisoformat(attempts[1]["started"]).timestamp()
    print(f"  attempt 1 ended {ended - t0:+.0f} s, attempt 2 started {started - t0:+.0f} s, "
          f"resumed {t_resume - t0:+.1f} s after the requeue", file=sys.stderr)
    return t_ckpt - t0, t_resume - t0


def bench_plain(root: Path) -> float:
    proc = subprocess.run([sys.executable, "-m", "ptslurm", "sweep", "--json", "--root", str(root), str(PLAIN), "with",
                           "steps=100000", "delay_s=0.02"], capture_output=True, text=True)
    point = json.loads(proc.stdout)["points"][0]
    d, job = Path(point["storage_dir"]), point["job_id"]
    poll("the plain loop's checkpoint", lambda: (d / "checkpoints" / "state.json").exists(), folder=d)
    time.sleep(2)
    t0 = time.time()
    subprocess.run(["scontrol", "requeue", job], check=True)
    poll("the plain loop's next attempt",
         lambda: len(read_status(d).get("attempts", [])) >= 2 and read_status(d)["attempts"][1].get("sacred_id"), folder=d)
    t = time.time() - t0
    subprocess.run(["scancel", job])
    return t


FIRST_STEP = ["trainer.summary_trigger=(1,'iteration')", "trainer.stop_trigger=(30,'iteration')"]


def _running(job: str) -> bool:
    out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True).stdout
    return "RUNNING" in out


def _first_step(log: Path) -> bool:
    try:
        return "ptslurm: iteration 1/" in log.read_text(errors="replace")
    except OSError:
        return False


def bench_start(root: Path):
    """Job running -> first training step: a ptslurm point, then the bare script under srun."""
    proc = subprocess.run([sys.executable, "-m", "ptslurm", "sweep", "--json", "--root", str(root / "pt"), str(EXP),
                           "with", *FIRST_STEP], capture_output=True, text=True)
    summary = json.loads(proc.stdout)
    job = summary["points"][0]["job_id"]
    from ptslurm.schedulers.submitit_adapter import log_path

    log = log_path(Path(summary["sweep_dir"]) / "slurm", job)
    poll("the point to run", lambda: _running(job), every=0.01)
    t0 = time.time()
    poll("the point's first step", lambda: _first_step(log), every=0.01)
    ptslurm_s = time.time() - t0
    bare_dir = root / "bare"
    bare_dir.mkdir(parents=True)
    bare_log = bare_dir / "log.out"
    command = " ".join([sys.executable, str(EXP), "with", f"trainer.storage_dir={bare_dir}",
                        *(f'"{u}"' for u in FIRST_STEP)])
    out = subprocess.run(["sbatch", "--parsable", "-o", str(bare_log), "--wrap", f"srun {command}"],
                         capture_output=True, text=True, check=True).stdout.strip()
    poll("the bare job to run", lambda: _running(out), every=0.01)
    t0 = time.time()
    poll("the bare script's first step", lambda: _first_step(bare_log), every=0.01)
    return ptslurm_s, time.time() - t0


def bench_sleep(folder: Path):
    out = subprocess.run(["sbatch", "--parsable", "-o", "/dev/null", "--wrap", "sleep 600"], capture_output=True,
                         text=True, check=True).stdout.strip()

    def state():
        return subprocess.run(["squeue", "-h", "-j", out, "-o", "%T %r"], capture_output=True, text=True).stdout

    poll("the sleep job to run", lambda: state().startswith("RUNNING"))
    t0 = time.time()
    subprocess.run(["scontrol", "requeue", out], check=True)
    poll("the sleep job to stop", lambda: not state().startswith("RUNNING"), every=0.01)
    poll("the sleep job to run again", lambda: state().startswith("RUNNING"), every=0.01)
    t = time.time() - t0
    subprocess.run(["scancel", out])
    return t


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    # a cancelled point may still be writing its stop checkpoint while the folder goes
    with tempfile.TemporaryDirectory(prefix="ptslurm-bench-", ignore_cleanup_errors=True) as tmp:
        tmp = Path(tmp)
        with running_cluster(tmp / "cluster"):
            try:
                starts = [bench_start(tmp / f"s{i}") for i in range(args.repeats)]
                points = [bench_point(tmp / f"r{i}") for i in range(args.repeats)]
                plains = [bench_plain(tmp / f"p{i}") for i in range(args.repeats)]
                sleeps = [bench_sleep(tmp) for _ in range(args.repeats)]
            finally:
                subprocess.run(["scancel", "--user", str(os.getuid())])
    med = statistics.median
    pt_start, bare_start = med(s[0] for s in starts), med(s[1] for s in starts)
    print(f"job start -> first training step:     {pt_start:8.2f} s  (ptslurm point; bare `srun python exp.py`: "
          f"{bare_start:.2f} s, {pt_start / bare_start:.2f}x)")
    print(f"signal -> durable checkpoint:          {med(p[0] for p in points) * 1000:8.0f} ms "
          f"(runs: {', '.join(f'{p[0] * 1000:.0f}' for p in points)})")
    print(f"requeue turnaround, training point:    {med(p[1] for p in points):8.2f} s  "
          f"(signal -> resumed from the checkpoint)")
    print(f"requeue turnaround, non-polling point: {med(plains):8.2f} s  "
          f"(signal -> next attempt running its own resume)")
    print(f"requeue turnaround, bare sleep job:    {med(sleeps):8.2f} s  (SLURM's own requeue; the training "
          f"point's turnaround less it: {med(p[1] for p in points) - med(sleeps):.2f} s)")
    goal = 1.2 * med(sleeps) + bare_start
    print(f"requeue -> training again / goal:      {med(p[1] for p in points):8.2f} s of {goal:.2f} s (1.2x SLURM's "
          f"own requeue plus the bare start's imports and first step)")
    print("the turnaround is dominated by SLURM's requeue delay (AuthInfo=cred_expire=5 on the test cluster)")


if __name__ == "__main__":
    main()
