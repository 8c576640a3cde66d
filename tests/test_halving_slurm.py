"""Successive halving on the real SLURM cluster, with nothing running between the commands:
the points' own jobs and the decision job decide. A packed sweep (9 points per job) halves
27 points to 3 exactly as locally; ASHA promotes points before their rung is full, only
points in the top third of what had reached the rung then, and each point at most once per
rung; the promoted points end bit-identical to a run straight to their budget."""
import json
import subprocess
from pathlib import Path

import pytest

from conftest import run_cli, wait_for
from test_halving import CURVES, check_exact_and_counted, log_of, points_of, sweep_file
from test_jobcontrol import submit_limit_4  # noqa: F401 - a fixture

pytestmark = pytest.mark.slurm


def search_done(sweep_dir: Path, decisions: int):
    def check():
        rows = json.loads(run_cli("status", sweep_dir, "--json").stdout or "[]")
        if not rows or any(r["state"] != "completed" for r in rows):
            return None
        log = log_of(sweep_dir) if (sweep_dir / "search.json").exists() else {"decisions": []}
        return log if len(log["decisions"]) >= decisions and all(d["acted"] for d in log["decisions"]) else None
    return check


def submit(tmp_path, *options, **halving) -> Path:
    proc = run_cli("sweep", "--root", tmp_path / "root", "--json", *options, "-f", sweep_file(tmp_path, **halving),
                   CURVES, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return Path(json.loads(proc.stdout)["sweep_dir"])


def test_a_packed_sweep_halves_27_points_to_3_with_its_jobs_deciding(slurm_cluster, tmp_path):
    sweep_dir = submit(tmp_path, "--points-per-job", "9")
    log = wait_for("the search to end", search_done(sweep_dir, 2), timeout=600, every=2)
    assert [(d["rung"], len(d["points"])) for d in log["decisions"]] == [(0, 9), (1, 3)]
    values = {tuple(map(int, k.split(":"))): v for k, v in log["values"].items()}
    assert sorted(log["decisions"][0]["points"]) == sorted(sorted(range(27), key=lambda i: values[(i, 0)])[:9])
    points = points_of(sweep_dir)
    rung1_jobs = {(points[i]["job_history"] + [points[i]["job_id"]])[1] for i in log["decisions"][0]["points"]}
    assert len(rung1_jobs) == 1, "the 9 promoted points share one job, as their sweep asked"
    check_exact_and_counted(sweep_dir, set(log["decisions"][0]["points"]))
    assert all(len(set(d["points"])) == len(d["points"]) for d in log["decisions"])


def test_asha_promotes_as_soon_as_a_point_is_in_the_top_third_of_its_rung_so_far(slurm_cluster, tmp_path):
    sweep_dir = submit(tmp_path, promotion="async")
    log = wait_for("the search to end", search_done(sweep_dir, 2), timeout=600, every=2)
    values = {tuple(map(int, k.split(":"))): v for k, v in log["values"].items()}
    per_rung = {}
    for d in log["decisions"]:
        for i in d["points"]:
            assert (i, d["rung"]) not in per_rung, f"point {i} promoted twice from rung {d['rung']}"
            per_rung[(i, d["rung"])] = d
        assert len(d["points"]) <= d["reached"] // 3
    early = [d for d in log["decisions"] if d["rung"] == 0 and d["reached"] < 27]
    assert early, "a promotion before the rung was full: asynchronous"
    promoted0 = {i for (i, r) in per_rung if r == 0}
    assert len(promoted0) >= 9, "at least the final top third of rung 0"
    best9 = set(sorted(range(27), key=lambda i: values[(i, 0)])[:9])
    assert best9 <= promoted0, "whatever came early, the best third of the full rung went on"
    finals = [i for i in promoted0 if (i, 1) in per_rung]
    assert finals, "rung 1 promoted its best"
    check_exact_and_counted(sweep_dir, promoted0, at_most=0.5)


@pytest.mark.parametrize("failpoint", ["extended", "queued"])
def test_deciders_killed_mid_decision_leave_it_to_the_next_which_queues_each_point_once(failpoint, slurm_cluster,
                                                                                     tmp_path, tmp_path_factory):
    """Every decider of this sweep that reaches the failpoint dies there (SIGKILL): after
    extending the promoted points, or after sbatch queued them but before their job ids were
    recorded. The next decider (the decision job, else `ptslurm promote` by hand) finishes the
    decision: each point queued once, run once, exactly."""
    from test_halving_kills import GRID, HALVING, check, reference

    expected = reference(tmp_path_factory)
    spec = tmp_path / "sweep.yaml"
    spec.write_text(json.dumps({"grid": GRID, "halving": HALVING}))
    proc = run_cli("sweep", "--root", tmp_path / "root", "--json", "-f", spec, CURVES,
                   env={"PTSLURM_FAILPOINT": failpoint})
    assert proc.returncode == 0, proc.stderr
    sweep_dir = Path(json.loads(proc.stdout)["sweep_dir"])

    def quiet():
        log = log_of(sweep_dir) if (sweep_dir / "search.json").exists() else {"decisions": []}
        queue = subprocess.run(["squeue", "-h", "-o", "%j"], capture_output=True, text=True).stdout
        return log["decisions"] and sweep_dir.name not in queue and log
    log = wait_for("the deciders to end", quiet, timeout=300, every=1)
    killed = [p for p in (sweep_dir / "slurm").glob("*.out") if "ptslurm.submit.promote: -9" in p.read_text()]
    assert killed, "a decider died at the failpoint"
    if not log["decisions"][0]["acted"]:  # every decider died: the user's command finishes it
        promoted = run_cli("promote", sweep_dir, env={"PTSLURM_FAILPOINT": ""})
        assert promoted.returncode == 0, promoted.stderr
    wait_for("the search to end", search_done(sweep_dir, 1), timeout=300, every=2)
    check(sweep_dir, expected)
    points = points_of(sweep_dir)
    chosen = log_of(sweep_dir)["decisions"][0]["points"]
    arrays = sorted(p.name for p in (sweep_dir / "slurm").glob("*_submission.sh"))
    assert len(arrays) == 2, f"the first rung's array and one for the promoted points, never two: {arrays}"
    for i in chosen:  # each promoted point ran its new budget once
        attempts = json.loads(Path(points[i]["storage_dir"], "ptslurm_status.json").read_text())["attempts"]
        assert [a["state"] for a in attempts] == ["completed", "completed"], attempts


def test_cancel_of_every_point_stops_the_search_until_promote_resumes_it(slurm_cluster, tmp_path):
    from test_halving_kills import GRID

    spec = tmp_path / "sweep.yaml"
    spec.write_text(json.dumps({"grid": GRID, "fixed": {"delay_s": 1},
                                "halving": {"budget": "steps", "min": 2, "max": 6, "eta": 3, "metric": "loss"}}))
    proc = run_cli("sweep", "--root", tmp_path / "root", "--json", "-f", spec, CURVES)
    assert proc.returncode == 0, proc.stderr
    sweep_dir = Path(json.loads(proc.stdout)["sweep_dir"])
    decision_job = wait_for("the decision job", lambda: log_of(sweep_dir).get("job")
                            if (sweep_dir / "search.json").exists() else None, timeout=60)
    cancelled = run_cli("cancel", sweep_dir)
    assert cancelled.returncode == 0, cancelled.stderr
    log = log_of(sweep_dir)
    assert log.get("stopped") and not log["decisions"]
    queue = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout.split()
    assert decision_job not in queue, "the decision job went with the points"
    # the points run again by hand once their jobs ended: the search stays stopped
    wait_for("the cancelled jobs to end", lambda: sweep_dir.name not in subprocess.run(
        ["squeue", "-h", "-o", "%j"], capture_output=True, text=True).stdout, timeout=120, every=0.5)
    again = run_cli("resubmit", sweep_dir, "--state", "cancelled")
    assert again.returncode == 0, again.stderr
    wait_for("the points to end", lambda: all(r["state"] == "completed" for r in json.loads(
        run_cli("status", sweep_dir, "--json").stdout)), timeout=300, every=2)
    assert not log_of(sweep_dir)["decisions"], "a stopped search decides nothing by itself"
    resumed = run_cli("promote", sweep_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert "promoted 3 point(s) of bracket 0 from rung 0 to budget 6" in resumed.stdout
    wait_for("the search to end", search_done(sweep_dir, 1), timeout=300, every=2)


@pytest.mark.slurm
def test_a_search_under_a_submit_limit_of_4_goes_in_waves_and_promotes_each_point_once(submit_limit_4, tmp_path):
    """27 points, then 9 promoted, with at most 4 jobs queued: the points go in waves, the
    promotions as many at a time as fit (a decision stays open until all its points have
    their jobs)."""
    sweep_dir = submit(tmp_path)
    log = wait_for("the search to end", search_done(sweep_dir, 2), timeout=900, every=2)
    assert [(d["rung"], len(d["points"])) for d in log["decisions"]] == [(0, 9), (1, 3)]
    check_exact_and_counted(sweep_dir, set(log["decisions"][0]["points"]))
    points = points_of(sweep_dir)
    rung1 = {(p["job_history"] + [p["job_id"]])[1].split("_")[0] for p in points if p["index"] in log["decisions"][0]["points"]}
    assert len(rung1) >= 3, f"the 9 promotions went out in several submissions under the limit: {rung1}"


def test_hyperband_with_wait_returns_when_every_bracket_is_done(slurm_cluster, tmp_path):
    """`sweep --wait` of a Hyperband search (3 brackets starting at 2, 6 and 18 steps) on the
    cluster: it returns once every bracket is decided and run, with its points exact."""
    proc = run_cli("sweep", "--root", tmp_path / "root", "--json", "--wait", "-f", sweep_file(tmp_path, brackets=3),
                   CURVES, env={"PTSLURM_POLL_S": "1"}, timeout=900)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    sweep_dir = Path(summary["sweep_dir"])
    assert [p["state"] for p in summary["points"]] == ["completed"] * 27
    log = log_of(sweep_dir)
    assert sorted((d["bracket"], d["rung"], len(d["points"])) for d in log["decisions"]) == [(0, 0, 4), (0, 1, 1),
                                                                                              (1, 1, 3)]
    assert all(d["acted"] for d in log["decisions"])
    check_exact_and_counted(sweep_dir, {i for d in log["decisions"] for i in d["points"]}, at_most=0.5)
