"""`ptslurm status` of a 1,000-point SLURM sweep: wall time and the number of squeue/sacct
calls it makes (one each at most, never one per point). Not part of the test run.

    python tests/benchmarks/bench_status.py [--points 1000]

The scheduler's commands are stand-ins that log each call and answer as a controller would
for jobs that left the queue (squeue: nothing; sacct: COMPLETED/CANCELLED), so the benchmark
needs no cluster; tests/test_lifecycle.py covers the same path on the real one.
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


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--points", type=int, default=1000)
    args = p.parse_args()
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
