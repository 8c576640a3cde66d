"""Integration tier: sweeps on a real local SLURM cluster (tests/slurm_cluster.py)."""
import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from conftest import EXAMPLES, MAX_ARRAY_SIZE, TEST_EXPERIMENTS, run_cli, tree

pytestmark = pytest.mark.slurm

PROBE = TEST_EXPERIMENTS / "probe.py"


def sweep(*args, env=None, timeout=300):
    proc = run_cli("sweep", *args, env=dict({"PTSLURM_POLL_S": "0.5"}, **(env or {})), timeout=timeout)
    return proc


def test_two_by_two_sweep_completes_on_slurm(slurm_cluster, tmp_path):
    root = tmp_path / "root"
    proc = sweep("--root", root, "--wait", "--json", EXAMPLES / "tiny.py", "with", "lr=[0.05,0.1]", "batch_size=[4,8]")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["executor"] == "slurm"
    arrays = {p["job_id"].split("_")[0] for p in summary["points"]}
    assert len(arrays) == 1, "one job array for the whole sweep"
    assert sorted(p["job_id"].split("_")[1] for p in summary["points"]) == ["0", "1", "2", "3"]
    manifest = json.loads((Path(summary["sweep_dir"]) / "manifest.json").read_text())
    assert [p["job_id"] for p in manifest["points"]] == [p["job_id"] for p in summary["points"]]
    assert manifest["state"] == "submitted"
    for p in summary["points"]:
        d = Path(p["storage_dir"])
        assert p["state"] == "completed"
        run = json.loads((d / "sacred" / "1" / "run.json").read_text())
        assert run["status"] == "COMPLETED"
        info = json.loads((d / "sacred" / "1" / "info.json").read_text())
        assert info["ptslurm"]["job_id"] == p["job_id"]
        assert json.loads((d / "config.json").read_text())["lr"] == p["updates"]["lr"]
    array = arrays.pop()
    for _ in range(50):  # slurmdbd records arrive a moment after the jobs end
        lines = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State"], capture_output=True,
                               text=True).stdout.splitlines()
        states = [ln.split("|")[1] for ln in lines if ln.startswith(f"{array}_")]
        if states.count("COMPLETED") == 4:
            break
        time.sleep(0.2)
    assert states == ["COMPLETED"] * 4, "SLURM's own accounting agrees"


def test_sweep_larger_than_max_array_size_is_split_and_every_point_runs(slurm_cluster, tmp_path):
    n = MAX_ARRAY_SIZE * 2 + 5
    proc = sweep("--root", tmp_path, "--wait", "--json", PROBE, "with", "x=[" + ",".join(map(str, range(n))) + "]",
                 timeout=600)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    arrays = sorted({p["job_id"].split("_")[0] for p in summary["points"]})
    assert len(arrays) == 3
    assert summary["sbatch_calls"] == 4, "3 arrays + one --test-only check"
    assert all(p["state"] == "completed" for p in summary["points"])
    seen = [json.loads((Path(p["storage_dir"]) / "seen.json").read_text()) for p in summary["points"]]
    assert all(s["SLURM_STEP_ID"] == "0" for s in seen), "python must run under srun (a job step)"
    assert [int(s["SLURM_ARRAY_TASK_ID"]) for s in seen] == [i % MAX_ARRAY_SIZE for i in range(n)]
    assert all(s["storage_dir"] == p["storage_dir"] == s["env_storage_dir"] for s, p in zip(seen, summary["points"]))


def test_gpus_land_on_a_gpu_with_cuda_visible_devices(slurm_cluster, tmp_path):
    proc = sweep("--root", tmp_path, "--wait", "--json", "--gpus", "1", PROBE, "with", "x=[1,2]")
    assert proc.returncode == 0, proc.stderr
    for p in json.loads(proc.stdout)["points"]:
        seen = json.loads((Path(p["storage_dir"]) / "seen.json").read_text())
        assert seen["CUDA_VISIBLE_DEVICES"] in ("0", "1")
    script = next((Path(json.loads(proc.stdout)["sweep_dir"]) / "slurm").glob("*submission.sh")).read_text()
    assert "#SBATCH --gres=gpu:1" in script


def test_failed_point_makes_wait_exit_non_zero(slurm_cluster, tmp_path):
    proc = sweep("--root", tmp_path, "--wait", PROBE, "with", "fail=[False,True]")
    assert proc.returncode == 1
    assert "1 of 2 points did not complete (point 1 failed: ValueError: probe failing on purpose" in proc.stderr
    # resubmitted with a longer limit and more memory: the new job asks SLURM for them
    sweep_dir = next(p for p in (tmp_path / "sweeps").iterdir() if (p / "manifest.json").exists())
    again = run_cli("resubmit", sweep_dir, "--points", "1", "--time", "7", "--mem", "0.5")
    assert again.returncode == 0, again.stderr
    assert "the resubmitted points ask for: mem 0.5 GB, time 7 min" in again.stdout, again.stdout
    job = json.loads(run_cli("status", sweep_dir, "--json").stdout)[1]["job_id"]
    shown = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
    assert "TimeLimit=00:07:00" in shown and "MinMemoryNode=512M" in shown, shown


def test_sbatch_rejection_is_one_line_and_creates_nothing(slurm_cluster, tmp_path):
    root = tmp_path / "root"
    proc = sweep("--root", root, PROBE, "--partition", "nope", "with", "x=[1,2]")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "sbatch rejected the job" in lines[0] and "invalid partition" in lines[0].lower()
    assert tree(root) == set()


def test_rejection_at_submission_leaves_no_dir_claiming_to_be_queued(slurm_cluster, tmp_path):
    """sbatch accepts --test-only but refuses the real submission (a quota, say)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "sbatch"
    fake.write_text('#!/bin/sh\ncase "$1" in --test-only) exec /usr/bin/sbatch "$@";; esac\n'
                    'echo "sbatch: error: AssocMaxSubmitJobLimit" >&2\nexit 1\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    root = tmp_path / "root"
    proc = sweep("--root", root, "--name", "refused", PROBE, "with", "x=[1,2,3]",
                 env={"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"})
    assert proc.returncode == 1
    assert "AssocMaxSubmitJobLimit" in proc.stderr.strip().splitlines()[-1]
    manifest = json.loads((root / "sweeps" / "refused" / "manifest.json").read_text())
    assert manifest["state"] == "not_submitted" and "AssocMaxSubmitJobLimit" in manifest["error"]
    assert all(p["job_id"] is None for p in manifest["points"])
    assert not any(Path(p["storage_dir"]).exists() for p in manifest["points"])
    # the same command, once sbatch accepts, submits afresh
    again = sweep("--root", root, "--name", "refused", "--wait", PROBE, "with", "x=[1,2,3]")
    assert again.returncode == 0, again.stderr
    manifest = json.loads((root / "sweeps" / "refused" / "manifest.json").read_text())
    assert manifest["state"] == "submitted" and all(p["job_id"] for p in manifest["points"])


def test_a_sweep_without_time_gets_the_partitions_limit_from_the_experiments_own_folder(slurm_cluster, tmp_path):
    """No --time: the partition's DefaultTime (scontrol show job agrees), and the sweep says
    which; run from the experiment's folder, reading a data file beside it, the job runs in
    the snapshot."""
    folder = tmp_path / "exp folder"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "values.txt").write_text("4 5\n")
    (folder / "exp.py").write_text(
        "import os\nfrom pathlib import Path\nimport torch\nfrom sacred import Experiment\n"
        "ex = Experiment('timed')\n"
        "@ex.config\ndef config():\n    x = 1\n"
        "@ex.automain\ndef main(x):\n"
        "    values = (Path(__file__).parent / 'data' / 'values.txt').read_text().split()\n"
        "    return [x * sum(map(int, values)), os.getcwd()]\n")
    root = tmp_path / "root"
    timed = run_cli("sweep", "--root", root, "--json", "--partition", "timed", "exp.py", "with", "x=[1,2]", cwd=folder)
    assert timed.returncode == 0, timed.stderr
    assert "default time limit 00:45:00" in timed.stderr
    summary = json.loads(timed.stdout)
    for p in summary["points"]:
        info = subprocess.run(["scontrol", "show", "job", p["job_id"]], capture_output=True, text=True).stdout
        assert "TimeLimit=00:45:00" in info, info
    unlimited = run_cli("sweep", "--root", root, "--json", "--wait", "exp.py", "with", "x=[3]", cwd=folder,
                        env={"PTSLURM_POLL_S": "0.5"})
    assert unlimited.returncode == 0, unlimited.stderr
    assert "partition 'debug' has no default or maximum time: jobs run without a time limit" in unlimited.stderr
    (point,) = json.loads(unlimited.stdout)["points"]
    assert point["state"] == "completed"
    info = subprocess.run(["scontrol", "show", "job", point["job_id"]], capture_output=True, text=True).stdout
    # an unlimited limit reads UNLIMITED while pending and 365 days once it runs (SLURM 22.05)
    assert "TimeLimit=UNLIMITED" in info or "TimeLimit=365-00:00:00" in info, info
    status = json.loads((Path(point["storage_dir"]) / "ptslurm_status.json").read_text())
    value, cwd = status["attempts"][-1]["result"]
    assert value == 27
    # the job works in the point's own working dir, which mirrors the snapshot's experiment folder
    assert Path(cwd) == Path(point["storage_dir"]) / "work", "the job works in its point's own dir"
    assert (Path(cwd) / "data" / "values.txt").resolve() == \
        Path(json.loads(unlimited.stdout)["sweep_dir"]) / "code" / "data" / "values.txt"
    subprocess.run(["scancel", *[p["job_id"] for p in summary["points"]]], capture_output=True)
