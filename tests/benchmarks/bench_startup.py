"""How long ``ptslurm --help`` takes next to a bare ``python -c pass`` (the floor any Python
command line pays). Not part of the test run; the target is at most 2x.

    python tests/benchmarks/bench_startup.py [--repeats 20]

Both run as fresh processes with this interpreter; the figure is the median of ``--repeats``
runs after one warm-up each (the OS file cache warm and the bytecode written, as for a user's
second command).
"""
import argparse
import os
import statistics
import subprocess
import sys
import time


def timed(cmd, repeats: int) -> float:
    # warm-up, writing the bytecode a user's first command (or pip install) leaves behind, also
    # where the environment asks Python not to write it (PYTHONDONTWRITEBYTECODE)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(cmd, capture_output=True, check=True, env=env)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    bare = timed([sys.executable, "-c", "pass"], args.repeats)
    # what the console script `ptslurm` runs
    cli = timed([sys.executable, "-c", "import sys; from ptslurm.cli import entry_point; sys.argv[1:] = ['--help']; "
                 "entry_point()"], args.repeats)
    sweep = timed([sys.executable, "-c", "import sys; from ptslurm.cli import entry_point; "
                   "sys.argv[1:] = ['sweep', '--help']; entry_point()"], args.repeats)
    print(f"python -c pass:        {bare * 1000:6.1f} ms")
    print(f"ptslurm --help:        {cli * 1000:6.1f} ms  ({cli / bare:.1f}x; target <= 2x)")
    print(f"ptslurm sweep --help:  {sweep * 1000:6.1f} ms  ({sweep / bare:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
