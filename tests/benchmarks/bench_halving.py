"""Compute used and best result found by successive halving, ASHA, Hyperband and the full grid
on the same points of tests/experiments/curves.py (learning curves that cross), side by side.

    python tests/benchmarks/bench_halving.py [--points 27] [--jobs 2]

Each search runs as `ptslurm sweep --executor local`; compute is the steps every attempt trained
(sacred's info.json, steps_run: continuation, not restarts), the best is the lowest final loss
of the points that reached the last rung (the grid: of all points), wall the whole command.
ASHA runs locally with its rungs in order (its asynchronous promotions need SLURM's jobs).
"""
import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CURVES = HERE.parent / "experiments" / "curves.py"
AXES = {"speed": [0.2, 0.4, 0.6], "floor": [0.0, 0.02, 0.04], "lag": [0, 1, 3]}


def run(where: Path, spec: dict, jobs: int) -> tuple:
    path = where / "sweep.yaml"
    path.write_text(json.dumps(spec))
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ptslurm", "sweep", "--root", str(where / "root"), "--executor",
                           "local", "-j", str(jobs), "--json", "-f", str(path), str(CURVES)],
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(proc.stderr)
    summary = json.loads(proc.stdout)
    manifest = json.loads(Path(summary["sweep_dir"], "manifest.json").read_text())
    steps, finals = 0, []
    top = max(p["updates"]["steps"] for p in manifest["points"])
    for p in manifest["points"]:
        steps += sum(json.loads(i.read_text()).get("steps_run", 0)
                     for i in Path(p["storage_dir"], "sacred").glob("*/info.json"))
        if p["updates"]["steps"] == top:
            state = json.loads(Path(p["storage_dir"], "checkpoints", "state.json").read_text())
            finals.append(state["loss"])
    return steps, min(finals), wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=27, choices=[9, 27], help="9: two axes, 27: three")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    grid = dict(itertools.islice(AXES.items(), 2 if args.points == 9 else 3))
    halving = {"budget": "steps", "min": 2, "max": 18, "eta": 3, "metric": "loss"}
    searches = [("full grid (18 steps each)", {"grid": grid, "fixed": {"steps": 18}}),
                ("successive halving", {"grid": grid, "halving": halving}),
                ("ASHA (rungs in order)", {"grid": grid, "halving": {**halving, "promotion": "async"}}),
                ("Hyperband (3 brackets)", {"grid": grid, "halving": {**halving, "brackets": 3}})]
    print(f"{args.points} points of curves.py, eta 3, rungs 2/6/18 steps, {args.jobs} at a time")
    print(f"{'search':28} {'steps trained':>13} {'of grid':>8} {'best loss':>10} {'wall s':>7}")
    base = None
    with tempfile.TemporaryDirectory() as tmp:
        for k, (name, spec) in enumerate(searches):
            where = Path(tmp) / str(k)
            where.mkdir()
            steps, best, wall = run(where, spec, args.jobs)
            base = base or steps
            print(f"{name:28} {steps:13d} {steps / base:8.2f} {best:10.5f} {wall:7.1f}")


if __name__ == "__main__":
    main()
