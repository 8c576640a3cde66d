"""A stop at any moment of an attempt ends with a true record and a resume, on the test
cluster, for code written as research code is (``tests/experiments/moments.py``: a slow import,
a relative checkpoint file, ``return`` when told to stop): while the experiment is imported,
while sacred sets the run up, between steps, in the middle of a checkpoint write, after main
returned; each point its own job, and all five packed in one. One test per moment, so that a
failure names the moment that broke."""
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import TEST_EXPERIMENTS, read_status, run_cli, wait_for

pytestmark = pytest.mark.slurm

MOMENTS = ["import", "setup", "main", "checkpoint", "after"]
TOTAL = sum(range(1, 21))


def sacred_states(storage_dir: Path) -> dict:
    return {int(r.parent.name): json.loads(r.read_text())["status"]
            for r in (storage_dir / "sacred").glob("[0-9]*/run.json")}


@pytest.fixture(scope="module", params=[False, True], ids=["a job each", "packed"])
def stopped(request, slurm_cluster, tmp_path_factory):
    """Five points, each held at its moment, requeued by `scontrol requeue`, then let go and
    waited for to their ends: (whether packed, the sweep's summary)."""
    packed = request.param
    tmp_path = tmp_path_factory.mktemp("moments")
    holds = tmp_path / "holds"
    holds.mkdir()
    (holds / "hold").write_text("")
    env = {"MOMENTS_DIR": str(holds), "MOMENTS_IMPORT_POINT": "0", "PTSLURM_POLL_S": "0.5"}
    proc = run_cli("sweep", "--root", tmp_path / "root", "--json", *(["--points-per-job", "5"] if packed else []),
                   TEST_EXPERIMENTS / "moments.py", "with", f"moment={MOMENTS!r}".replace(" ", ""), env=env)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    points = summary["points"]
    try:
        wait_for("every point at its moment", lambda: all((holds / f"reached-{m}").exists() for m in MOMENTS),
                 timeout=180)
        for job in sorted({p["job_id"] for p in points}):
            subprocess.run(["scontrol", "requeue", job], check=True, capture_output=True)
        # held on past ptslurm's grace for code that never asked should_stop() (2 s): the import
        # and sacred's set-up are ended by ptslurm, the others stop by themselves
        time.sleep(4)
    finally:
        (holds / "hold").unlink()
    final = {"completed", "failed", "timeout", "cancelled"}
    try:
        wait_for("every point to end", lambda: all(read_status(p["storage_dir"]).get("state") in final
                                                   and not subprocess.run(["squeue", "-h", "-j", p["job_id"]],
                                                                          capture_output=True, text=True).stdout.strip()
                                                   for p in points), timeout=300, every=1)
    except BaseException:
        subprocess.run(["scancel", "--user", str(os.getuid())], capture_output=True, timeout=60)
        raise
    return packed, summary


def test_the_jobs_say_who_resumes_and_warn_of_nothing(stopped):
    packed, summary = stopped
    points = summary["points"]
    logs = [next((Path(summary["sweep_dir"]) / "slurm").glob(f"{job}_0_log.out")).read_text()
            for job in sorted({p["job_id"] for p in points})]
    assert len(logs) == (1 if packed else len(MOMENTS))
    for text in logs:
        assert "warning" not in text, text[-1500:]
    if packed:
        assert "SLURM requeues it (scontrol requeue); point(s) 0-3 resume then" in logs[0], logs[0][-1500:]


@pytest.mark.parametrize("moment", MOMENTS)
def test_a_stop_at_this_moment_ends_completed_with_a_true_record(stopped, moment):
    packed, summary = stopped
    point = summary["points"][MOMENTS.index(moment)]
    storage_dir = Path(point["storage_dir"])
    st = read_status(storage_dir)
    attempts = st["attempts"]
    assert st["state"] == "completed" and attempts[-1]["result"] == TOTAL, (moment, attempts)
    if moment == "after":  # main had returned: the training is complete, and recorded so
        assert [a["state"] for a in attempts] == ["completed"], attempts
        assert sacred_states(storage_dir) == {1: "COMPLETED"}
    else:
        assert [(a["state"], a["cause"]) for a in attempts[:-1]] == [("requeued", "requeued")], (moment, attempts)
        assert len(attempts) == 2, (moment, attempts)
        states = sacred_states(storage_dir)
        # a stop during the import ends the attempt before sacred started a run
        assert states == ({1: "COMPLETED"} if moment == "import" else {1: "INTERRUPTED", 2: "COMPLETED"}), \
            (moment, states)
        assert str(attempts[-1]["sacred_id"]) == str(len(states))
    if moment in ("main", "checkpoint"):
        cout = (storage_dir / "sacred" / "2" / "cout.txt").read_text()
        assert "starting at step 10" in cout, "resumed from its own relative checkpoint"
    if moment not in ("import", "after"):
        stopped_cout = (storage_dir / "sacred" / "1" / "cout.txt").read_text()
        last = stopped_cout.rstrip("\n").splitlines()[-1]
        assert last.startswith("ptslurm: "), (moment, stopped_cout[-300:])
        assert "not requeued" not in stopped_cout and "Traceback" not in stopped_cout, (moment, stopped_cout[-600:])
        assert "SLURM requeues the job; the next attempt resumes" in last, last
        if moment in ("main", "checkpoint"):  # the code's own last words, then ptslurm's, each on a line
            assert "\nstop requested at step 10: checkpoint saved\n" in stopped_cout, stopped_cout[-300:]
            assert "(the code returned after ptslurm.should_stop() was True)" in last, last
    log = (Path(summary["sweep_dir"]) / "logs" / f"{point['index']}.log" if packed else
           next((Path(summary["sweep_dir"]) / "slurm").glob(f"{point['job_id']}_0_log.out")))
    text = log.read_text()
    assert "Traceback" not in text, (moment, text[-2000:])
    assert "srun: error" not in text, (moment, text[-2000:])  # a planned stop is no error
    if moment != "after":
        assert "ptslurm: this attempt stopped for scontrol requeue" in text, (moment, text[-1500:])
