"""The benchmark scripts README quotes still run (tiny sizes; the figures come from full runs)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent / "benchmarks"


@pytest.fixture
def left_clean(slurm_cluster):
    """A benchmark on the test cluster leaves it as it found it, even when it is killed at its
    timeout (its own clean-up never runs then): every partition UP (some set them DOWN while
    they measure) and none of its jobs queued, waited for, so that the next test starts on an
    empty queue."""
    import time

    yield
    names = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True).stdout.split()
    for name in {n.rstrip("*") for n in names}:
        subprocess.run(["scontrol", "update", f"partitionname={name}", "state=UP"], check=True)
    subprocess.run(["scancel", "--user", str(os.getuid())], check=True)
    deadline = time.time() + 120
    while subprocess.run(["squeue", "-h", "-u", str(os.getuid())], capture_output=True, text=True).stdout.strip():
        assert time.time() < deadline, "the benchmark's jobs did not leave the queue"
        time.sleep(0.5)


def run(script, *args, timeout=300):
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_bench_collect():
    out = run("bench_collect.py", "--points", "200", "--steps", "5")
    assert "200 completed points" in out and "rows: 200" in out and "cache valid" in out


def test_bench_report():
    out = run("bench_report.py", "--points", "20", "--steps", "5")
    assert "report of 20 points x 2 metrics x 5 steps:" in out and "MB (goal 5 MB)" in out


def test_bench_status():
    out = run("bench_status.py", "--points", "100")
    assert "squeue 1, sacct 1" in out and "90 completed, 10 cancelled" in out


def test_bench_trainer():
    out = run("bench_trainer.py", "--steps", "20", "--repeats", "1", "--width", "32")
    assert "ratio:" in out and "ms/step" in out


@pytest.mark.slurm
def test_bench_submit(left_clean):
    out = run("bench_submit.py", "--sizes", "3")
    assert out.strip().splitlines()[-1].split()[0] == "3"


@pytest.mark.slurm
def test_bench_requeue(left_clean):
    out = run("bench_requeue.py", "--repeats", "1")
    assert "signal -> durable checkpoint" in out and "bare sleep job" in out and "non-polling point" in out
    assert "job start -> first training step" in out and "bare `srun python exp.py`" in out
    assert "requeue -> training again / goal" in out


def test_bench_startup():
    out = run("bench_startup.py", "--repeats", "2")
    assert "python -c pass:" in out and "ptslurm --help:" in out and "target <= 2x" in out


def test_bench_ddp():
    out = run("bench_ddp.py", "--steps", "20", "--width", "32", "--repeats", "1")
    assert "hand-written DDP loop:" in out and "ptslurm Trainer:" in out and "stop agreement" in out


@pytest.mark.slurm
def test_bench_packing(left_clean):
    out = run("bench_packing.py", "--points", "8", "--per-job", "4")
    assert "packed/unpacked: wall time" in out and "array tasks 2/8" in out


def test_bench_noop():
    out = run("bench_noop.py", "--points", "3", "--repeats", "1")
    assert "no-op re-run / print_config:" in out


def test_bench_halving():
    out = run("bench_halving.py", "--points", "9", timeout=600)
    rows = {line[:28].strip(): line[28:].split() for line in out.splitlines()[2:]}
    assert set(rows) == {"full grid (18 steps each)", "successive halving", "ASHA (rungs in order)",
                         "Hyperband (3 brackets)"}
    assert rows["full grid (18 steps each)"][0] == "162" and float(rows["successive halving"][1]) < 0.5


@pytest.mark.slurm
def test_bench_status_pending(left_clean):
    out = run("bench_status.py", "--pending", "--points", "5")
    assert "5 pending points (5 shown pending)" in out and "squeue -r of the array" in out
