"""Successive halving's decisions (``submit.promote``) on the fake scheduler, in seconds: what
the SLURM tier's halving tests run on a real cluster. 9 points, eta 3, rungs of 2, 6 and 18
steps; each point's end is written as its job would write it (status, sacred's metrics) and
its fake job ended. A full rung promotes its best third, each promoted point gets the next
budget and exactly one new job; deciding again changes nothing; a decider killed at any step
is finished once by the next; a submit limit leaves the rest for the next decider; a
cancelled search is left alone by the jobs; `extend` refuses what would not be the same
training."""
import json
from pathlib import Path

import pytest

from conftest import TEST_EXPERIMENTS, end_point, fake_sweep
from test_halving import log_of, points_of

from ptslurm import records
from ptslurm.errors import UsageError
from ptslurm.plan.make import plan
from ptslurm.records.spec import Resources
from ptslurm.schedulers.backends import FakeCluster
from ptslurm.submit import promote
from ptslurm.submit.sweep import SweepRequest

pytestmark = pytest.mark.fast

# the loss each point reaches at each rung: point 4, 7, 1 are best at rung 0; 7 at rung 1
LOSS = {0: [0.9, 0.5, 0.4], 1: [0.3, 0.35, 0.2], 2: [0.8, 0.5, 0.3], 3: [0.7, 0.5, 0.3], 4: [0.1, 0.3, 0.25],
        5: [0.6, 0.5, 0.3], 6: [0.95, 0.5, 0.3], 7: [0.2, 0.1, 0.05], 8: [0.5, 0.4, 0.3]}


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    root = tmp_path_factory.mktemp("promote-root")
    p = plan(SweepRequest(experiment=str(TEST_EXPERIMENTS / "curves.py"),
                          with_tokens=("speed=[0.2,0.4,0.6]", "lag=[0,1,3]"), root=str(root), name="template",
                          resources=Resources(timeout_min=10), halving="budget=steps,min=2,max=18,eta=3,metric=loss"),
             scheduler_given=True)
    yield p
    p.discard()


def finish(cluster: FakeCluster, sweep_dir: Path, index: int, rung: int) -> None:
    end_point(cluster, sweep_dir, index, LOSS[index][rung])


def decision_jobs(cluster: FakeCluster) -> list:
    return [j for j, rec in cluster.jobs.items() if rec.get("promote")]


def test_a_full_rung_promotes_its_best_third_each_to_the_next_budget_with_one_new_job(planned):
    cluster = FakeCluster()
    _, sweep_dir = fake_sweep(planned, "full-rung", cluster)
    first = {p["index"]: p["job_id"] for p in points_of(sweep_dir)}
    decider = log_of(sweep_dir)["job"]
    assert decision_jobs(cluster) == [decider] and cluster.jobs[decider]["after"] == [first[0].split("_")[0]], \
        "the sweep queues a decision job after its points"
    for i in range(9):
        finish(cluster, sweep_dir, i, 0)
    cluster.jobs[decider]["state"] = "RUNNING"
    assert promote.decide(sweep_dir, make=cluster.backend, by=f"decision job {decider}", own_job=decider) == [], \
        "on a scheduler nothing runs here"
    log = log_of(sweep_dir)
    assert [(d["rung"], sorted(d["points"]), d["budget"], d["acted"]) for d in log["decisions"]] == \
        [(0, [1, 4, 7], 6, True)]
    assert log["decisions"][0]["values"] == {str(i): LOSS[i][0] for i in log["decisions"][0]["points"]}
    assert log["decisions"][0]["reached"] == 9 and log["decisions"][0]["by"] == f"decision job {decider}"
    assert log["values"] == {f"{i}:0": LOSS[i][0] for i in range(9)}
    after = points_of(sweep_dir)
    assert [p["updates"]["steps"] for p in after] == [6 if i in (1, 4, 7) else 2 for i in range(9)]
    assert [[b["value"] for b in p.get("budgets", [])] for p in after if p["index"] in (1, 4, 7)] == [[2, 6]] * 3
    jobs = cluster.point_jobs(sweep_dir)
    assert {i: len(j) for i, j in jobs.items()} == {i: 2 if i in (1, 4, 7) else 1 for i in range(9)}
    for i in (1, 4, 7):
        assert after[i]["job_id"] == jobs[i][1] and after[i]["job_history"] == [first[i]]
        assert records.read_intent(after[i]["storage_dir"]).submission == 1
    new = [j for j in decision_jobs(cluster) if j != decider]
    assert len(new) == 1 and log["job"] == new[0], "the next decision job waits for the promoted points"
    assert cluster.jobs[new[0]]["after"] == sorted({jobs[i][1].split("_")[0] for i in (1, 4, 7)})


def test_deciding_again_queues_and_records_nothing_more(planned):
    cluster = FakeCluster()
    _, sweep_dir = fake_sweep(planned, "again", cluster)
    for i in range(9):
        finish(cluster, sweep_dir, i, 0)
    promote.decide(sweep_dir, make=cluster.backend)
    log, calls, manifest = log_of(sweep_dir), cluster.sbatch_calls, points_of(sweep_dir)
    assert promote.decide(sweep_dir, make=cluster.backend, by="job 1") == []
    assert log_of(sweep_dir)["decisions"] == log["decisions"] and points_of(sweep_dir) == manifest
    assert cluster.sbatch_calls == calls, "the queued decision job stands; no point queued twice"


def test_a_rung_one_point_short_promotes_nobody_and_waits_with_a_decision_job(planned):
    cluster = FakeCluster()
    _, sweep_dir = fake_sweep(planned, "short", cluster)
    for i in range(8):
        finish(cluster, sweep_dir, i, 0)
    promote.decide(sweep_dir, make=cluster.backend)
    log = log_of(sweep_dir)
    assert log["decisions"] == [] and len(log["values"]) == 8
    assert [p["updates"]["steps"] for p in points_of(sweep_dir)] == [2] * 9
    assert len(decision_jobs(cluster)) == 1
    assert cluster.jobs[log["job"]]["after"] == [points_of(sweep_dir)[8]["job_id"].split("_")[0]]


def test_the_search_runs_to_its_last_rung_and_then_queues_no_decision_job(planned):
    cluster = FakeCluster()
    _, sweep_dir = fake_sweep(planned, "whole", cluster)
    for i in range(9):
        finish(cluster, sweep_dir, i, 0)
    promote.decide(sweep_dir, make=cluster.backend)
    for i in (1, 4, 7):
        finish(cluster, sweep_dir, i, 1)
    cluster.end(decision_jobs(cluster))
    promote.decide(sweep_dir, make=cluster.backend)
    log = log_of(sweep_dir)
    assert [(d["rung"], d["points"], d["budget"]) for d in log["decisions"]][1] == (1, [7], 18)
    assert [p["updates"]["steps"] for p in points_of(sweep_dir)][7] == 18
    finish(cluster, sweep_dir, 7, 2)
    cluster.end(decision_jobs(cluster))
    before = cluster.sbatch_calls
    promote.decide(sweep_dir, make=cluster.backend)
    assert len(log_of(sweep_dir)["decisions"]) == 2 and cluster.sbatch_calls == before, \
        "nothing runs: no promotion due and no decision job"


class Killed(KeyboardInterrupt):
    """The decider dies where the failpoint is (SIGKILL in the real crash tests)."""


@pytest.mark.parametrize("where", ["recorded", "extended", "queued", "acted"])
def test_a_decider_killed_at_each_step_is_finished_once_by_the_next(planned, monkeypatch, where):
    cluster = FakeCluster()
    _, sweep_dir = fake_sweep(planned, f"killed-{where}", cluster)
    for i in range(9):
        finish(cluster, sweep_dir, i, 0)

    def die(name: str) -> None:
        if name == where:
            raise Killed()

    monkeypatch.setattr(promote, "failpoint", die)
    with pytest.raises(Killed):
        promote.decide(sweep_dir, make=cluster.backend)
    monkeypatch.setattr(promote, "failpoint", lambda name: None)
    promote.decide(sweep_dir, make=cluster.backend)
    log = log_of(sweep_dir)
    assert [(d["rung"], sorted(d["points"]), d["acted"]) for d in log["decisions"]] == [(0, [1, 4, 7], True)]
    jobs = cluster.point_jobs(sweep_dir)
    assert {i: len(j) for i, j in jobs.items()} == {i: 2 if i in (1, 4, 7) else 1 for i in range(9)}, jobs
    after = points_of(sweep_dir)
    assert all(after[i]["job_id"] == jobs[i][-1] and after[i]["updates"]["steps"] == 6 for i in (1, 4, 7))
    assert [len(p.get("budgets", [])) for p in after] == [2 if i in (1, 4, 7) else 0 for i in range(9)]


def test_under_a_submit_limit_the_decision_queues_what_fits_and_the_next_decider_the_rest(planned):
    cluster = FakeCluster(limit=11)
    _, sweep_dir = fake_sweep(planned, "limit", cluster)
    for i in range(9):
        finish(cluster, sweep_dir, i, 0)
    cluster.sbatch([{"comment": "someone else's"}] * 8)  # with the decision job, 9 of 11 slots taken
    promote.decide(sweep_dir, make=cluster.backend)
    log = log_of(sweep_dir)
    assert log["decisions"][0]["acted"] is False, "not every promoted point could be queued yet"
    queued = {i: j for i, j in cluster.point_jobs(sweep_dir).items() if len(j) == 2}
    assert len(queued) == 1, "two slots free: one for a point, one kept for the decision job"
    assert len(cluster.queued()) <= 11
    cluster.end([j for j, rec in cluster.jobs.items() if rec.get("comment") == "someone else's"])
    promote.decide(sweep_dir, make=cluster.backend)
    jobs = cluster.point_jobs(sweep_dir)
    assert log_of(sweep_dir)["decisions"][0]["acted"] is True
    assert {i: len(j) for i, j in jobs.items()} == {i: 2 if i in (1, 4, 7) else 1 for i in range(9)}


def test_a_stopped_search_is_left_alone_by_the_jobs_and_taken_up_again_by_promote(planned):
    cluster = FakeCluster()
    _, sweep_dir = fake_sweep(planned, "stopped", cluster)
    for i in range(9):
        finish(cluster, sweep_dir, i, 0)
    stopped = {**log_of(sweep_dir), "stopped": "2026-12-08T01:00:00+00:00"}  # as `ptslurm cancel` leaves the search
    (sweep_dir / records.SEARCH).write_text(json.dumps(stopped))
    calls = cluster.sbatch_calls
    assert promote.decide(sweep_dir, make=cluster.backend, by="job 3") == []
    assert log_of(sweep_dir) == stopped and cluster.sbatch_calls == calls
    promote.decide(sweep_dir, make=cluster.backend)
    log = log_of(sweep_dir)
    assert "stopped" not in log and [sorted(d["points"]) for d in log["decisions"]] == [[1, 4, 7]]


def test_a_sweep_without_halving_is_refused_with_what_to_use_instead(tmp_path):
    p = plan(SweepRequest(experiment=str(TEST_EXPERIMENTS / "curves.py"), with_tokens=("speed=[0.2,0.4]",),
                          root=str(tmp_path), name="plain", resources=Resources(timeout_min=10)), scheduler_given=True)
    cluster = FakeCluster()
    try:
        _, sweep_dir = fake_sweep(p, "plain", cluster)
    finally:
        p.discard()
    with pytest.raises(UsageError, match=r"has no successive halving .* use `ptslurm extend`"):
        promote.decide(sweep_dir, make=cluster.backend)


@pytest.mark.parametrize("tokens, key, message", [
    (["steps=[4,8]"], None, r"extend takes one KEY=VALUE after `with`"),
    (["steps=8", "speed=0.1"], None, r"extend changes only the budget \(steps\); 'speed' would not be"),
    (["speed=0.1"], None, r"extend changes only the budget \(steps\); 'speed'"),
    (["steps=8"], "lag", r"--budget-key lag: sweep 'ext-.*' declared 'steps' as its budget"),
    (["steps='long'"], None, r"steps='long' is no budget: give a number"),
    (["steps=2"], None, r"point 0 already trains to steps=2: extend only trains longer \(give more than 2\)"),
])
def test_extend_refuses_what_would_not_be_the_same_training(planned, tokens, key, message):
    cluster = FakeCluster()
    _, sweep_dir = fake_sweep(planned, f"ext-{abs(hash((tuple(tokens), key)))}", cluster)
    finish(cluster, sweep_dir, 0, 0)
    calls, before = cluster.sbatch_calls, points_of(sweep_dir)
    with pytest.raises(UsageError, match=message):
        promote.extend(sweep_dir, [0], tokens, budget_key=key, make=cluster.backend)
    assert cluster.sbatch_calls == calls and points_of(sweep_dir) == before


def test_extend_continues_an_ended_point_with_the_larger_budget_as_a_new_submission(planned):
    cluster = FakeCluster()
    _, sweep_dir = fake_sweep(planned, "ext-ok", cluster)
    finish(cluster, sweep_dir, 2, 0)
    key, value, jobs = promote.extend(sweep_dir, [2], ["steps=10"], make=cluster.backend)
    assert (key, value, list(jobs)) == ("steps", 10, [2])
    after = points_of(sweep_dir)[2]
    assert after["updates"]["steps"] == 10 and after["job_id"] == jobs[2] and len(after["job_history"]) == 1
    assert records.read_intent(after["storage_dir"]).submission == 1
    assert json.loads((sweep_dir / records.MANIFEST).read_text())["budget_key"] == "steps"
