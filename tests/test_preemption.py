"""Preemption-proof training on the real local SLURM cluster: requeues, preemption by a job
in a higher-priority partition, SIGKILL of the job step and a point that crashes at start-up."""
import json
import os
import random
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import TEST_EXPERIMENTS, run_cli, wait_for
from conftest import read_status

pytestmark = pytest.mark.slurm

EXP = TEST_EXPERIMENTS / "resumable.py"
SEED = "seed=7"


def status(storage_dir: Path) -> dict:
    return read_status(storage_dir)


def latest_iteration(storage_dir: Path) -> int:
    link = storage_dir / "checkpoints" / "ckpt_latest.pth"
    try:
        return int(os.readlink(link)[len("ckpt_"):-len(".pth")])
    except OSError:
        return 0


def final_params(storage_dir: Path):
    return torch.load(storage_dir / "checkpoints" / "ckpt_120.pth", weights_only=False)["model"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same point trained without interruption (locally)."""
    root = tmp_path_factory.mktemp("reference")
    proc = run_cli("sweep", "--executor", "local", "--root", root, "--json", EXP, "with", SEED)
    assert proc.returncode == 0, proc.stderr
    return final_params(Path(json.loads(proc.stdout)["points"][0]["storage_dir"]))


def start(root, *updates, options=()):
    proc = run_cli("sweep", "--root", root, "--json", *options, EXP, "with", SEED, *updates)
    assert proc.returncode == 0, proc.stderr
    point = json.loads(proc.stdout)["points"][0]
    return point["job_id"], Path(point["storage_dir"])


def sacred_states(storage_dir: Path):
    runs = sorted((storage_dir / "sacred").glob("[0-9]*/run.json"), key=lambda p: int(p.parent.name))
    return [json.loads(r.read_text())["status"] for r in runs]


def assert_same(reference, storage_dir):
    params = final_params(storage_dir)
    for name, tensor in reference.items():
        assert torch.equal(tensor, params[name]), f"{name} differs from the uninterrupted run"


def test_requeue_and_preemption_resume_bit_identical(slurm_cluster, tmp_path, reference):
    rng = random.Random()
    job, storage_dir = start(tmp_path, "trainer.model.delay_s=0.06")
    # 1: scontrol requeue at a random moment of the first attempt
    wait_for("training to start", lambda: latest_iteration(storage_dir) >= rng.randint(10, 30))
    subprocess.run(["scontrol", "requeue", job], check=True)
    wait_for("the second attempt", lambda: status(storage_dir).get("attempt") == 2
             and status(storage_dir).get("state") == "running")
    # 2: preemption by a job that needs the whole node in the high-priority partition
    first = latest_iteration(storage_dir)
    wait_for("progress in attempt 2", lambda: latest_iteration(storage_dir) >= first + rng.randint(10, 30))
    subprocess.run(["sbatch", "-p", "high", "-c", "8", "-o", "/dev/null", "--wrap", "sleep 1"], check=True,
                   capture_output=True)
    wait_for("completion", lambda: status(storage_dir).get("state") == "completed", timeout=240)
    st = status(storage_dir)
    causes = [a.get("cause") for a in st["attempts"]]
    assert causes[:2] == ["requeued", "preempted"] and st["attempts"][-1]["state"] == "completed"
    assert sacred_states(storage_dir) == ["INTERRUPTED", "INTERRUPTED", "COMPLETED"]
    assert st["job_id"] == job, "requeued under the same array task id"
    cout = (storage_dir / "sacred" / "3" / "cout.txt").read_text()
    assert "resuming from ckpt_" in cout
    assert_same(reference, storage_dir)
    sweep_dir = next(p for p in (tmp_path / "sweeps").iterdir() if (p / "manifest.json").exists())
    rows = json.loads(run_cli("collect", sweep_dir, "--format", "json").stdout)
    assert len(rows) == 1, "a resumed point is reported once"
    from conftest import joined_metrics as join_metrics

    joined = join_metrics(storage_dir, st["attempts"])["training/loss"]
    assert joined["steps"] == list(range(10, 121, 10)), "metrics of all attempts joined in order"
    assert rows[0]["training/loss/final"] == joined["values"][-1]
    log = next(Path(p) for p in (Path(json.loads((storage_dir / "ptslurm_status.json").read_text())["code_dir"])
                                 .parent / "slurm").glob(f"{job}_0_log.out"))
    assert log.read_text().count("Starting with JobEnvironment") == 3, "logs are appended across attempts"


def test_sigkill_of_the_step_resumes_from_the_last_periodic_checkpoint(slurm_cluster, tmp_path, reference):
    job, storage_dir = start(tmp_path, "trainer.model.delay_s=0.06")
    wait_for("a few checkpoints", lambda: latest_iteration(storage_dir) >= 40)
    pid = status(storage_dir)["attempts"][-1]["pid"]
    os.kill(pid, signal.SIGKILL)  # no grace, no handler: like a node failure
    killed_at = latest_iteration(storage_dir)
    wait_for("SLURM to notice", lambda: subprocess.run(["squeue", "-h", "-j", job], capture_output=True,
                                                       text=True).stdout.strip() == "", timeout=60)
    subprocess.run(["scontrol", "requeue", job], check=True)
    wait_for("completion", lambda: status(storage_dir).get("state") == "completed", timeout=240)
    st = status(storage_dir)
    assert st["attempts"][0]["state"] == "lost"
    cout = (storage_dir / "sacred" / "2" / "cout.txt").read_text()
    assert f"resuming from ckpt_{killed_at}.pth" in cout
    assert_same(reference, storage_dir)
