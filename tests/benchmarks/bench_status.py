"""`ptslurm status` of a 1,000-point SLURM sweep: wall time and the number of squeue/sacct
calls it makes (one each at most, never one per point). Not part of the test run.

    python tests/benchmarks/bench_status.py [--points 1000]
    python tests/benchmarks/bench_status.py --pending [--points 10000]

The scheduler's commands are stand-ins that log each call and answer as a controller would
for jobs that left the queue (squeue: nothing; sacct: COMPLETED/CANCELLED), so the benchmark
needs no cluster; tests/test_lifecycle.py covers the same path on the real one.

``--pending``: on the local test cluster (tests/slurm_cluster.py; the one $SLURM_CONF names
when it answers), a sweep of that many points queued while the partitions are DOWN (every
point pending); `ptslurm status` of it side by side with `squeue` of its array (median of 3).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_collect import make_sweep  # noqa: E402


def fake_bin(folder: Path, log: Path, n: int) -> None:
    folder.mkdir()
    scripts = {
        "sbatch": "exit 0",
        "scontrol": 'case "$1" in ping) echo "Slurmctld(primary) at ctl is UP";; esac',
        "squeue": "",
        # JobID|State|Start, as `sacct -n -D -X -P -o JobID,State,Start` prints
        "sacct": f"for i in $(seq 0 {n - 1}); do if [ $((i % 10)) = 0 ]; then "
                 f"echo \"1_$i|CANCELLED by 0|2026-11-29T01:00:00\"; "
                 f"else echo \"1_$i|COMPLETED|2026-11-29T01:00:00\"; fi; done",
    }
    for name, body in scripts.items():
        path = folder / name
        path.write_text(f"#!/bin/bash\necho {name} >> '{log}'\n{body}\n")
        path.chmod(0o755)


def median_s(cmd, repeats=3):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def pending(n):
    from bench_submit import PROBE, cancel_all, partitions
    from slurm_cluster import running_cluster

    with tempfile.TemporaryDirectory(prefix="ptslurm-bench-") as tmp:
        tmp = Path(tmp)
        with running_cluster(tmp / "cluster", max_array_size=max(1001, n + 1)):
            partitions("DOWN")
            try:
                proc = subprocess.run([sys.executable, "-m", "ptslurm", "sweep", "--json", "--root", str(tmp / "root"),
                                       "--name", "pending", str(PROBE), "with",
                                       "x=[" + ",".join(map(str, range(n))) + "]"],
                                      capture_output=True, text=True, check=True)
                summary = json.loads(proc.stdout)
                arrays = sorted({p["job_id"].split("_")[0] for p in summary["points"]})
                status = [sys.executable, "-m", "ptslurm", "status", summary["sweep_dir"]]
                states = [r["state"] for r in json.loads(subprocess.run(status + ["--json"], capture_output=True,
                                                                         text=True, check=True).stdout)]
                t_status = median_s(status)
                t_squeue = median_s(["squeue", "-r", "-j", ",".join(arrays)])
            finally:
                cancel_all()
                partitions("UP")
    print(f"{n} pending points ({states.count('pending')} shown pending): ptslurm status {t_status:.2f} s, "
          f"squeue -r of the array {t_squeue:.2f} s: {t_status / t_squeue:.1f}x (target <= 5x)")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--points", type=int, default=1000)
    p.add_argument("--pending", action="store_true", help="a pending sweep on the test cluster, against squeue")
    args = p.parse_args()
    if args.pending:
        return pending(args.points)
    with tempfile.TemporaryDirectory(prefix="ptslurm-bench-") as tmp:
        tmp = Path(tmp)
        sweep = make_sweep(tmp, args.points, 10)
        manifest = json.loads((sweep / "manifest.json").read_text())
        manifest["executor"] = "slurm"
        for entry in manifest["points"][::10]:  # every tenth point never wrote a file
            os.unlink(Path(entry["storage_dir"]) / "ptslurm_status.json")
        (sweep / "manifest.json").write_text(json.dumps(manifest))
        log = tmp / "calls.log"
        fake_bin(tmp / "bin", log, args.points)
        (tmp / "slurm.conf").write_text("")
        env = dict(os.environ, PATH=f"{tmp / 'bin'}{os.pathsep}{os.environ['PATH']}", SLURM_CONF=str(tmp / "slurm.conf"))
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "ptslurm", "status", str(sweep), "--json"], env=env,
                             capture_output=True, text=True, check=True)
        elapsed = time.perf_counter() - start
        calls = log.read_text().split()
        states = [r["state"] for r in json.loads(out.stdout)]
    print(f"ptslurm status of {args.points} points: {elapsed:.2f} s")
    print(f"scheduler calls: squeue {calls.count('squeue')}, sacct {calls.count('sacct')}, "
          f"scontrol {calls.count('scontrol')} (the availability check)")
    print(f"states: {states.count('completed')} completed, {states.count('cancelled')} cancelled (from sacct)")


if __name__ == "__main__":
    main()
