"""Submission speed on the local SLURM cluster (not part of the test run).

    python tests/benchmarks/bench_submit.py [--sizes 10 100 1000]

Starts its own cluster (tests/slurm_cluster.py; a running one named by $SLURM_CONF is used
instead), then for each size prints, side by side:
the wall time and peak memory of `ptslurm sweep` until every point is queued (pre-flight of
every config included) and the sbatch calls it made; submitit's own executor.batch() of the
same number of calls in a process that imports the experiment once (the baseline: a hand-written
submitit script); one raw `sbatch --array`; and, up to 1,000 points, a loop of per-point
`sbatch` calls. The partitions are set DOWN meanwhile (jobs are accepted and wait, none runs
beside a measurement) and UP again at the end; jobs are cancelled after each measurement.
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


def partitions(state):
    """Set every partition ``state`` (DOWN: jobs are accepted and wait, so that no job of one
    measurement runs beside the next); returns their names."""
    names = sorted({p.rstrip("*") for p in subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True,
                                                             text=True).stdout.split()})
    for name in names:
        subprocess.run(["scontrol", "update", f"partitionname={name}", f"state={state}"], check=True)
    return names


def cancel_all():
    subprocess.run(["scancel", "--user", str(os.getuid())], capture_output=True)
    time.sleep(0.5)


def bench_ptslurm(n, root):
    """(wall s, sbatch calls, submit phase s, peak RSS MB) of one `ptslurm sweep --json`."""
    cmd = [sys.executable, "-m", "ptslurm", "sweep", "--json", "--root", str(root), "--name", f"bench{n}-{root.parent.name}",
           str(PROBE), "with", "x=[" + ",".join(map(str, range(n))) + "]"]
    out, err = root.parent / f"ptslurm{n}.out", root.parent / f"ptslurm{n}.err"
    start = time.perf_counter()
    with open(out, "w") as o, open(err, "w") as e:
        proc = subprocess.Popen(cmd, stdout=o, stderr=e)
        _, status, usage = os.wait4(proc.pid, 0)
    secs = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"ptslurm sweep failed: {err.read_text()}")
    summary = json.loads(out.read_text())
    listed = subprocess.run(["squeue", "-h", "-r", "-u", str(os.getuid()), "-o", "%i"], capture_output=True, text=True)
    queued = {line.strip() for line in listed.stdout.split()}
    jobs = {p["job_id"] for p in summary["points"]}
    if len(jobs) != n or not jobs <= queued:
        raise SystemExit(f"ptslurm sweep queued {len(jobs & queued)} of {n} points")
    return secs, summary["sbatch_calls"], summary["timing_s"]["submit"], usage.ru_maxrss / 1024


def bench_submitit(n, folder):
    code = (f"import importlib.util, submitit, time\n"
            f"spec = importlib.util.spec_from_file_location('exp', {str(PROBE)!r})\n"
            f"exp = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(exp)\n"
            f"ex = submitit.SlurmExecutor(folder={str(folder)!r})\n"
            f"ex.update_parameters(time=5)\nt = time.perf_counter()\nwith ex.batch():\n"
            f"    jobs = [ex.submit(exp.ex.run, config_updates={{'x': i}}) for i in range({n})]\n"
            f"print(time.perf_counter() - t)\n")
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
            partitions("DOWN")
            try:
                for n in args.sizes:
                    folder = tmp / f"n{n}-{len(rows)}"
                    folder.mkdir()
                    t_pt, calls, t_phase, rss = bench_ptslurm(n, folder / "root")
                    cancel_all()
                    t_sub = bench_submitit(n, folder / "submitit")
                    cancel_all()
                    t_raw = bench_raw_array(n, folder)
                    cancel_all()
                    t_loop = bench_loop(n, folder) if n <= 1000 else float("nan")
                    cancel_all()
                    rows.append((n, t_pt, t_phase, calls, rss, t_sub, t_raw, t_loop))
                    print(f"  measured n={n}", file=sys.stderr)
            finally:
                cancel_all()
                partitions("UP")
    print("ptslurm sweep: whole command (interpreter, sacred import, loading the experiment and building\n"
          "every point's config included; each point's job then checked in squeue), its peak memory; its submit phase: storage dirs, manifest,\n"
          "snapshot and arrays. submitit batch: a whole python process that imports the experiment and\n"
          "submits one call of it per point with executor.batch().\n")
    print(f"{'points':>7} {'ptslurm sweep':>14} {'peak RSS':>9} {'submit phase':>13} {'sbatch calls':>13} "
          f"{'submitit batch':>15} {'raw sbatch --array':>19} {'sbatch loop':>12} {'total/submitit':>15}")
    for n, t_pt, t_phase, calls, rss, t_sub, t_raw, t_loop in rows:
        loop = f"{t_loop:>11.2f}s" if t_loop == t_loop else f"{'-':>12}"
        print(f"{n:>7} {t_pt:>13.2f}s {rss:>6.0f} MB {t_phase:>12.2f}s {calls:>13} {t_sub:>14.2f}s "
              f"{t_raw:>18.2f}s {loop} {t_pt / t_sub:>14.2f}x")


if __name__ == "__main__":
    main()
