"""The submission protocol on the fake scheduler (``backends.FakeCluster``): the scenarios the
SLURM tier runs on a real cluster (test_jobcontrol, test_concurrency), here in seconds.
A submission killed after any sbatch is finished by the same command with every point
queued once; a refused one leaves nothing queued and nothing on disk; waves under a submit
limit queue every point once and never more than the limit; cancel during waves stops the
queued points and the wave job, and no later wave submits; reading submits nothing."""
import json
from pathlib import Path

import pytest

from conftest import TEST_EXPERIMENTS, fake_sweep

from ptslurm.submit import lifecycle, submission
from ptslurm import records
from ptslurm.read import state
from ptslurm.records import manifests
from ptslurm.schedulers.backends import FakeCluster
from ptslurm.errors import SubmissionError, UsageError
from ptslurm.plan.make import plan
from ptslurm.records import State
from ptslurm.records.spec import Resources
from ptslurm.submit.sweep import SweepRequest

pytestmark = pytest.mark.fast

POINTS = 8


def manifest_of(sweep_dir: Path) -> dict:
    return json.loads((sweep_dir / records.MANIFEST).read_text())


def recorded(sweep_dir: Path) -> dict:
    return {e["index"]: e["job_id"] for e in manifest_of(sweep_dir)["points"]}


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    """One plan (the pre-flight runs the experiment's configs in a fresh process: a second or
    two) for the module; each scenario runs a copy of it under its own name, as
    ``ptslurm sweep --name NAME`` would (``sweep.run`` is ``plan`` + ``execute``)."""
    root = tmp_path_factory.mktemp("fake-root")
    steps = ",".join(str(5 + i) for i in range(POINTS))
    p = plan(SweepRequest(experiment=str(TEST_EXPERIMENTS / "plainloop.py"), with_tokens=(f"steps=[{steps}]",),
                          root=str(root), name="template", resources=Resources(timeout_min=10)), scheduler_given=True)
    yield p
    p.discard()


sweep = fake_sweep


class Killed(KeyboardInterrupt):
    """What SIGINT/SIGTERM raise in ``ptslurm sweep``: the command dies where it is."""


@pytest.mark.parametrize("kill", ["before 2", "after 1", "after 2", "after 3"])
def test_a_submission_killed_around_an_sbatch_is_finished_once_by_the_same_command(planned, kill):
    cluster = FakeCluster(max_array_size=3)  # 8 points: arrays of 3, 3, 2
    when, n = kill.split()
    name = f"killed-{when}-{n}"

    def die(call: int) -> None:
        if call == int(n):
            raise Killed()

    setattr(cluster, f"{when}_sbatch", die)
    with pytest.raises(KeyboardInterrupt):
        sweep(planned, name, cluster)
    sweep_dir = manifests.sweeps_dir(planned.root) / name
    assert manifest_of(sweep_dir)["state"] == "submitting"
    setattr(cluster, f"{when}_sbatch", None)

    outcome, _ = sweep(planned, name, cluster)  # the same command again
    jobs = cluster.point_jobs(sweep_dir)
    assert sorted(jobs) == list(range(POINTS)) and all(len(j) == 1 for j in jobs.values()), jobs
    assert recorded(sweep_dir) == {i: j[0] for i, j in jobs.items()}  # every queued job recorded
    assert outcome.manifest is not None and outcome.manifest.state == "submitted"
    assert len(cluster.queued()) == POINTS


def test_a_refused_submission_cancels_what_it_queued_and_leaves_no_storage_dir(planned):
    cluster = FakeCluster(max_array_size=3)

    def refuse(call: int) -> None:
        if call == 2:
            raise SubmissionError("sbatch rejected the job: Invalid partition name specified")

    cluster.before_sbatch = refuse
    with pytest.raises(SubmissionError, match="Invalid partition"):
        sweep(planned, "refused", cluster)
    sweep_dir = manifests.sweeps_dir(planned.root) / "refused"
    manifest = manifest_of(sweep_dir)
    assert manifest["state"] == "not_submitted" and "Invalid partition" in manifest["error"]
    assert not cluster.queued(), "the array queued before the refusal is cancelled"
    assert cluster.scancel_calls == 1
    assert not any(Path(e["storage_dir"]).exists() for e in manifest["points"])
    assert all(e["job_id"] is None for e in manifest["points"])

    cluster.before_sbatch = None  # the cause fixed: the same command submits every point once
    sweep(planned, "refused", cluster)
    jobs = cluster.point_jobs(sweep_dir)
    assert sorted(len(j) for j in jobs.values()) == [1] * (POINTS - 3) + [2] * 3  # 0-2: the cancelled array, again
    assert sorted(recorded(sweep_dir).values()) == sorted(cluster.queued())


def run_waves(cluster: FakeCluster, sweep_dir: Path, most: list) -> None:
    """The cluster's side of waves: the queued points end, then the wave job runs
    ``next_wave`` (holding its own slot), then ends."""
    for _ in range(20):
        wave = (manifest_of(sweep_dir).get("waves") or {}).get("job")
        cluster.end([j for j in cluster.queued() if j != wave])
        if wave is None:
            return
        cluster.jobs[wave]["state"] = "RUNNING"
        submission.next_wave(sweep_dir, own_job=wave, make=cluster.backend)
        most.append(len(cluster.queued()))
        cluster.end([wave])
    raise AssertionError("the waves never ended")


def test_waves_under_a_submit_limit_queue_every_point_once_within_the_limit(planned):
    cluster = FakeCluster(limit=4)  # sbatch over the limit is refused, as SLURM's QOS does
    outcome, sweep_dir = sweep(planned, "waves", cluster)
    assert outcome.manifest is not None and outcome.manifest.waves and outcome.manifest.waves["limit"] == 4
    assert len(cluster.queued()) == 4  # 3 points and the wave job
    rows = state.sweep_states(sweep_dir, manifests.read_manifest(sweep_dir), cluster.backend(sweep_dir, Resources(), "x"))
    assert [r.state for r in rows].count(State.WAITING) == POINTS - 3
    most: list = []
    run_waves(cluster, sweep_dir, most)
    jobs = cluster.point_jobs(sweep_dir)
    assert sorted(jobs) == list(range(POINTS)) and all(len(j) == 1 for j in jobs.values()), jobs
    assert recorded(sweep_dir) == {i: j[0] for i, j in jobs.items()}
    assert max(most) <= 4 and manifest_of(sweep_dir).get("waves") is None


def test_cancel_during_waves_stops_the_points_and_the_wave_job_and_nothing_more_is_submitted(planned):
    cluster = FakeCluster(limit=4)
    _, sweep_dir = sweep(planned, "cancel-waves", cluster)
    wave = manifest_of(sweep_dir)["waves"]["job"]
    done = lifecycle.cancel(sweep_dir, list(range(POINTS)), make=cluster.backend)
    assert done == list(range(POINTS))
    assert not cluster.queued() and cluster.jobs[wave]["state"] == "CANCELLED"
    calls = cluster.sbatch_calls
    # the wave job was cancelled before it ran; had it run (or status topped up), no point is submitted
    assert submission.next_wave(sweep_dir, own_job=wave, make=cluster.backend) == 0
    assert cluster.sbatch_calls == calls
    rows = state.sweep_states(sweep_dir, manifests.read_manifest(sweep_dir), cluster.backend(sweep_dir, Resources(), "x"))
    assert {r.state for r in rows} == {State.CANCELLED}


def test_reading_a_sweep_in_waves_submits_nothing(planned):
    """The read side's state function asks the scheduler (the fake counts every call): no
    sbatch, whatever the points' states; top_up submits only when no wave job is queued."""
    cluster = FakeCluster(limit=4)
    _, sweep_dir = sweep(planned, "read-waves", cluster)
    calls = cluster.sbatch_calls
    manifest = manifests.read_manifest(sweep_dir)
    backend = cluster.backend(sweep_dir, Resources(), "x")
    for _ in range(3):
        rows = state.sweep_states(sweep_dir, manifest, backend)
    assert State.WAITING in {r.state for r in rows}
    assert cluster.sbatch_calls == calls
    wave = manifest.waves["job"]
    cluster.end([j for j in cluster.queued() if j != wave])  # the first wave ended; its wave job is queued
    assert not submission.top_up(sweep_dir, manifest, rows, make=cluster.backend)  # the wave job will submit
    assert cluster.sbatch_calls == calls
    cluster.end([wave], "CANCELLED")  # the wave job killed: status's explicit top-up submits the next wave
    assert submission.top_up(sweep_dir, manifest, rows, make=cluster.backend)
    assert cluster.sbatch_calls > calls


def test_a_sweep_that_fits_the_limit_alone_but_not_beside_queued_jobs_goes_in_waves(planned):
    cluster = FakeCluster(limit=10)
    cluster.sbatch([{"comment": "someone else's"} for _ in range(4)])  # 4 of the 10 slots taken
    outcome, sweep_dir = sweep(planned, "beside-queued", cluster)
    assert outcome.manifest is not None and outcome.manifest.waves and outcome.manifest.waves["limit"] == 10
    assert len(cluster.queued()) == 10, "the free slots: 5 points and the wave job"
    most: list = []
    run_waves(cluster, sweep_dir, most)
    jobs = cluster.point_jobs(sweep_dir)
    assert sorted(jobs) == list(range(POINTS)) and all(len(j) == 1 for j in jobs.values())


def test_resubmit_right_after_cancel_waits_for_the_dying_attempt_and_is_then_the_only_writer(planned):
    import threading

    from ptslurm.job import lease

    cluster = FakeCluster()
    _, sweep_dir = sweep(planned, "cancel-resubmit", cluster)
    storage_dir = Path(manifest_of(sweep_dir)["points"][0]["storage_dir"])
    held = lease.acquire(storage_dir, "local-dying", wait_s=0)  # the cancelled attempt, still ending
    assert lifecycle.cancel(sweep_dir, [0], make=cluster.backend) == [0]
    ended = threading.Timer(1.0, held.release)
    ended.start()
    jobs = lifecycle.resubmit(sweep_dir, [0], make=cluster.backend)
    assert not (storage_dir / records.LEASE).exists(), "resubmitted while the cancelled attempt still held the dir"
    assert list(jobs) == [0] and manifest_of(sweep_dir)["points"][0]["job_id"] == jobs[0]


def test_resubmit_refuses_a_cancelled_point_whose_attempt_outlives_the_wait(planned, monkeypatch):
    from ptslurm.job import lease

    monkeypatch.setattr(lifecycle, "CANCEL_WAIT_S", 0.5)
    cluster = FakeCluster()
    _, sweep_dir = sweep(planned, "cancel-stuck", cluster)
    held = lease.acquire(Path(manifest_of(sweep_dir)["points"][0]["storage_dir"]), "local-stuck", wait_s=0)
    lifecycle.cancel(sweep_dir, [0], make=cluster.backend)
    calls = cluster.sbatch_calls
    try:
        with pytest.raises(UsageError, match=r"point\(s\) 0 \(job local-stuck\) still run an attempt"):
            lifecycle.resubmit(sweep_dir, [0], make=cluster.backend)
    finally:
        held.release()
    assert cluster.sbatch_calls == calls, "nothing was submitted"


def test_a_point_ending_after_the_wave_job_was_killed_queues_a_new_wave_job_when_no_point_fits(planned):
    """What each point's job does as it ends (``python -m ptslurm.submit.waves``): with the wave job
    gone and the queue full but for one slot, the slot goes to a new wave job waiting for the
    sweep's queued points, which then finishes the sweep; status only reads."""
    cluster = FakeCluster(limit=4)
    _, sweep_dir = sweep(planned, "wave-killed", cluster)
    killed = manifest_of(sweep_dir)["waves"]["job"]
    cluster.end([killed], state="CANCELLED")  # 3 points queued, one slot free, no wave job
    rows = state.sweep_states(sweep_dir, manifests.read_manifest(sweep_dir), cluster.backend(sweep_dir, Resources(), "x"))
    manifest = manifests.read_manifest(sweep_dir)
    assert submission.waves_stalled(sweep_dir, manifest, rows, make=cluster.backend)
    assert submission.next_wave(sweep_dir, make=cluster.backend) == 0  # a point's job ending: no point fits
    wave = manifest_of(sweep_dir)["waves"]["job"]
    assert wave != killed and wave in cluster.queued() and len(cluster.queued()) == 4
    assert sorted(cluster.jobs[wave]["after"]) == sorted({j.split("_")[0] for j in recorded(sweep_dir).values() if j})
    assert submission.next_wave(sweep_dir, make=cluster.backend) == 0 and manifest_of(sweep_dir)["waves"]["job"] == wave
    run_waves(cluster, sweep_dir, [])
    jobs = cluster.point_jobs(sweep_dir)
    assert sorted(jobs) == list(range(POINTS)) and all(len(j) == 1 for j in jobs.values()), jobs


def test_wait_says_why_it_could_not_submit_the_next_wave_and_tries_again(planned, monkeypatch):
    """`sweep --wait` tops up a sweep whose wave job is gone; when sbatch refuses, the user is
    told what sbatch said (never silently), and the next look submits the wave."""
    from ptslurm.submit.sweep import Quiet, wait_for

    cluster = FakeCluster(limit=4)
    _, sweep_dir = sweep(planned, "wait-refused", cluster)
    cluster.end(cluster.queued())  # the first wave ended and its wave job died with it
    calls = cluster.sbatch_calls

    def refuse_once(n: int) -> None:
        if n == calls + 1:
            raise SubmissionError("sbatch: error: Slurm temporarily unable to accept job, sleeping and retrying")

    cluster.before_sbatch = refuse_once
    told = []

    class Told(Quiet):
        def warning(self, text: str) -> None:
            told.append(text)

        def progress(self, rows, final: bool = False) -> None:
            cluster.end(cluster.queued())  # every queued job runs to its end before the next look

    monkeypatch.setenv("PTSLURM_POLL_S", "0")
    wait_for(sweep_dir, Told(), make=cluster.backend)
    assert "could not submit the next wave (sbatch: error: Slurm temporarily unable" in told[0], told
    assert "--wait submitted the next wave" in told[1], told
    assert all(recorded(sweep_dir).values()), "a point never got a job"
