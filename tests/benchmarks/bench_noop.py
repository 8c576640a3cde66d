"""A no-op re-run: the same `ptslurm sweep` command again, once its sweep exists (it submits
nothing and says so), next to `python exp.py print_config` (the floor of anything that loads a
sacred experiment), in one run. Not part of the test run; the goal is at most 0.3x.

    python tests/benchmarks/bench_noop.py [--points 1000] [--repeats 3]

Both are whole processes, the file cache warm, the best of --repeats. The sweep runs locally
(examples/tiny.py with `steps=1` and an axis of --points sample counts) in a temporary storage root.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TINY = Path(__file__).resolve().parents[2] / "examples" / "tiny.py"


def best(command, env, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, env=env, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ptslurm-bench-noop-") as tmp:
        env = dict(os.environ, STORAGE_ROOT=tmp, SLURM_CONF=str(Path(tmp) / "no-slurm.conf"))
        sweep = [sys.executable, "-m", "ptslurm", "sweep", "-j", "2", str(TINY), "with", "steps=1",
                 f"n_samples=[{','.join(str(n) for n in range(8, args.points + 8))}]"]
        start = time.perf_counter()
        subprocess.run(sweep, env=env, capture_output=True, check=True)
        first = time.perf_counter() - start
        again = best(sweep, env, args.repeats)
        floor = best([sys.executable, str(TINY), "print_config"], env, args.repeats)
    print(f"points:                      {args.points}")
    print(f"first run (runs the points): {first:7.2f} s")
    print(f"the same command again:      {again:7.2f} s")
    print(f"python exp.py print_config:  {floor:7.2f} s")
    print(f"no-op re-run / print_config: {again / floor:7.2f}x (goal <= 0.3x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
