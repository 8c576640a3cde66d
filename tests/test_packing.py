"""Several points per job and resources per point, on the fake scheduler and in pure rules:
how a job's allocation is shared, how packed array tasks are marked and found again, how a
sweep file's ``resources:`` become one array per resource group (each checked by the
pre-flight), and that a submission killed between the groups' sbatch calls is finished by
the same command with every point queued once. The SLURM tier runs the same on a real
cluster (test_packing_slurm)."""
import json
from pathlib import Path

import pytest

from conftest import TEST_EXPERIMENTS, fake_sweep, run_cli

from ptslurm.schedulers import commands
from ptslurm import records
from ptslurm.records import manifests
from ptslurm.submit import submission
from ptslurm.schedulers.backends import FakeCluster
from ptslurm.errors import SpecError, UsageError
from ptslurm.job.pack import Share, share
from ptslurm.plan.make import check_resources, plan
from ptslurm.records.spec import Resources
from ptslurm.submit.sweep import SweepRequest

pytestmark = pytest.mark.fast

EXP = TEST_EXPERIMENTS / "plainloop.py"
# two sub-grids asking for different resources: 3 points of 1 GPU, 2 per job; 5 points of 2
# GPUs and a longer limit, 4 per job
SWEEP_FILE = """
resources: {time: 10, points_per_job: 2}
subgrids:
  small:
    grid: {steps: [5, 6, 7]}
    resources: {gpus: 1}
  large:
    grid: {steps: [8, 9, 10, 11, 12]}
    resources: {gpus: 2, time: "0-00:20", points_per_job: 4}
"""


# ----------------------------------------------------------------------------- sharing rules


def test_points_share_a_jobs_gpus_round_robin_and_its_cpus_evenly():
    assert share(4, ["0", "1"], list(range(8)), None) == [
        Share("0", 2, (0, 1)), Share("1", 2, (2, 3)), Share("0", 2, (4, 5)), Share("1", 2, (6, 7))]
    # more points than CPUs: one thread each, nobody pinned (a CPU would have to be split)
    assert share(3, ["5"], [0, 1], None) == [Share("5", 1, ()), Share("5", 1, ()), Share("5", 1, ())]
    # SLURM allocated fewer CPUs than the process may run on (no task affinity): threads only
    assert share(2, [], list(range(8)), 4) == [Share(None, 2, ()), Share(None, 2, ())]
    # exactly the allocated CPUs: each point its own slice, uneven counts spread
    assert [s.cpus for s in share(3, [], [4, 5, 6, 7], 4)] == [(4,), (5,), (6, 7)]


def test_packed_tasks_are_marked_and_found_again_by_their_comment():
    units = [(0, 1, 2, 3), (4, 5, 6, 7), (9,)]
    comment = commands.marker_comment("ptslurm:abc", units)
    assert comment == "ptslurm:abc:0-7,9/4"
    text = "\n".join(f"77_{t}|{comment}" for t in range(3))
    found = commands.parse_marked(text, "ptslurm:abc")
    assert found == {0: "77_0", 1: "77_0", 2: "77_0", 3: "77_0", 4: "77_1", 5: "77_1", 6: "77_1", 7: "77_1",
                     9: "77_2"}
    # one point per task keeps the comment of earlier versions
    assert commands.marker_comment("ptslurm:abc", [(3,), (4,)]) == "ptslurm:abc:3-4"
    assert commands.parse_marked("5_1|ptslurm:abc:3-4", "ptslurm:abc") == {4: "5_1"}


@pytest.mark.parametrize("bad, message", [
    (Resources(points_per_job=0), "--points-per-job must be a positive integer, got 0"),
    (Resources(points_per_job=2, gpus=2, tasks_per_node=2), "--points-per-job 2 with 2 ranks per point"),
    (Resources(points_per_job=2, nodes=2), "--points-per-job 2 with 2 ranks per point"),
])
def test_bad_packing_is_refused(bad, message):
    assert Resources(points_per_job=2, gpus=2).world_size == 1, "packed points share the GPUs: one task"
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        check_resources(bad)


@pytest.mark.parametrize("text, message", [
    ("grid: {x: [1]}\nresources: {gpu: 1}\n", "sweep.yaml: resources: unknown resource 'gpu' (valid: partition, gpus"),
    ("grid: {x: [1]}\nresources: {gpus: two}\n", "sweep.yaml: resources.gpus must be int, got 'two'"),
    ("grid: {x: [1]}\nresources: {time: '8 hours'}\n", "sweep.yaml: resources.time: bad time '8 hours'"),
    ("grid: {x: [1]}\nresources: [1]\n", "sweep.yaml: resources: expected a mapping"),
    ("subgrids: {a: {grid: {x: [1]}, resources: {points_per_job: true}}}\n",
     "sweep.yaml: subgrids.a: resources.points_per_job must be int, got True"),
])
def test_a_bad_resources_block_is_refused_naming_where(tmp_path, text, message):
    from ptslurm.plan import sweepfile

    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as caught:
        sweepfile.load(path)
    assert str(caught.value).startswith(message)


def test_a_sweep_files_time_means_what_sbatch_reads():
    from ptslurm.plan import sweepfile

    block = sweepfile.parse({"grid": {"x": [1]}, "resources": {"time": "0-08:00"}})
    assert block.resources == {"timeout_min": 480}


# ----------------------------------------------------------------------------- on the fake scheduler


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    root = tmp_path_factory.mktemp("pack-root")
    spec = root / "sweep.yaml"
    spec.write_text(SWEEP_FILE)
    p = plan(SweepRequest(experiment=str(EXP), sweep_file=str(spec), root=str(root), name="template"),
             scheduler_given=True)
    yield p
    p.discard()


sweep = fake_sweep


def tasks(cluster: FakeCluster, sweep_dir: Path):
    """Each queued array task of the sweep: (its points, what it runs, its resources)."""
    return [(rec["indices"], rec["call"][1], rec["resources"]) for rec in cluster.jobs.values()
            if rec.get("sweep") == str(sweep_dir) and "indices" in rec]


def test_resource_groups_become_one_checked_array_each_with_their_points_packed(planned):
    cluster = FakeCluster()
    outcome, sweep_dir = sweep(planned, "groups", cluster)
    checked = [(r.gpus, r.timeout_min, r.points_per_job, n) for r, n in cluster.validated]
    assert checked == [(1, 10, 2, 2), (2, 20, 4, 2)], "one pre-flight per group, with its array's size"
    queued = tasks(cluster, sweep_dir)
    assert [t[0] for t in queued] == [[0, 1], [2], [3, 4, 5, 6], [7]]
    assert [t[1][1] for t in queued] == [[0, 1], 2, [3, 4, 5, 6], 7], "a packed task runs the list, a lone one its index"
    assert [(t[2].gpus, t[2].timeout_min) for t in queued] == [(1, 10), (1, 10), (2, 20), (2, 20)]
    assert cluster.sbatch_calls == 2, "one sbatch per group"
    manifest = manifests.read_manifest(sweep_dir)
    jobs = [e.job_id for e in manifest.points]
    assert jobs[0] == jobs[1] != jobs[2] and len(set(jobs[3:7])) == 1 and jobs[7] not in jobs[:7]
    assert [manifest.resources_of(i).gpus for i in range(8)] == [1, 1, 1, 2, 2, 2, 2, 2]
    # the manifest keeps each group (read back through the same type)
    assert [g["gpus"] for g in json.loads((sweep_dir / records.MANIFEST).read_text())["groups"]] == [1, 2]


class Killed(KeyboardInterrupt):
    pass


@pytest.mark.parametrize("kill", ["before 2", "after 1", "after 2"])
def test_a_submission_of_two_groups_killed_midway_is_finished_once(planned, kill):
    cluster = FakeCluster()
    when, n = kill.split()

    def die(call: int) -> None:
        if call == int(n):
            raise Killed()

    setattr(cluster, f"{when}_sbatch", die)
    name = f"killed-{when}-{n}"
    with pytest.raises(KeyboardInterrupt):
        sweep(planned, name, cluster)
    setattr(cluster, f"{when}_sbatch", None)
    outcome, sweep_dir = sweep(planned, name, cluster)  # the same command again
    per_point = cluster.point_jobs(sweep_dir)
    assert sorted(per_point) == list(range(8)) and all(len(j) == 1 for j in per_point.values()), per_point
    manifest = manifests.read_manifest(sweep_dir)
    assert manifest.state == "submitted"
    assert {e.index: e.job_id for e in manifest.points} == {i: j[0] for i, j in per_point.items()}
    # adopted tasks run the points they were queued for
    assert [t[1][1] for t in tasks(cluster, sweep_dir)] == [[0, 1], 2, [3, 4, 5, 6], 7]


def test_waves_count_packed_tasks_against_the_submit_limit(planned):
    cluster = FakeCluster(limit=3)
    outcome, sweep_dir = sweep(planned, "waves", cluster)
    assert len(cluster.queued()) == 3, "two tasks of points and the wave job"
    queued = [t[0] for t in tasks(cluster, sweep_dir)]
    assert queued == [[0, 1], [2]]
    wave = manifests.read_manifest(sweep_dir).waves["job"]
    cluster.end([j for j in cluster.queued() if j != wave])
    submission.next_wave(sweep_dir, own_job=wave, make=cluster.backend)
    cluster.end([wave])
    assert [t[0] for t in tasks(cluster, sweep_dir)] == [[0, 1], [2], [3, 4, 5, 6], [7]]
    assert all(e.job_id for e in manifests.read_manifest(sweep_dir).points)


def test_resubmitted_packed_points_are_packed_again_among_themselves(planned):
    from ptslurm.submit import lifecycle

    cluster = FakeCluster()
    outcome, sweep_dir = sweep(planned, "again", cluster)
    cluster.end(list(cluster.queued()), "FAILED")
    jobs = lifecycle.resubmit(sweep_dir, [1, 2, 4], make=cluster.backend)
    assert jobs[1] == jobs[2] != jobs[4], "1 and 2 (group small, 2 per job) share a job; 4 runs alone"
    assert [t[1][1] for t in tasks(cluster, sweep_dir)][-2:] == [[1, 2], 4]


def test_cancel_of_one_packed_point_leaves_its_job_to_the_siblings(planned):
    from ptslurm.submit import lifecycle

    cluster = FakeCluster()
    outcome, sweep_dir = sweep(planned, "cancel-one", cluster)
    manifest = manifests.read_manifest(sweep_dir)
    shared = manifest.points[3].job_id
    lifecycle.cancel(sweep_dir, [3], make=cluster.backend)
    assert cluster.jobs[shared]["state"] == "PENDING", "points 4-6 still need the job"
    assert records.read_intent(manifest.points[3].path).cancelled
    lifecycle.cancel(sweep_dir, [4, 5, 6], make=cluster.backend)
    assert cluster.jobs[shared]["state"] == "CANCELLED", "no point of the job goes on: the job is cancelled"


def test_the_command_line_wins_over_a_sweep_files_resources_and_says_so(tmp_path):
    spec = tmp_path / "sweep.yaml"
    spec.write_text(SWEEP_FILE)
    p = plan(SweepRequest(experiment=str(EXP), sweep_file=str(spec), root=str(tmp_path),
                          resources=Resources(gpus=1, origins={"gpus": "command line"})), scheduler_given=True)
    try:
        assert [r.gpus for r in p.groups] == [1, 1]
        assert [r.timeout_min for r in p.groups] == [10, 20]
        assert any("the command line's gpus 1 replaces the sweep file's gpus 2" in w for w in p.warnings)
    finally:
        p.discard()


def test_the_dry_run_shows_each_groups_batch_script(tmp_path):
    spec = tmp_path / "sweep.yaml"
    spec.write_text(SWEEP_FILE)
    proc = run_cli("sweep", "--dry-run", "--executor", "slurm", "--root", tmp_path, EXP, "-f", spec)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "2 resource groups" in out
    first, second = out.split("group 2, ")
    assert "points 0-2: 2 array task(s) of up to 2 points" in first and "#SBATCH --gres=gpu:1" in first
    assert "#SBATCH --time=10" in first and "#SBATCH --array=0-1" in first
    assert second.startswith("points 3-7: 2 array task(s) of up to 4 points")
    assert "#SBATCH --gres=gpu:2" in second and "#SBATCH --time=20" in second


# ----------------------------------------------------------------------------- a packed job's restarts


def point_on_disk(tmp_path, name, attempts, intent_submission=0):
    from ptslurm.records import Attempt, Intent, PointEntry, PointStatus

    storage_dir = tmp_path / name
    storage_dir.mkdir()
    status = PointStatus(attempts=tuple(Attempt(attempt=k + 1, **a) for k, a in enumerate(attempts)))
    (storage_dir / records.STATUS).write_text(json.dumps(status.to_json()))
    (storage_dir / records.INTENT).write_text(json.dumps(Intent(submission=intent_submission).to_json()))
    return PointEntry(index=0, storage_dir=str(storage_dir))


@pytest.mark.parametrize("attempts, intent, runs", [
    ([], 0, True),  # never started
    ([{"state": "completed"}], 0, False),  # completed before the requeue: not run again
    ([{"state": "failed", "cause": "failed"}], 0, False),  # failed: its siblings' requeue does not retry it
    ([{"state": "cancelled", "cause": "cancelled"}], 0, False),
    ([{"state": "timeout", "cause": "timeout", "gave_up": "4 stops in a row"}], 0, False),  # given up on
    ([{"state": "requeued", "cause": "timeout", "action": "requeue"}], 0, True),  # stopped to resume
    ([{"state": "requeued", "cause": "requeued"}], 0, True),  # scontrol requeue
    ([{"state": "running"}], 0, True),  # killed without a word: resumes
    ([{"state": "completed", "submission": 0}], 1, True),  # resubmitted since
])
def test_a_restarted_packed_job_runs_only_the_points_that_have_not_ended(tmp_path, attempts, intent, runs):
    from ptslurm.job.pack import ended

    assert ended(point_on_disk(tmp_path, "p", attempts, intent)) is not runs


def test_the_job_is_requeued_for_a_point_that_asked_in_this_job_only(tmp_path):
    from ptslurm.job.pack import wants_requeue

    asked = point_on_disk(tmp_path, "a", [{"state": "requeued", "action": "requeue", "job_id": "5_1"}])
    assert wants_requeue(asked, "5_1") and not wants_requeue(asked, "5_2")
    by_slurm = point_on_disk(tmp_path, "b", [{"state": "requeued", "cause": "requeued", "job_id": "5_1"}])
    assert not wants_requeue(by_slurm, "5_1"), "SLURM requeues the job itself after scontrol requeue"


def test_a_packed_point_leaves_its_jobs_requeue_to_the_job(monkeypatch, fake_slurm):
    from ptslurm.job import point
    from ptslurm.job.pack import ENV_PACK

    fake_slurm.jobs.update({"9_1": {"state": "RUNNING"}, "9_2": {"state": "RUNNING"}})
    monkeypatch.setenv("SLURM_JOB_ID", "12")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "9")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    monkeypatch.setenv(ENV_PACK, "9_2:4")
    point._requeue()
    assert fake_slurm.jobs["9_2"] == {"state": "RUNNING"}, "its siblings still run: the job requeues once, when all have stopped"
    monkeypatch.delenv(ENV_PACK)
    point._requeue()
    assert fake_slurm.jobs["9_2"] == {"state": "PENDING", "restarts": 1} and fake_slurm.jobs["9_1"] == {"state": "RUNNING"}


def test_a_sweep_files_sbatch_options_join_the_profiles_and_the_command_line_wins():
    from ptslurm.plan.make import _laid_over

    requested = Resources(sbatch_args={"mail-type": "END", "exclusive": True},
                          origins={"mail-type": "command line", "exclusive": "profile p.yaml"})
    notes: list = []
    got = _laid_over(requested, {"sbatch_args": {"mail-type": "FAIL", "exclusive": False, "nice": "10"},
                                 "gpus": 2}, notes)
    assert got.sbatch_args == {"mail-type": "END", "exclusive": False, "nice": "10"}
    assert got.gpus == 2 and got.origins["gpus"] == "sweep file" and got.origins["nice"] == "sweep file"
    assert got.origins["mail-type"] == "command line"


def test_a_subgrids_resources_win_key_by_key_and_sbatch_options_join():
    from ptslurm.plan import grid, sweepfile

    block = sweepfile.parse({"resources": {"gpus": 1, "time": 30, "sbatch_args": {"mail-type": "END", "nice": 5}},
                             "subgrids": {"a": {"grid": {"x": [1]}, "resources": {"gpus": 2,
                                                                                  "sbatch_args": {"nice": 9}}},
                                          "b": {"grid": {"x": [2]}}}})
    a, b = grid.expand(block)
    assert a.resources == {"gpus": 2, "timeout_min": 30, "sbatch_args": {"mail-type": "END", "nice": 9}}
    assert b.resources == {"gpus": 1, "timeout_min": 30, "sbatch_args": {"mail-type": "END", "nice": 5}}


def test_a_cancelled_packed_point_is_signalled_only_once_its_attempt_is_on_record(tmp_path, monkeypatch):
    """A signal before the point's process put its handler in place would end it without a
    record; until its attempt is on record it reads the cancel itself as it starts."""
    import signal

    from ptslurm.job import pack
    from ptslurm.records import Attempt, Intent, Manifest, PointEntry, PointStatus

    storage_dir = tmp_path / "p"
    storage_dir.mkdir()
    manifest = Manifest(points=(PointEntry(index=0, storage_dir=str(storage_dir)),))
    monkeypatch.setattr(pack, "POLL_S", 0.001)

    class Starting:
        pid = 4242
        polls = 0
        signalled_at = None

        def poll(self):
            self.polls += 1
            if self.polls == 2:  # the cancel arrives while the process starts
                (storage_dir / records.INTENT).write_text(json.dumps(Intent(cancelled=True).to_json()))
            if self.polls == 6:  # its attempt goes on record
                status = PointStatus(attempts=(Attempt(attempt=1, state=records.State.RUNNING, pid=self.pid),))
                (storage_dir / records.STATUS).write_text(json.dumps(status.to_json()))
            return None if self.signalled_at is None else -signal.SIGTERM

        def send_signal(self, sig):
            assert sig == signal.SIGTERM
            self.signalled_at = self.polls

        def kill(self):
            raise AssertionError("killed although it ended on SIGTERM")

    proc = Starting()
    assert pack._wait(manifest, {0: proc}) == {0: -signal.SIGTERM}
    assert proc.signalled_at == 6, "signalled before its attempt was on record"


def test_resubmit_gives_points_a_longer_time_and_more_memory_in_a_group_of_their_own(planned):
    from ptslurm.submit import lifecycle

    cluster = FakeCluster()
    outcome, sweep_dir = sweep(planned, "longer", cluster)
    cluster.end(list(cluster.queued()), "TIMEOUT")
    before = manifests.read_manifest(sweep_dir)
    lifecycle.resubmit(sweep_dir, [0, 1], make=cluster.backend,
                       resources={"timeout_min": 120, "mem_gb": 8.0, "sbatch_args": {"mail-type": "END"}})
    after = manifests.read_manifest(sweep_dir)
    asked = [after.resources_of(i) for i in (0, 1)]
    assert asked[0] == asked[1] and asked[0].timeout_min == 120 and asked[0].mem_gb == 8.0
    assert asked[0].signal_delay_s == 120, "the rule's delay for the new limit (a quarter of 10 min before)"
    assert asked[0].gpus == before.resources_of(0).gpus and asked[0].points_per_job == 2, "the rest as before"
    assert asked[0].sbatch_args["mail-type"] == "END"
    assert after.resources_of(2) == before.resources_of(2), "the other points keep theirs"
    resubmitted = tasks(cluster, sweep_dir)[-1]
    assert resubmitted[0] == [0, 1] and resubmitted[2].timeout_min == 120 and resubmitted[2].mem_gb == 8.0


def test_resubmit_refuses_bad_resources_before_writing_anything(planned):
    from ptslurm.submit import lifecycle
    from ptslurm.errors import UsageError

    cluster = FakeCluster()
    outcome, sweep_dir = sweep(planned, "bad-resources", cluster)
    cluster.end(list(cluster.queued()), "TIMEOUT")
    before = (sweep_dir / "manifest.json").read_text()
    with pytest.raises(UsageError, match="--mem must be a positive number"):
        lifecycle.resubmit(sweep_dir, [0], make=cluster.backend, resources={"mem_gb": -1.0})
    assert (sweep_dir / "manifest.json").read_text() == before
