"""The read side's rules in process: the state function over a point's records and one
scheduler observation, the rows `status` shows (elapsed time, progress, heartbeat, code), the
causes of attempts killed without a word, counts, and the manifest's views (code versions,
points, job ids). The command-line and SLURM tiers show the same through `status`."""
import datetime
import time
import json
import os
from pathlib import Path

import pytest

from ptslurm.read import state
from ptslurm.errors import SubmissionError, UsageError
from ptslurm.records import ORDER, Attempt, ExperimentInfo, Intent, Manifest, PointEntry, PointStatus, State, STATUS
from ptslurm.read.state import PointRow

pytestmark = pytest.mark.fast

T0 = 1_800_000_000.0


def iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat()


def manifest(tmp_path: Path, n: int = 2, executor: str = "slurm", **fields) -> Manifest:
    points = tuple(PointEntry(index=i, storage_dir=str(tmp_path / str(i)), job_id=f"9_{i}", seed=100 + i,
                              updates={"lr": 0.1 * (i + 1), "fixed": 1}, varied=("lr",)) for i in range(n))
    base = dict(name="s", executor=executor, points=points, varied=("lr",), created=iso(T0),
                code={"sha256": "abcdef0123456789"},
                experiment=ExperimentInfo(name="e", snapshot="/snap/e.py", workdir="/snap", source_root="/src"))
    base.update(fields)
    return Manifest(**base)


def write_status(entry: PointEntry, status: PointStatus) -> None:
    entry.path.mkdir(parents=True, exist_ok=True)
    (entry.path / STATUS).write_text(json.dumps(status.to_json()))


# ----------------------------------------------------------------------------- the manifest's views


def test_code_versions_of_a_sweep(tmp_path):
    m = manifest(tmp_path)
    first = m.code_of(1)
    assert first == (1, "code", "abcdef0123456789", "/snap/e.py", "/snap", "/src", iso(T0))
    assert first.label == "v1 (abcdef01)" and m.latest_code == 1
    m = m.replace(code_versions={"2": {"dir": "code-2", "sha256": "99887766554433", "snapshot": "/s2/e.py",
                                       "workdir": "/s2", "source_root": "/src", "taken": "then"},
                                 "3": {"sha256": None}, "junk": 1})
    assert m.code_of(2) == (2, "code-2", "99887766554433", "/s2/e.py", "/s2", "/src", "then")
    assert m.code_of(3) == (3, "code-3", None, "", None, None, None) and m.code_of(3).label == "v3 (?)"
    assert m.latest_code == 3
    assert m.code_of(7) == m.code_of(1)  # an unknown version is the first snapshot (nothing else to run)


def test_points_by_index_job_ids_and_changes(tmp_path):
    m = manifest(tmp_path, n=3)
    assert m.point(2).index == 2 and m.point(0).storage_dir.endswith("/0")
    for bad in (-1, 3):
        with pytest.raises(UsageError, match=r"point .* out of range: sweep 's' has points 0-2"):
            m.point(bad)
    m2 = m.with_jobs({0: None, 2: "12_0"})
    assert [e.job_id for e in m2.points] == [None, "9_1", "12_0"] and [e.job_id for e in m.points][0] == "9_0"
    m3 = m.with_points(lambda e: e.replace(code_version=4), [1])
    assert [e.code_version for e in m3.points] == [1, 4, 1]
    assert [e.code_version for e in m.with_points(lambda e: e.replace(code_version=2)).points] == [2, 2, 2]
    assert m.point(1).varied_values(m.varied) == {"lr": 0.2}


# ----------------------------------------------------------------------------- the state function


def attempt(**fields) -> Attempt:
    base = dict(attempt=1, state=State.RUNNING, job_id="9_0", started=iso(T0), heartbeat=iso(T0 + 10))
    base.update(fields)
    return Attempt(**base)


def status_of(*attempts: Attempt, **fields) -> PointStatus:
    return PointStatus(state=attempts[-1].state if attempts else State.PENDING, attempts=attempts, **fields)


@pytest.mark.parametrize("case, status, intent, queue, accounting, expected", [
    ("never started", status_of(), Intent(), None, None, State.PENDING),
    ("running, not asked", status_of(attempt()), Intent(), None, None, State.RUNNING),
    ("completed", status_of(attempt(state=State.COMPLETED)), Intent(), {}, None, State.COMPLETED),
    ("resubmitted, new attempt not started", status_of(attempt(state=State.FAILED, submission=0)),
     Intent(submission=1), None, None, State.PENDING),
    ("failed in the current submission", status_of(attempt(state=State.FAILED, submission=1)),
     Intent(submission=1), None, None, State.FAILED),
    ("cancelled by the command line", status_of(attempt()), Intent(cancelled=True), None, None, State.CANCELLED),
    ("a cancel does not undo a completion", status_of(attempt(state=State.COMPLETED)), Intent(cancelled=True),
     None, None, State.COMPLETED),
    ("a cancel of an older submission", status_of(attempt(submission=2)), Intent(cancelled=True, submission=1),
     None, None, State.RUNNING),
    ("cancelled by an older version's status file", status_of(attempt(), cancelled=True), Intent(), None, None,
     State.CANCELLED),
    ("gone from the queue without a word", status_of(attempt()), Intent(), {}, {}, State.LOST),
    ("gone, sacct says cancelled", status_of(attempt()), Intent(), {}, {"9_0": "CANCELLED by 0"}, State.CANCELLED),
    ("gone, sacct says timeout", status_of(attempt()), Intent(), {}, {"9_0": "TIMEOUT"}, State.TIMEOUT),
    ("gone, out of memory", status_of(attempt()), Intent(), {}, {"9_0": "OUT_OF_MEMORY"}, State.FAILED),
    ("gone, node failure", status_of(attempt()), Intent(), {}, {"9_0": "NODE_FAIL"}, State.FAILED),
    ("gone, failed", status_of(attempt()), Intent(), {}, {"9_0": "FAILED"}, State.FAILED),
    ("pending, never started, queue says pending", status_of(), Intent(), {"9_0": "PENDING"}, None, State.PENDING),
    ("pending, never started, gone", status_of(), Intent(), {}, {}, State.LOST),
    ("running record, queue says pending: requeued", status_of(attempt()), Intent(), {"9_0": "PENDING"}, None,
     State.REQUEUED),
    ("running record, queue says suspended", status_of(attempt()), Intent(), {"9_0": "SUSPENDED"}, None,
     State.REQUEUED),
    ("requeued record, queue says running", status_of(attempt(state=State.REQUEUED)), Intent(),
     {"9_0": "RUNNING"}, None, State.RUNNING),
    ("pending record, queue says running", status_of(), Intent(), {"9_0": "RUNNING"}, None, State.RUNNING),
    ("running, queue says running", status_of(attempt()), Intent(), {"9_0": "RUNNING"}, None, State.RUNNING),
    ("terminal states ignore the queue", status_of(attempt(state=State.TIMEOUT)), Intent(), {}, {}, State.TIMEOUT),
])
def test_the_state_of_a_point(tmp_path, case, status, intent, queue, accounting, expected):
    m = manifest(tmp_path)
    assert state.point_state(m, m.points[0], status, intent, queue, accounting) == expected, case


def test_a_point_whose_job_left_the_queue_but_which_still_beats_is_running(tmp_path):
    """A killed packing parent: SLURM ended the job (FAILED) while the point's process still
    trains and beats. It is running, not failed, until it has been silent for a while."""
    m = manifest(tmp_path)
    beating = status_of(attempt(heartbeat=iso(time.time() - 20)))
    assert state.point_state(m, m.points[0], beating, Intent(), {}, {"9_0": "FAILED"}) == State.RUNNING
    silent = status_of(attempt(heartbeat=iso(time.time() - 80)))
    assert state.point_state(m, m.points[0], silent, Intent(), {}, {"9_0": "FAILED"}) == State.FAILED


def test_waiting_is_only_a_point_of_a_sweep_in_waves_without_a_job(tmp_path):
    m = manifest(tmp_path, waves={"limit": 4}).with_jobs({0: None})
    assert state.point_state(m, m.points[0], status_of(), Intent(), {}) == State.WAITING
    assert state.point_state(m, m.points[1], status_of(), Intent(), {"9_1": "PENDING"}) == State.PENDING
    local = manifest(tmp_path, executor="local", waves={"limit": 4}).with_jobs({0: None})
    assert state.point_state(local, local.points[0], status_of(), Intent()) != State.WAITING
    assert state.point_state(m.replace(waves=None), m.points[0], status_of(), Intent()) == State.PENDING


def test_a_local_point_whose_process_or_runner_is_gone_is_lost(tmp_path):
    import socket
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    here = socket.gethostname()
    m = manifest(tmp_path, executor="local", runner={"host": here, "pid": os.getpid()}).with_jobs({0: "local"})
    running = status_of(attempt(job_id="local", host=here, pid=int(gone)))
    assert state.point_state(m, m.points[0], running, Intent()) == State.LOST
    alive = status_of(attempt(job_id="local", host=here, pid=os.getpid()))
    assert state.point_state(m, m.points[0], alive, Intent()) == State.RUNNING
    elsewhere = status_of(attempt(job_id="local", host="another-host", pid=int(gone)))
    assert state.point_state(m, m.points[0], elsewhere, Intent()) == State.RUNNING
    assert state.point_state(m, m.points[0], status_of(), Intent()) == State.PENDING  # its runner lives
    dead_runner = m.replace(runner={"host": here, "pid": int(gone)})
    assert state.point_state(dead_runner, m.points[0], status_of(), Intent()) == State.LOST
    assert state.point_state(m, m.points[0], running, Intent(), {}) == State.LOST  # never the queue's


class Scheduler:
    """The read side's questions, answered from a table, every call counted."""

    keeps_queue = True

    def __init__(self, up=True, queue=None, history=None, fail=False):
        self.up, self.queue, self.history, self.fail = up, queue or {}, history or {}, fail
        self.calls = []

    def slurm_available(self):
        self.calls.append("ping")
        return self.up

    def queue_states(self, jobs):
        self.calls.append(("squeue", sorted(jobs)))
        if self.fail:
            raise SubmissionError("squeue did not answer")
        return dict(self.queue)

    def accounting_history(self, jobs):
        self.calls.append(("sacct", sorted(jobs)))
        return dict(self.history)


def test_a_sweeps_states_ask_the_scheduler_once_and_sacct_only_for_the_lost(tmp_path, monkeypatch):
    m = manifest(tmp_path)
    write_status(m.points[0], status_of(attempt(state=State.COMPLETED)))
    write_status(m.points[1], status_of(attempt(job_id="9_1")))
    asked = Scheduler(queue={"9_1": "RUNNING"})
    rows = state.sweep_states(tmp_path, m, asked)
    assert [r.state for r in rows] == [State.COMPLETED, State.RUNNING]
    assert asked.calls == ["ping", ("squeue", ["9_0", "9_1"])]
    asked = Scheduler(queue={}, history={"9_1": [(iso(T0), "OUT_OF_MEMORY")]})
    rows = state.sweep_states(tmp_path, m, asked)
    assert [r.state for r in rows] == [State.COMPLETED, State.FAILED]
    assert asked.calls[-1] == ("sacct", ["9_0", "9_1"])
    for quiet in (Scheduler(up=False), Scheduler(fail=True)):  # no controller: the files alone
        rows = state.sweep_states(tmp_path, m, quiet)
        assert [r.state for r in rows] == [State.COMPLETED, State.RUNNING]
        assert not any(c[0] == "sacct" for c in quiet.calls if isinstance(c, tuple))
    from ptslurm import schedulers

    asked = Scheduler(queue={"9_1": "RUNNING"})
    monkeypatch.setattr(schedulers, "_SLURM", [asked])  # what would answer for SLURM
    state.sweep_states(tmp_path, manifest(tmp_path, executor="local"))
    assert asked.calls == [], "a local sweep asked SLURM"
    state.sweep_states(tmp_path, m)
    assert asked.calls == ["ping", ("squeue", ["9_0", "9_1"])], "a SLURM sweep asks its own scheduler by default"


def test_a_damaged_status_file_makes_the_point_unknown_and_is_named(tmp_path):
    m = manifest(tmp_path)
    m.points[0].path.mkdir()
    (m.points[0].path / STATUS).write_text("{not json")
    write_status(m.points[1], status_of(attempt(job_id="9_1", state=State.FAILED, error="ValueError: boom")))
    rows = state.point_states(m)
    assert rows[0].state == State.UNKNOWN and rows[0].damaged == (str(m.points[0].path / STATUS),)
    assert rows[1].state == State.FAILED and rows[1].error == "ValueError: boom" and rows[1].damaged == ()
    write_status(m.points[1], status_of(attempt(job_id="9_1", state=State.COMPLETED, error="old")))
    assert state.point_states(m)[1].error is None  # an error shows only for a point that failed
    for failed in (State.TIMEOUT, State.PREEMPTED):
        write_status(m.points[1], status_of(attempt(job_id="9_1", state=failed, error="stopped")))
        assert state.point_states(m)[1].error == "stopped"


def test_killed_attempts_get_their_cause_from_the_nearest_run_in_sacct(tmp_path):
    lost = attempt(state=State.LOST, job_id="9_0", started=iso(T0))
    row = PointRow(index=0, state=State.LOST, job_id="9_0", storage_dir="x",
                   status=status_of(lost, attempt(attempt=2, state=State.RUNNING, started=iso(T0 + 900))))
    history = {"9_0": [(iso(T0 - 5000), "PREEMPTED"), (iso(T0 + 20), "NODE_FAIL"), (iso(T0 + 900), "RUNNING")]}
    (out,) = state.killed_causes([row], history)
    assert [a.cause for a in out.status.attempts] == ["node_fail", None]
    far = {"9_0": [(iso(T0 + 301), "NODE_FAIL")]}  # more than 5 minutes off: not this attempt's run
    assert state.killed_causes([row], far)[0].status.attempts[0].cause is None
    assert state.killed_causes([row], {"9_0": [(iso(T0 + 300), "BOOT_FAIL")]})[0].status.attempts[0].cause == "boot_fail"
    assert state.killed_causes([row], {})[0].status.attempts[0].cause is None
    assert state.killed_causes([row], {"9_0": [("garbage", "NODE_FAIL"), (iso(T0), "")]})[0].status.attempts[0].cause is None
    unstarted = row.replace(status=status_of(attempt(state=State.LOST, started=None)))
    assert state.killed_causes([unstarted], history)[0].status.attempts[0].cause is None


def test_counts_in_order_and_ended(tmp_path):
    def row(s):
        return PointRow(index=0, state=s, job_id=None, storage_dir="", status=PointStatus())

    rows = [row(State.FAILED), row(State.COMPLETED), row(State.FAILED), row(State.WAITING)]
    counted = state.counts(rows)
    assert counted == {State.WAITING: 1, State.COMPLETED: 1, State.FAILED: 2}
    assert list(counted) == [s for s in ORDER if s in counted]
    assert state.counts([]) == {}
    assert not state.ended(rows) and state.ended(rows[:3]) and state.ended([])


# ----------------------------------------------------------------------------- status rows


def test_a_status_row_says_elapsed_time_progress_heartbeat_and_code(tmp_path):
    m = manifest(tmp_path)
    e0, e1 = m.points
    first = attempt(state=State.TIMEOUT, started=iso(T0), ended=iso(T0 + 100), sacred_id=1)
    second = attempt(attempt=2, state=State.RUNNING, started=iso(T0 + 200), heartbeat=iso(T0 + 250), sacred_id=2)
    write_status(e0, status_of(first, second, progress={"iteration": 40, "epoch": 2}, updated=iso(T0 + 260)))
    (e0.path / "sacred" / "2").mkdir(parents=True)
    (e0.path / "sacred" / "2" / "run.json").write_text(json.dumps({"heartbeat": "2027-01-15T00:00:00"}))
    write_status(e1, status_of(attempt(job_id="9_1", state=State.COMPLETED, started=iso(T0),
                                       ended=iso(T0 + 30.04)), updated=iso(T0 + 31)))
    rows = state.status_rows(m, state.point_states(m), now=T0 + 300)
    r0, r1 = rows
    assert r0.elapsed_s == 200.0  # 100 s, then 100 s of the running attempt until now
    assert (r0.iteration, r0.epoch, r0.heartbeat, r0.ended) == (40, 2, "2027-01-15T00:00:00", None)
    assert r0.varied == {"lr": 0.1} and r0.seed == 100 and r0.code == "v1 (abcdef01)" and r0.attempts == 2
    assert r1.elapsed_s == 30.0 and r1.heartbeat == iso(T0 + 31) and r1.ended == iso(T0 + 30.04)
    assert r1.iteration is None and r1.varied == {"lr": 0.2}
    # a running attempt of a point that ended without a word counts until its last heartbeat
    stopped = [r0.replace(state=State.LOST), r1]
    assert state.status_rows(m, stopped, now=T0 + 10_000)[0].elapsed_s == 150.0
    # a clock that went backwards counts nothing, not a negative time
    write_status(e1, status_of(attempt(job_id="9_1", state=State.FAILED, started=iso(T0 + 50), ended=iso(T0))))
    assert state.status_rows(m, state.point_states(m), now=T0 + 300)[1].elapsed_s == 0.0


def test_status_json_of_a_row(tmp_path):
    m = manifest(tmp_path)
    write_status(m.points[0], status_of(
        attempt(state=State.TIMEOUT, cause="timeout", sacred_id=1, ended=iso(T0 + 5)),
        attempt(attempt=2, state=State.FAILED, cause="failed", job_id="9_0", sacred_id=2, ranks=4, nodes=2,
                gave_up="it failed without progress", error="KeyError: 'x'", ended=iso(T0 + 9))))
    row = state.status_rows(m, state.point_states(m), now=T0 + 10)[0]
    out = row.to_json()
    assert out["index"] == 0 and out["state"] == "failed" and out["attempts"] == 2 and out["job_id"] == "9_0"
    assert out["storage_dir"] == m.points[0].storage_dir and out["error"] == "KeyError: 'x'"
    assert out["damaged"] == [] and out["varied"] == {"lr": 0.1} and out["seed"] == 100
    assert out["code"] == "v1 (abcdef01)" and out["ranks"] == 4 and out["nodes"] == 2
    assert out["gave_up"] == "it failed without progress" and out["ended"] == iso(T0 + 9)
    assert out["history"] == [
        {"attempt": 1, "state": "timeout", "cause": "timeout", "job_id": "9_0", "sacred_id": 1},
        {"attempt": 2, "state": "failed", "cause": "failed", "job_id": "9_0", "sacred_id": 2}]
    assert set(out) == {"index", "state", "attempts", "job_id", "storage_dir", "error", "damaged", "varied",
                        "iteration", "epoch", "heartbeat", "ended", "history", "elapsed_s", "seed", "code",
                        "ranks", "nodes", "gave_up", "reason", "usage"}
    json.dumps(out)  # plain JSON
    empty = PointRow(index=3, state=State.PENDING, job_id=None, storage_dir="d", status=PointStatus()).to_json()
    assert empty["ranks"] is None and empty["nodes"] is None and empty["gave_up"] is None and empty["history"] == []


def test_sacct_is_asked_for_an_earlier_attempt_killed_without_a_word(tmp_path):
    """No point is lost now, but one's first attempt was: sacct tells why it died."""
    m = manifest(tmp_path, n=1)
    killed = attempt(state=State.LOST, job_id="9_0", started=iso(T0))
    write_status(m.points[0], status_of(killed, attempt(attempt=2, state=State.COMPLETED, started=iso(T0 + 60))))
    asked = Scheduler(queue={}, history={"9_0": [(iso(T0 + 1), "NODE_FAIL"), (iso(T0 + 60), "COMPLETED")]})
    (row,) = state.sweep_states(tmp_path, m, asked)
    assert row.state == State.COMPLETED and [a.cause for a in row.status.attempts] == ["node_fail", None]
    assert asked.calls[-1] == ("sacct", ["9_0"])
    quiet = Scheduler(queue={})
    write_status(m.points[0], status_of(attempt(state=State.COMPLETED)))
    state.sweep_states(tmp_path, m, quiet)
    assert all(c[0] != "sacct" for c in quiet.calls if isinstance(c, tuple)), "sacct asked with nothing lost"


def test_the_state_function_edges(tmp_path):
    import socket

    m = manifest(tmp_path)
    e = m.points[0]
    # a status file that claims an end without any attempt: nothing ran
    assert state.point_state(m, e, PointStatus(state=State.COMPLETED), Intent()) == State.PENDING
    # a SLURM point's attempt on this host with a gone pid is the scheduler's to judge, not ours
    gone = status_of(attempt(host=socket.gethostname(), pid=4_000_000))
    assert state.point_state(m, e, gone, Intent()) == State.RUNNING
    # a local sweep's points are never looked up in a queue
    local = manifest(tmp_path, executor="local", runner={"host": "elsewhere", "pid": 1}).with_jobs({0: "local"})
    assert state.point_state(local, local.points[0], status_of(attempt(job_id="local", host="elsewhere")),
                             Intent(), {}, {}) == State.RUNNING


def test_status_rows_of_later_attempts_and_snapshots(tmp_path):
    m = manifest(tmp_path, n=1, varied=("lr", "fixed"),
                 code_versions={"2": {"dir": "elsewhere", "sha256": "5566778899aabbcc"}})
    m = m.with_points(lambda e: e.replace(code_version=2))
    e = m.points[0]
    attempts = (attempt(state=State.TIMEOUT, started=iso(T0), ended=iso(T0 + 10), sacred_id=1),
                attempt(attempt=2, state=State.TIMEOUT, started=iso(T0 + 20), ended=None, sacred_id=2),
                attempt(attempt=3, state=State.COMPLETED, started=iso(T0 + 40), ended=iso(T0 + 40.06), sacred_id=3))
    write_status(e, status_of(*attempts))
    for sid, beat in ((2, "second"), (3, "third")):
        (e.path / "sacred" / str(sid)).mkdir(parents=True)
        (e.path / "sacred" / str(sid) / "run.json").write_text(json.dumps({"heartbeat": beat}))
    (row,) = state.status_rows(m, state.point_states(m), now=T0 + 100)
    assert row.heartbeat == "third" and row.code == "v2 (55667788)"
    assert row.elapsed_s == 10.1 and type(row.elapsed_s) is float  # an attempt without an end counts nothing
    assert row.varied == {"lr": 0.1, "fixed": 1}
    assert m.code_of(2).dir == "elsewhere"
    odd = m.replace(code_versions={"1": {"dir": "not-the-first"}})
    assert odd.code_of(1).dir == "code", "version 1 is always the sweep's first snapshot"


def test_without_a_scheduler_to_ask_the_states_come_from_the_files(tmp_path, no_slurm):
    m = manifest(tmp_path, n=1)
    write_status(m.points[0], status_of(attempt()))
    assert [r.state for r in state.sweep_states(tmp_path, m)] == [State.RUNNING]


def test_code_of_without_a_version_is_the_first_snapshot(tmp_path):
    m = manifest(tmp_path, code_versions={"2": {"dir": "code-2", "sha256": "ff"}})
    assert m.code_of() == m.code_of(1) != m.code_of(2)


# ----------------------------------------------------------------------------- the touched notes


def test_status_opens_the_files_of_noted_points_and_of_jobs_the_queue_shows_going(tmp_path):
    """A sweep that keeps `touched` notes: a point with neither a note nor a job other than
    pending in the queue has no file to read (status of 10,000 queued points opens none); a
    noted one is read, and so is any point whose job runs or left the queue, note or not."""
    from ptslurm.records import manifests

    sweep_dir = tmp_path / "sweep"
    m = manifest(tmp_path, n=4, touched=True)
    for entry in m.points:  # each has an attempt on record; the first was requeued and waits
        write_status(entry, status_of(attempt(job_id=entry.job_id, state=State.REQUEUED)))
    manifests.touch_point(sweep_dir, 0)
    queue = {"9_0": "PENDING", "9_1": "PENDING", "9_2": "RUNNING"}  # 9_3 left the queue
    files = state.point_files(m, sweep_dir, queue)
    assert [found.record is not None for found, _ in files] == [True, False, True, True]
    assert [r.state for r in state.sweep_states(sweep_dir, m, Scheduler(queue=queue))][:3] == [
        State.REQUEUED, State.PENDING, State.RUNNING]
    # no queue to ask (a local sweep, a controller that did not answer): the notes alone
    assert [found.record is not None for found, _ in state.point_files(m, sweep_dir)] == [True, False, False, False]
    # a sweep from before the notes, or notes that cannot be read: every point's files
    assert all(found.record for found, _ in state.point_files(m.replace(touched=False), sweep_dir, queue))
    (sweep_dir / "touched").chmod(0)
    try:
        if not os.access(sweep_dir / "touched", os.R_OK):  # (root reads anyway)
            assert all(found.record for found, _ in state.point_files(m, sweep_dir, queue))
    finally:
        (sweep_dir / "touched").chmod(0o755)


def test_a_cancel_is_noted_so_that_status_without_a_queue_shows_it(tmp_path, no_slurm):
    """The intent writer notes the point before writing: with no controller answering, a
    cancelled point that never started still shows cancelled."""
    from ptslurm.submit import lifecycle
    from ptslurm.records import manifests

    sweep_dir = tmp_path / "sweep"
    m = manifest(tmp_path, n=2, touched=True)
    for entry in m.points:
        entry.path.mkdir(parents=True)
    lifecycle.write_intent(sweep_dir, m.points[1], cancelled=True)
    assert sorted(os.listdir(sweep_dir / "touched")) == ["1"]
    assert [r.state for r in state.sweep_states(sweep_dir, m)] == [State.PENDING, State.CANCELLED]
    manifests.touch_point(sweep_dir, 1)  # again: nothing changes
    assert sorted(os.listdir(sweep_dir / "touched")) == ["1"]


# ----------------------------------------------------------------------------- why, groups, counts


def row_of(state_, error=None, gave_up=None, index=0, **fields) -> PointRow:
    attempts_ = (attempt(state=state_, gave_up=gave_up),) if gave_up is not None or state_ != State.PENDING else ()
    return PointRow(index=index, state=state_, job_id="9_0", storage_dir="d", status=status_of(*attempts_),
                    error=error, **fields)


def test_why_a_point_ended_is_its_errors_first_line_or_why_it_was_not_requeued():
    assert state.why(row_of(State.FAILED, error="ValueError: bad lr\n  more")) == "ValueError: bad lr"
    assert state.why(row_of(State.FAILED, gave_up="it failed without progress")) == "it failed without progress"
    assert state.why(row_of(State.FAILED, error="E: boom", gave_up="4 failures")) == "E: boom", "the error first"
    assert state.why(row_of(State.TIMEOUT, error="stopped", gave_up="--max-attempts 2 reached")) == \
        "--max-attempts 2 reached", "a stopped point: why it is not requeued"
    assert state.why(row_of(State.TIMEOUT, error="stopped")) == "stopped"
    for quiet in (row_of(State.COMPLETED, gave_up="x"), row_of(State.CANCELLED, error="e"),
                  row_of(State.RUNNING, error="e", gave_up="x"), row_of(State.FAILED), row_of(State.PENDING)):
        assert state.why(quiet) == "", quiet.state


def test_failures_are_grouped_by_why_the_largest_group_first():
    rows = [row_of(State.FAILED, error="A", index=0), row_of(State.FAILED, error="B", index=1),
            row_of(State.COMPLETED, index=2), row_of(State.FAILED, error="B", index=3),
            row_of(State.TIMEOUT, gave_up="C", index=4), row_of(State.FAILED, error="B", index=5),
            row_of(State.FAILED, error="A", index=6)]
    groups = state.failure_groups(rows)
    assert [(said, [r.index for r in rs]) for said, rs in groups] == [("B", [1, 3, 5]), ("A", [0, 6]), ("C", [4])]


def test_counts_each_state_in_order():
    rows = [row_of(s) for s in (State.RUNNING, State.COMPLETED, State.RUNNING, State.FAILED, State.RUNNING)]
    counted = state.counts(rows)
    assert counted == {State.COMPLETED: 1, State.FAILED: 1, State.RUNNING: 3}
    assert list(counted) == [s for s in ORDER if s in counted]


def test_a_row_names_an_unknown_field_and_its_reason_and_usage_show_in_json(tmp_path):
    row = row_of(State.PENDING)
    with pytest.raises(TypeError, match="PointRow has no field bogus, nope"):
        row.replace(nope=1, bogus=2)
    assert row.replace(reason="Priority").to_json()["reason"] == "Priority" and row.to_json()["reason"] is None
    used = PointRow(index=0, state=State.RUNNING, job_id="9_0", storage_dir="d",
                    status=status_of(attempt(usage={"peak_mb": 300})))
    assert used.to_json()["usage"] == {"peak_mb": 300}


def test_an_attempt_killed_without_an_end_adds_no_time(tmp_path):
    m = manifest(tmp_path, n=1)
    write_status(m.points[0], status_of(attempt(state=State.LOST, heartbeat=iso(T0 + 50))))
    assert state.status_rows(m, state.point_states(m, queue={}), now=T0 + 1000)[0].elapsed_s == 0.0
