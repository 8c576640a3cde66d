"""`ptslurm collect` over a synthetic sweep of 10,000 completed points, next to the time to
simply read the same files with `cat`, in one run (not part of the test run).

    python tests/benchmarks/bench_collect.py [--points 10000] [--steps 50]

Each point has what a finished run leaves: ptslurm_status.json, sacred/1/metrics.json (two
metrics of --steps values), run.json, config.json. Both timings are whole processes, warm cache,
best of 3. A cold collect reads every file (--no-cache); a warm one finds its records in the
sweep's collect cache and only checks that none of the files changed.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_sweep(root: Path, n: int, steps: int) -> Path:
    sweep = root / "sweeps" / "synthetic"
    sweep.mkdir(parents=True)
    points = []
    for i in range(n):
        d = root / "exp" / str(i + 1)
        (d / "sacred" / "1").mkdir(parents=True)
        lr = 10 ** -(1 + i % 4)
        status = {"state": "completed", "attempt": 1, "job_id": f"1_{i}", "updated": "2026-11-28T12:00:00+00:00",
                  "attempts": [{"attempt": 1, "state": "completed", "job_id": f"1_{i}", "sacred_id": "1",
                                "started": "2026-11-28T11:00:00+00:00", "ended": "2026-11-28T12:00:00+00:00",
                                "result": 1.0 / (i + 1)}]}
        (d / "ptslurm_status.json").write_text(json.dumps(status, indent=2))
        metrics = {name: {"steps": list(range(0, steps * 10, 10)),
                          "values": [1.0 / (s + 1 + i) for s in range(steps)],
                          "timestamps": ["2026-11-28T11:00:00.000000"] * steps} for name in ("loss", "accuracy")}
        (d / "sacred" / "1" / "metrics.json").write_text(json.dumps(metrics, indent=2))  # as sacred writes it
        (d / "sacred" / "1" / "run.json").write_text(json.dumps({"status": "COMPLETED", "result": 1.0 / (i + 1),
                                                                 "host": {"hostname": "node"}}))
        (d / "config.json").write_text(json.dumps({"lr": lr, "seed": i}))
        points.append({"index": i, "updates": {"lr": lr, "seed": i}, "named_configs": [], "varied": ["lr", "seed"],
                       "storage_dir": str(d), "job_id": f"1_{i}"})
    manifest = {"schema": 1, "name": "synthetic", "executor": "local", "state": "submitted",
                "varied": ["lr", "seed"], "experiment": {"name": "exp"}, "points": points}
    (sweep / "manifest.json").write_text(json.dumps(manifest))
    return sweep


def best_of(runs, fn):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--points", type=int, default=10000)
    p.add_argument("--steps", type=int, default=50)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="ptslurm-bench-") as tmp:
        tmp = Path(tmp)
        sweep = make_sweep(tmp, args.points, args.steps)
        files = [str(sweep / "manifest.json")]
        for i in range(args.points):
            d = tmp / "exp" / str(i + 1)
            files += [str(d / "ptslurm_status.json"), str(d / "sacred" / "1" / "metrics.json")]
        listing = tmp / "files.txt"
        listing.write_text("\n".join(files))
        cat = best_of(3, lambda: subprocess.run(f"xargs cat < '{listing}' > /dev/null", shell=True, check=True))
        command = [sys.executable, "-m", "ptslurm", "collect", str(sweep), "--format", "csv", "-o", str(tmp / "out.csv")]
        cold = best_of(3, lambda: subprocess.run(command + ["--no-cache"], check=True, capture_output=True))
        subprocess.run(command, check=True, capture_output=True)  # writes the sweep's collect cache
        warm = best_of(3, lambda: subprocess.run(command, check=True, capture_output=True))
        rows = len((tmp / "out.csv").read_text().splitlines()) - 1
    print(f"{args.points} completed points, {len(files)} files read by a cold collect")
    print(f"cat of the same files:             {cat:.3f} s")
    print(f"ptslurm collect, every file read:  {cold:.3f} s  ({cold / cat:.2f}x)")
    print(f"ptslurm collect, cache valid:      {warm:.3f} s  ({warm / cat:.2f}x; stats every file, reads none)")
    print(f"rows: {rows}")


if __name__ == "__main__":
    main()
