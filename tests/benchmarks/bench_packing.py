"""Packed vs unpacked points on the local SLURM cluster (not part of the test run).

    python tests/benchmarks/bench_packing.py [--points 64] [--per-job 16]

Starts its own cluster (tests/slurm_cluster.py; a running one named by $SLURM_CONF is used
instead), then runs the same sweep of tiny points (tests/experiments/probe.py: load the
experiment, build the config, run, record) twice with `ptslurm sweep --wait`: one point per
array task, and `--points-per-job N`. Prints, side by side: the wall time of the whole sweep
(submission to the last point's end), the sbatch calls, the array tasks SLURM started (each
one a scheduling decision, a batch script, an srun step and a submitit start), and how many
points ran at once at most.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from slurm_cluster import running_cluster  # noqa: E402

PROBE = HERE.parent / "experiments" / "probe.py"


def concurrency(storage_dirs):
    """The most points whose attempts overlapped in time."""
    events = []
    for d in storage_dirs:
        a = json.loads((Path(d) / "ptslurm_status.json").read_text())["attempts"][-1]
        events += [(datetime.datetime.fromisoformat(a["started"]).timestamp(), 1),
                   (datetime.datetime.fromisoformat(a["ended"]).timestamp(), -1)]
    best = now = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):
        now += step
        best = max(best, now)
    return best


def run(points, per_job, root):
    cmd = [sys.executable, "-m", "ptslurm", "sweep", "--wait", "--json", "--root", str(root), "--name",
           f"bench-{per_job}", "--points-per-job", str(per_job), str(PROBE), "with",
           "x=[" + ",".join(map(str, range(points))) + "]"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PTSLURM_POLL_S="0.5"))
    secs = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"ptslurm sweep failed: {proc.stderr[-2000:]}")
    summary = json.loads(proc.stdout)
    states = {p["state"] for p in summary["points"]}
    if states != {"completed"}:
        raise SystemExit(f"not every point completed: {states}")
    tasks = len({p["job_id"] for p in summary["points"]})
    return secs, summary["sbatch_calls"], tasks, concurrency(p["storage_dir"] for p in summary["points"])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--points", type=int, default=64)
    p.add_argument("--per-job", type=int, default=16)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="ptslurm-bench-") as tmp:
        tmp = Path(tmp)
        with running_cluster(tmp / "cluster"):
            rows = [(n, *run(args.points, n, tmp / f"root-{n}")) for n in (1, args.per_job)]
    cores = os.cpu_count()
    print(f"{args.points} tiny points (probe.py) on the local cluster (8 CPUs configured, {cores} real cores), "
          f"whole sweep with --wait:\n")
    print(f"{'points/job':>10} {'wall time':>10} {'sbatch calls':>13} {'array tasks':>12} {'points at once':>15}")
    for n, secs, calls, tasks, most in rows:
        print(f"{n:>10} {secs:>9.1f}s {calls:>13} {tasks:>12} {most:>15}")
    (_, t1, _, k1, _), (_, tn, _, kn, _) = rows
    print(f"\npacked/unpacked: wall time {tn / t1:.2f}x, array tasks {kn}/{k1}")


if __name__ == "__main__":
    main()
