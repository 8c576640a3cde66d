"""Several points per job and resources per point on the real local SLURM cluster (two fake
GPUs): packed points complete in their own storage dirs and share the GPUs as documented; a
packed job requeued twice and preempted once resumes every point bit-identical to an
uninterrupted unpacked run and never runs a completed point again; a failing point leaves its
siblings alone and `resubmit --failed` finishes it; a cancelled point stops while its siblings
go on; two sub-grids of different resources become two arrays, and a submission killed
between their sbatch calls is finished with each point queued once."""
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import TEST_EXPERIMENTS, read_status, run_cli, wait_for

pytestmark = pytest.mark.slurm

PROBE = TEST_EXPERIMENTS / "probe.py"
RESUMABLE = TEST_EXPERIMENTS / "resumable.py"
FAST = {"PTSLURM_POLL_S": "0.5"}


def sweep(root, *args, env=None, ok=(0,)):
    proc = run_cli("sweep", "--root", root, "--json", *args, env=env)
    assert proc.returncode in ok, proc.stderr
    return json.loads(proc.stdout)


def rows(sweep_dir):
    return json.loads(run_cli("status", sweep_dir, "--json").stdout)


def sacred_states(storage_dir: Path):
    runs = sorted((Path(storage_dir) / "sacred").glob("[0-9]*/run.json"), key=lambda p: int(p.parent.name))
    return [json.loads(r.read_text())["status"] for r in runs]


def in_queue(job: str) -> bool:
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True).stdout.split()
    return job in out


def test_eight_points_four_per_job_run_as_two_array_tasks_sharing_two_gpus(slurm_cluster, tmp_path):
    summary = sweep(tmp_path, "--wait", "--gpus", "2", "--points-per-job", "4", PROBE, "with",
                    "x=[1,2,3,4,5,6,7,8]", env=FAST)
    points = summary["points"]
    assert [p["state"] for p in points] == ["completed"] * 8
    jobs = [p["job_id"] for p in points]
    assert len(set(jobs[:4])) == 1 and len(set(jobs[4:])) == 1 and jobs[0] != jobs[4], jobs
    assert summary["sbatch_calls"] == 2, "the pre-flight and one array"
    seen = [json.loads((Path(p["storage_dir"]) / "seen.json").read_text()) for p in points]
    # the job's two GPUs round-robin: points 0 and 2 of a job on the first, 1 and 3 on the second
    assert [s["CUDA_VISIBLE_DEVICES"] for s in seen] == ["0", "1", "0", "1"] * 2
    assert [s["storage_dir"] for s in seen] == [p["storage_dir"] for p in points], "each its own storage dir"
    for p in points:
        assert sacred_states(p["storage_dir"]) == ["COMPLETED"], "each point its own sacred/1"
        first = read_status(p["storage_dir"])["attempts"][0]
        assert first["job_id"] == p["job_id"] and first["packed"] == 4
    table = run_cli("status", summary["sweep_dir"]).stdout
    assert f"{jobs[0]} (4 points)" in table and f"{jobs[4]} (4 points)" in table
    for index in (5, 6):  # each point's own output, captured and live
        assert f"Result: {index + 1}" in run_cli("logs", summary["sweep_dir"], str(index)).stdout
        live = run_cli("logs", summary["sweep_dir"], str(index), "--follow", timeout=60).stdout
        assert f"Result: {index + 1}" in live and f"Result: {index + 2}" not in live


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The point trained without interruption and without packing (locally)."""
    root = tmp_path_factory.mktemp("reference")
    proc = run_cli("sweep", "--executor", "local", "--root", root, "--json", RESUMABLE, "with", "seed=7")
    assert proc.returncode == 0, proc.stderr
    storage_dir = Path(json.loads(proc.stdout)["points"][0]["storage_dir"])
    return torch.load(storage_dir / "checkpoints" / "ckpt_120.pth", weights_only=False)["model"]


def latest_iteration(storage_dir: Path) -> int:
    try:
        return int(os.readlink(Path(storage_dir) / "checkpoints" / "ckpt_latest.pth")[len("ckpt_"):-len(".pth")])
    except OSError:
        return 0


def test_a_packed_job_requeued_twice_and_preempted_resumes_every_point_exactly(slurm_cluster, tmp_path, reference):
    rng = random.Random()
    # two slow points and one that completes at once; delay_s does not change the numbers
    summary = sweep(tmp_path, "--points-per-job", "3", RESUMABLE, "with", "seed=7",
                    "trainer.model.delay_s=[0.06,0.07,0.0]")
    job = summary["points"][0]["job_id"]
    slow, other, quick = (Path(p["storage_dir"]) for p in summary["points"])
    assert {p["job_id"] for p in summary["points"]} == {job}
    wait_for("the quick point to complete", lambda: read_status(quick).get("state") == "completed", timeout=120)
    for attempt in (1, 2):  # scontrol requeue at a random moment of each attempt
        reached = latest_iteration(slow) + rng.randint(10, 30)
        wait_for(f"progress in attempt {attempt}", lambda: latest_iteration(slow) >= reached, timeout=120)
        subprocess.run(["scontrol", "requeue", job], check=True)
        wait_for(f"attempt {attempt + 1}", lambda: read_status(slow).get("attempt") == attempt + 1
                 and read_status(slow).get("state") == "running", timeout=180)
    reached = latest_iteration(slow) + rng.randint(5, 15)
    wait_for("progress in attempt 3", lambda: latest_iteration(slow) >= reached, timeout=120)
    # preemption by a job that needs the whole node in the high-priority partition
    subprocess.run(["sbatch", "-p", "high", "-c", "8", "-o", "/dev/null", "--wrap", "sleep 1"], check=True,
                   capture_output=True)
    wait_for("both slow points to complete", lambda: all(read_status(d).get("state") == "completed"
                                                          for d in (slow, other)), timeout=300)
    for storage_dir in (slow, other):
        attempts = read_status(storage_dir)["attempts"]
        assert [a.get("cause") for a in attempts[:3]] == ["requeued", "requeued", "preempted"], attempts
        assert attempts[-1]["state"] == "completed" and attempts[-1]["job_id"] == job
        assert sacred_states(storage_dir)[-1] == "COMPLETED"
        params = torch.load(storage_dir / "checkpoints" / "ckpt_120.pth", weights_only=False)["model"]
        for name, tensor in reference.items():
            assert torch.equal(tensor, params[name]), f"{name} of {storage_dir} differs from the unpacked run"
    quick_attempts = read_status(quick)["attempts"]
    assert len(quick_attempts) == 1 and sacred_states(quick) == ["COMPLETED"], "a completed point never runs again"
    assert [r["state"] for r in rows(summary["sweep_dir"])] == ["completed"] * 3


def test_a_failing_packed_point_leaves_its_siblings_and_resubmit_finishes_it(slurm_cluster, tmp_path):
    flag = tmp_path / "broken"
    flag.write_text("")
    spec = tmp_path / "sweep.yaml"
    spec.write_text(f"zip:\n  - {{x: [1, 2, 3], fail_if_exists: ['', '{flag}', '']}}\n")
    summary = sweep(tmp_path, "--wait", "--points-per-job", "3", PROBE, "-f", spec, env=FAST, ok=(1,))
    assert [p["state"] for p in summary["points"]] == ["completed", "failed", "completed"]
    job = summary["points"][0]["job_id"]
    assert len({p["job_id"] for p in summary["points"]}) == 1
    failed = read_status(summary["points"][1]["storage_dir"])
    assert len(failed["attempts"]) == 1 and "probe failing on purpose" in failed["attempts"][0]["error"]
    table = rows(summary["sweep_dir"])
    assert table[1]["state"] == "failed" and "probe failing on purpose" in table[1]["error"]
    flag.unlink()
    again = run_cli("resubmit", summary["sweep_dir"], "--failed")
    assert again.returncode == 0, again.stderr
    assert "resubmitted 1 point(s): 1 (" in again.stdout
    wait_for("the resubmitted point", lambda: rows(summary["sweep_dir"])[1]["state"] == "completed", timeout=120)
    assert [r["state"] for r in rows(summary["sweep_dir"])] == ["completed"] * 3
    assert [len(read_status(p["storage_dir"])["attempts"]) for p in summary["points"]] == [1, 2, 1]
    assert job not in rows(summary["sweep_dir"])[1]["job_id"]
    # resubmitted alone, it ran unpacked: its live log is its job's
    assert "packed" not in read_status(summary["points"][1]["storage_dir"])["attempts"][-1]
    live = run_cli("logs", summary["sweep_dir"], "1", "--follow", timeout=60).stdout
    assert "Result: 2" in live and "Result: 1" not in live


def test_cancel_of_one_packed_point_stops_it_while_its_siblings_go_on(slurm_cluster, tmp_path):
    hold = tmp_path / "hold"
    hold.write_text("")
    summary = sweep(tmp_path, "--points-per-job", "3", PROBE, "with", "x=[1,2,3]", f"hold_while_exists={hold}")
    sweep_dir, job = summary["sweep_dir"], summary["points"][0]["job_id"]
    dirs = [p["storage_dir"] for p in summary["points"]]
    try:
        # each point's attempt on record (the queue says running as soon as the job starts)
        wait_for("all three running", lambda: [read_status(d).get("state") for d in dirs] == ["running"] * 3,
                 timeout=120)
        cancelled = run_cli("cancel", sweep_dir, "--points", "1")
        assert cancelled.returncode == 0, cancelled.stderr
        wait_for("the cancelled point's attempt to end", lambda: read_status(dirs[1]).get("state") == "cancelled",
                 timeout=60)
        assert in_queue(job), "the job goes on for the other points"
        assert [r["state"] for r in rows(sweep_dir)] == ["running", "cancelled", "running"]
        hold.unlink()
        wait_for("the siblings to complete", lambda: [r["state"] for r in rows(sweep_dir)]
                 == ["completed", "cancelled", "completed"], timeout=120)
        wait_for("the job to end", lambda: not in_queue(job), timeout=60)
        assert len(read_status(dirs[1])["attempts"]) == 1, "a cancelled point is not run again"
    finally:  # nothing of this test may run on into the next ones
        hold.unlink(missing_ok=True)
        subprocess.run(["scancel", job], capture_output=True)


SUBGRIDS = """
subgrids:
  small:
    grid: {x: [1, 2, 3]}
    resources: {gpus: 1, time: 10, points_per_job: 2}
  large:
    grid: {x: [4, 5]}
    resources: {gpus: 2, tasks_per_node: 1, time: "0-00:20"}
"""


def test_two_subgrids_of_different_resources_killed_mid_submission_queue_each_point_once(slurm_cluster, tmp_path):
    spec = tmp_path / "sweep.yaml"
    spec.write_text(SUBGRIDS)
    # an sbatch that kills `ptslurm sweep` (its caller) right after queueing the first array
    fake = tmp_path / "bin"
    fake.mkdir()
    once = tmp_path / "killed-once"
    (fake / "sbatch").write_text(
        "#!/bin/bash\nout=$(/usr/bin/sbatch \"$@\"); rc=$?; echo \"$out\"\n"
        f"if [ $rc = 0 ] && [[ \"$*\" != *test-only* ]] && [ ! -e {once} ]; then touch {once}; kill -9 $PPID; fi\n"
        "exit $rc\n")
    (fake / "sbatch").chmod(0o755)
    command = ["sweep", "--root", tmp_path, "--name", "groups", "--json", PROBE, "-f", spec]
    killed = run_cli(*command, env={"PATH": f"{fake}:{os.environ['PATH']}"})
    assert killed.returncode == -signal.SIGKILL and once.exists(), killed.stderr
    manifest = json.loads((tmp_path / "sweeps" / "groups" / "manifest.json").read_text())
    assert manifest["state"] == "submitting" and not any(e["job_id"] for e in manifest["points"])
    again = run_cli(*command)
    assert again.returncode == 0, again.stderr
    assert "0 point(s) were recorded, 3 adopted from the queue, 2 queued now" in again.stderr
    summary = json.loads(again.stdout)
    jobs = [p["job_id"] for p in summary["points"]]
    assert jobs[0] == jobs[1] != jobs[2] and len(set(jobs)) == 4, jobs
    sweep_dir = Path(summary["sweep_dir"])
    # what each array asked SLURM for (the killed submission's script is gone: ask the accounting)
    asked = {}
    for job in jobs:
        line = wait_for(f"the accounting of {job}", lambda: next(iter(subprocess.run(
            ["sacct", "-n", "-X", "-P", "-j", job, "-o", "Timelimit,ReqTRES"], capture_output=True,
            text=True).stdout.split()), None), timeout=60)
        limit, tres = line.split("|")
        asked[job] = (limit, "gres/gpu=2" in tres, "gres/gpu=1" in tres)
    assert [asked[j] for j in jobs] == [("00:10:00", False, True)] * 3 + [("00:20:00", True, False)] * 2, asked
    wait_for("every point", lambda: [r["state"] for r in rows(sweep_dir)] == ["completed"] * 5, timeout=180)
    from ptslurm.schedulers.commands import expand_ids

    def tasks():
        out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,JobName", "-S", "now-1hours"],
                             capture_output=True, text=True).stdout
        return [t for line in out.splitlines() if line.endswith("|groups") for t in expand_ids(line.split("|")[0])]

    ever = wait_for("accounting of both arrays", lambda: (lambda t: t if len(t) >= 4 else None)(tasks()), timeout=60)
    assert sorted(ever) == sorted(set(jobs)), "an array task was queued twice, or a queued one is not recorded"
    seen = [json.loads((Path(p["storage_dir"]) / "seen.json").read_text())["CUDA_VISIBLE_DEVICES"]
            for p in summary["points"]]
    # points 0 and 1 share their task's one GPU; point 2 has a task (and a GPU) of its own; the
    # large group's points see both GPUs of their jobs
    assert seen[0] == seen[1] and all(len(s.split(",")) == 1 for s in seen[:3]), seen
    assert seen[3:] == ["0,1", "0,1"], seen


def test_a_group_the_cluster_cannot_run_is_refused_by_the_preflight_and_nothing_is_created(slurm_cluster, tmp_path):
    spec = tmp_path / "sweep.yaml"
    spec.write_text("subgrids:\n  ok: {grid: {x: [1, 2]}, resources: {gpus: 1}}\n"
                    "  big: {grid: {x: [3]}, resources: {gpus: 3, points_per_job: 2}}\n")
    proc = run_cli("sweep", "--root", tmp_path / "root", "--name", "refused-group", PROBE, "-f", spec)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "sbatch rejected the job" in line and "gpus 3 (sweep file)" in line, line
    assert not (tmp_path / "root").exists() or not any((tmp_path / "root").rglob("manifest.json"))
    out = subprocess.run(["squeue", "-h", "-o", "%j"], capture_output=True, text=True).stdout
    assert "refused-group" not in out, "nothing was queued"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z")


def test_a_killed_packing_parent_ends_its_points_and_resubmit_runs_each_once(slurm_cluster, tmp_path):
    """SIGKILL of a packed job's own process (the points' parent): without cgroups nothing
    else ends its points, which trained on while shown failed, and a resubmission ran each
    twice. They must stop with it (recorded, resumable), be resubmitted once and end exact."""
    moments = TEST_EXPERIMENTS / "moments.py"
    summary = sweep(tmp_path, "--points-per-job", "2", moments, "with", "steps=200", "delay_s=0.05",
                    "moment=['main','none']", env=FAST)
    points = summary["points"]
    dirs = [Path(p["storage_dir"]) for p in points]
    wait_for("both points training", lambda: all((d / "work" / "checkpoint.json").exists() for d in dirs), timeout=120)
    pids = [read_status(d)["attempts"][-1]["pid"] for d in dirs]
    parent = int(Path(f"/proc/{pids[0]}/stat").read_text().split(") ")[-1].split()[1])
    assert parent == int(Path(f"/proc/{pids[1]}/stat").read_text().split(") ")[-1].split()[1])
    os.kill(parent, signal.SIGKILL)
    wait_for("the points to end with their parent", lambda: not any(_alive(p) for p in pids), timeout=60)
    wait_for("the job to leave the queue", lambda: not in_queue(points[0]["job_id"]), timeout=60)
    for d in dirs:
        first = read_status(d)["attempts"][0]
        assert first["state"] != "running" and first.get("ended"), first
    table = rows(summary["sweep_dir"])
    assert all(r["state"] in ("failed", "lost", "timeout") for r in table), [(r["state"], r["reason"]) for r in table]
    again = run_cli("resubmit", summary["sweep_dir"], "--failed")
    assert again.returncode == 0 and "resubmitted 2 point(s)" in again.stdout, again.stdout + again.stderr
    wait_for("both points to complete", lambda: all(read_status(d).get("state") == "completed" for d in dirs),
             timeout=180)
    for d in dirs:
        attempts = read_status(d)["attempts"]
        assert len(attempts) == 2 and attempts[-1]["result"] == sum(range(1, 201)), attempts
        assert attempts[1]["started"] >= attempts[0]["ended"], "never two attempts at once"
