"""`ptslurm report` of a synthetic sweep of 1,000 completed points (two metrics of 100 steps
each, as bench_collect makes them): the whole command's time and the page's size (goal: under
2 s and under 5 MB), best of 3, warm cache (not part of the test run).

    python tests/benchmarks/bench_report.py [--points 1000] [--steps 100]
"""
import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_collect import make_sweep  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--points", type=int, default=1000)
    p.add_argument("--steps", type=int, default=100)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sweep = make_sweep(Path(tmp), args.points, args.steps)
        out = Path(tmp) / "report.html"
        times = []
        for _ in range(3):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "ptslurm", "report", str(sweep), "-o", str(out)], check=True,
                           stdout=subprocess.DEVNULL)
            times.append(time.perf_counter() - start)
        size = out.stat().st_size / 1e6
    print(f"report of {args.points} points x 2 metrics x {args.steps} steps: {min(times):.2f} s "
          f"(goal 2 s), {size:.1f} MB (goal 5 MB)")


if __name__ == "__main__":
    main()
