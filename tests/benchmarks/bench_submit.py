"""Submission speed on the local SLURM cluster (not part of the test run).

    python tests/benchmarks/bench_submit.py [--sizes 10 100 1000]

Starts its own cluster (tests/slurm_cluster.py; a running one named by $SLURM_CONF is used
instead), then for each size prints, side by side:
the wall time of `ptslurm sweep` until every point is queued (pre-flight of every config
included) and the sbatch calls it made; submitit's own executor.batch() of the same number
of trivial calls; one raw `sbatch --array`; and a loop of per-point `sbatch` calls.
Jobs are cancelled after each measurement.
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
sys.path.insert(0, str(HERE.parent))

from slurm_cluster import running_cluster  # noqa: E402

PROBE = HERE.parent / "experiments" / "probe.py"


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def cancel_all():
    subprocess.run(["scancel", "--user", str(os.getuid())], capture_output=True)
    time.sleep(0.5)


def bench_ptslurm(n, root):
    cmd = [sys.executable, "-m", "ptslurm", "sweep", "--json", "--root", str(root), "--name", f"bench{n}",
           str(PROBE), "with", "x=[" + ",".join(map(str, range(n))) + "]"]
    secs, proc = timed(lambda: subprocess.run(cmd, capture_output=True, text=True))
    if proc.returncode != 0:
        raise SystemExit(f"ptslurm sweep failed: {proc.stderr}")
    summary = json.loads(proc.stdout)
    return secs, summary["sbatch_calls"], summary["timing_s"]["submit"]


def bench_submitit(n, folder):
    code = (f"import submitit, time\nex = submitit.SlurmExecutor(folder={str(folder)!r})\n"
            f"ex.update_parameters(time=5)\nt = time.perf_counter()\nwith ex.batch():\n"
            f"    jobs = [ex.submit(int, i) for i in range({n})]\nprint(time.perf_counter() - t)\n")
    # time the whole process, as for ptslurm (interpreter start and imports included)
    secs, proc = timed(lambda: subprocess.run([sys.executable, "-c", code], capture_output=True, text=True))
    if proc.returncode != 0:
        raise SystemExit(f"submitit failed: {proc.stderr}")
    return secs


def bench_raw_array(n, folder):
    cmd = ["sbatch", f"--array=0-{n - 1}", "-o", f"{folder}/raw-%A_%a.out", "--wrap", "true"]
    secs, proc = timed(lambda: subprocess.run(cmd, capture_output=True, text=True))
    return secs


def bench_loop(n, folder):
    def loop():
        for i in range(n):
            subprocess.run(["sbatch", "-o", f"{folder}/loop-%j.out", "--wrap", "true"], capture_output=True)
    secs, _ = timed(loop)
    return secs


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="ptslurm-bench-") as tmp:
        tmp = Path(tmp)
        with running_cluster(tmp / "cluster", max_array_size=max(1001, max(args.sizes) + 1)):
            rows = []
            try:
                for n in args.sizes:
                    folder = tmp / f"n{n}"
                    folder.mkdir()
                    t_pt, calls, t_phase = bench_ptslurm(n, folder / "root")
                    cancel_all()
                    t_sub = bench_submitit(n, folder / "submitit")
                    cancel_all()
                    t_raw = bench_raw_array(n, folder)
                    cancel_all()
                    t_loop = bench_loop(n, folder)
                    cancel_all()
                    rows.append((n, t_pt, t_phase, calls, t_sub, t_raw, t_loop))
                    print(f"  measured n={n}", file=sys.stderr)
            finally:
                cancel_all()
    print("ptslurm sweep: whole command (interpreter, sacred import, loading the experiment and building\n"
          "every point's config included); its submit phase: storage dirs, manifest, snapshot and arrays.\n"
          "submitit batch: a whole python process submitting trivial calls with executor.batch().\n")
    print(f"{'points':>7} {'ptslurm sweep':>14} {'submit phase':>13} {'sbatch calls':>13} {'submitit batch':>15} "
          f"{'raw sbatch --array':>19} {'sbatch loop':>12} {'total/submitit':>15} {'phase/submitit':>15}")
    for n, t_pt, t_phase, calls, t_sub, t_raw, t_loop in rows:
        print(f"{n:>7} {t_pt:>13.2f}s {t_phase:>12.2f}s {calls:>13} {t_sub:>14.2f}s {t_raw:>18.2f}s "
              f"{t_loop:>11.2f}s {t_pt / t_sub:>14.2f}x {t_phase / t_sub:>14.2f}x")


if __name__ == "__main__":
    main()
