"""Job-side decisions as pure functions: why an attempt ended (from SLURM's record of the
job, faked here) and whether it is requeued within the caps."""
import signal

import pytest

from ptslurm.job import attempts, interrupt, point
from ptslurm.records import Attempt, PointStatus

pytestmark = pytest.mark.fast


class Record:
    """An attempt record with ``causes`` before the current attempt; ``progress``: whether
    the current attempt got anywhere; ``previous``: the fingerprint of the failure before."""

    storage_dir = None

    def __init__(self, causes, progress=True, previous=None, progressed=None):
        self.status = PointStatus(attempts=tuple(Attempt(cause=c, progressed=progressed) for c in causes)
                                  + (Attempt(),))
        self.progress, self.previous = progress, previous
        self.asked = []  # the any_file argument of each made_progress call

    count = attempts.AttemptRecord.count
    stalls = attempts.AttemptRecord.stalls
    attempts_in_submission = attempts.AttemptRecord.attempts_in_submission

    def made_progress(self, any_file=False):
        """``progress``: True (reported, or a new checkpoint), "files" (only files the code
        wrote: progress only when the caller counts any file), or False."""
        self.asked.append(any_file)
        return self.progress is True or (any_file and self.progress == "files")

    def previous_failure(self):
        return None if self.previous is None else Attempt(cause="failed", fingerprint=self.previous)


@pytest.fixture
def slurm_env(monkeypatch, fake_slurm):
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    interrupt.reset()
    yield monkeypatch
    interrupt.reset()


def fake_info(**fields):
    """The job that asks ($SLURM_JOB_ID, 42) on the fake scheduler standing in for SLURM
    (``fake_slurm``), whose record (scontrol show job) says ``fields`` (None: a field left
    out); job 41 beside it was preempted, so a question about the wrong job gets the wrong
    answer."""
    from ptslurm import schedulers

    cluster = schedulers.slurm().cluster
    cluster.jobs["41"] = {"state": "RUNNING", "restarts": 5, "scontrol": {"PreemptTime": "2026-11-28T14:00:00"}}
    cluster.jobs["42"] = {"state": fields.pop("JobState", None) or "RUNNING", "restarts": 1, "scontrol": fields}
    return cluster


@pytest.mark.parametrize("sig, fields, causes, expected", [
    (signal.SIGUSR2, {"PreemptTime": "2026-11-28T14:08:46"}, [], ("requeued", "preempted", "requeue")),
    # a long training lives through any number of stops that make progress
    (signal.SIGUSR2, {"PreemptTime": "2026-11-28T14:08:46"}, ["preempted"] * 30, ("requeued", "preempted", "requeue")),
    (signal.SIGTERM, {"Restarts": "2", "JobState": "COMPLETING"}, [], ("requeued", "requeued", None)),
    (signal.SIGUSR2, {}, [], ("requeued", "timeout", "requeue")),
    (signal.SIGUSR2, {}, ["timeout", "preempted", "timeout", "timeout"] * 5, ("requeued", "timeout", "requeue")),
    (signal.SIGTERM, {"JobState": "CANCELLED"}, [], ("cancelled", "cancelled", None)),
    # scancel: SIGTERM first and the job is COMPLETING; never requeued
    (signal.SIGTERM, {"JobState": "COMPLETING"}, [], ("cancelled", "cancelled", None)),
    # the time-limit signal while the job is on its way out is still a time limit
    (signal.SIGUSR2, {"JobState": "COMPLETING"}, [], ("requeued", "timeout", "requeue")),
    (None, {}, ["failed"], ("requeued", "failed", "requeue")),  # with progress
    (None, {}, ["failed", "failed", "failed"], ("failed", "failed", None)),  # the cap
])
def test_decisions_on_slurm(slurm_env, sig, fields, causes, expected):
    fake_info(**fields)
    if sig is not None:
        interrupt.request_stop(sig)
        exc = interrupt.Interrupted("stopped")
    else:
        exc = RuntimeError("boom")
    assert attempts.decide(exc, Record(causes), max_requeues=3)[:3] == expected


def test_a_packed_point_whose_job_process_died_is_stopped_not_cancelled(slurm_env):
    """SIGTERM from PR_SET_PDEATHSIG while the job is COMPLETING reads like scancel; with the
    job's process gone (the point's parent is not the one that started it) it is the job's
    end: resumable (resubmit --failed finds it), never 'cancelled'."""
    import os

    fake_info(JobState="COMPLETING")
    interrupt.request_stop(signal.SIGTERM)
    slurm_env.setenv("PTSLURM_PACK_PARENT", str(os.getppid()))  # its parent lives: a scancel
    assert attempts.classify(interrupt.Interrupted("x")) == "cancelled"
    slurm_env.setenv("PTSLURM_PACK_PARENT", str(os.getppid() + 100000))  # the parent is gone
    assert attempts.classify(interrupt.Interrupted("x")) == "terminated"


def test_outside_slurm_nothing_is_requeued(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    interrupt.reset()
    assert attempts.decide(RuntimeError("x"), Record([]), 3)[:3] == ("failed", "failed", None)
    interrupt.request_stop()
    assert attempts.decide(interrupt.Interrupted("x"), Record([]), 3)[:3] == ("interrupted", "interrupted", None)
    interrupt.reset()


def test_caps_count_only_attempts_of_the_current_submission():
    record = Record([])
    record.status = PointStatus(submission=1, attempts=(Attempt(cause="failed", submission=0),) * 3 + (
        Attempt(cause="failed", submission=1), Attempt(submission=1)))
    assert record.count("failed") == 1


def boom():
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        return exc


@pytest.mark.parametrize("progress, previous, expected", [
    (False, None, ("failed", "failed", None)),  # a start-up bug: one attempt
    (True, None, ("requeued", "failed", "requeue")),  # it got somewhere: worth another go
    (False, "ImportError: other @ x.py:1", ("requeued", "failed", "requeue")),  # a different failure
    (False, "SAME", ("failed", "failed", None)),  # the same failure, no progress
])
def test_failures_are_retried_only_after_progress_or_a_different_failure(slurm_env, progress, previous, expected):
    fake_info()
    exc = boom()
    record = Record(["failed"] if previous else [], progress, attempts.fingerprint(exc) if previous == "SAME" else previous)
    assert attempts.decide(exc, record, max_requeues=3)[:3] == expected


def test_progress_is_a_reported_step_or_a_new_checkpoint_of_any_code(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    record = attempts.AttemptRecord(tmp_path)
    record.start()
    assert not record.made_progress()
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "my_own_ckpt.pt").write_bytes(b"x")
    assert record.made_progress()
    again = attempts.AttemptRecord(tmp_path)
    again.start()
    assert not again.made_progress()
    again.report({"iteration": 5}, resumed=False)
    assert again.made_progress()


def test_a_cancel_intent_makes_any_stop_a_cancel(tmp_path, slurm_env):
    fake_info()  # SLURM says nothing special
    (tmp_path / "ptslurm_intent.json").write_text('{"cancelled": true, "submission": 0}')
    record = Record([])
    record.storage_dir = tmp_path
    interrupt.request_stop(signal.SIGUSR2)
    assert attempts.decide(interrupt.Interrupted("x"), record, 3)[:3] == ("cancelled", "cancelled", None)


@pytest.mark.parametrize("earlier, expected, why", [
    ([("timeout", False)] * 2, "requeue", None),  # the third stop in a row without progress: still within 3
    ([("timeout", False)] * 3, None, "4 stops in a row without progress (--max-requeues 3)"),
    ([("preempted", False), ("timeout", False), ("timeout", False)], None, "4 stops in a row"),
    ([("timeout", False)] * 3 + [("timeout", True)], "requeue", None),  # the streak was broken
    ([("timeout", False)] * 2 + [("failed", True), ("timeout", False)], "requeue", None),
])
def test_stops_without_progress_in_a_row_are_capped(slurm_env, earlier, expected, why):
    fake_info()
    record = Record([], progress=False)
    record.status = PointStatus(attempts=tuple(Attempt(cause=c, progressed=p) for c, p in earlier) + (Attempt(),))
    interrupt.request_stop(signal.SIGUSR2)
    decision = attempts.decide(interrupt.Interrupted("x"), record, max_requeues=3)
    assert decision.action == expected and decision.progressed is False
    assert (why is None and decision.gave_up is None) or why in decision.gave_up


@pytest.mark.parametrize("exc, expected", [
    ("stop", "requeue"),  # a time limit: the files it wrote are its progress
    ("failure", None),  # a crash: only reported progress or a checkpoint counts
])
def test_files_written_count_as_progress_for_a_stop_but_not_for_a_failure(slurm_env, exc, expected):
    """Code that never reports (a plain loop with its own state file) is judged by its
    files when it is stopped; a crash that only touched files is not progress."""
    fake_info()
    record = Record([], progress="files")
    record.status = PointStatus(attempts=tuple(Attempt(cause="timeout", progressed=False) for _ in range(3))
                                + (Attempt(),))
    if exc == "stop":
        interrupt.request_stop(signal.SIGUSR2)
        decision = attempts.decide(interrupt.Interrupted("x"), record, max_requeues=3)
    else:
        decision = attempts.decide(RuntimeError("boom"), record, max_requeues=3)
    assert decision.action == expected
    assert record.asked == ([True] if exc == "stop" else [False])


def test_max_attempts_is_an_optional_total_budget(slurm_env):
    fake_info()
    record = Record(["timeout"] * 4, progress=True)
    interrupt.request_stop(signal.SIGUSR2)
    assert attempts.decide(interrupt.Interrupted("x"), record, 3).action == "requeue"
    decision = attempts.decide(interrupt.Interrupted("x"), record, 3, max_attempts=5)
    assert decision.action is None and decision.gave_up == "--max-attempts 5 reached"


def test_any_file_the_code_writes_is_progress_for_code_that_never_reports(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    record = attempts.AttemptRecord(tmp_path)
    record.start()
    (tmp_path / "ptslurm_intent.json").write_text("{}")  # ptslurm's own files are not progress
    (tmp_path / "sacred" / "2").mkdir(parents=True)
    (tmp_path / "sacred" / "2" / "metrics.json").write_text("{}")
    (tmp_path / ".ckpt.tmp").write_text("")
    assert not record.made_progress(any_file=True)
    (tmp_path / "lightning_logs" / "version_0").mkdir(parents=True)
    (tmp_path / "lightning_logs" / "version_0" / "last.ckpt").write_bytes(b"x")
    assert record.made_progress(any_file=True) and not record.made_progress()
    again = attempts.AttemptRecord(tmp_path)
    again.start()
    again.report({"iteration": 5}, resumed=False)
    again.status = again.status.replace(progress=again.latest.progress_at_start)  # reported nothing new
    (tmp_path / "events.out").write_bytes(b"y")
    assert again.made_progress(any_file=True), "never reported before this attempt: files count"


def test_never_asking_code_runs_on_to_the_margin_before_the_jobs_end(slurm_env, monkeypatch):
    import datetime
    import time

    end = (datetime.datetime.now() + datetime.timedelta(seconds=2.5)).replace(microsecond=0)  # scontrol: seconds
    fake_info(EndTime=end.isoformat())
    monkeypatch.setattr(point, "END_MARGIN_S", 0.5)
    interrupt.request_stop(signal.SIGUSR2)  # the time-limit signal; the code never asked
    started = time.time()
    point._use_allocation()
    waited = time.time() - started
    assert abs((time.time() + 0.5) - end.timestamp()) < 0.3 and waited > 0.9, waited
    # a preemption (PreemptTime) ends it within the grace time: no waiting
    fake_info(EndTime=(datetime.datetime.now() + datetime.timedelta(seconds=30)).isoformat(),
              PreemptTime="2026-12-01T10:00:00")
    started = time.time()
    point._use_allocation()
    assert time.time() - started < 0.5


def stop(sig):
    interrupt.request_stop(sig)
    return interrupt.Interrupted("stopped")


def disk_full():
    import errno

    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as exc:
            raise RuntimeError("saving the checkpoint failed") from exc
    except RuntimeError as exc:
        return exc


@pytest.mark.parametrize("case, make_exc, info, record, expected", [
    ("a changed snapshot", lambda: __import__("ptslurm.errors").errors.SnapshotError("edited"), {},
     Record([]), ("failed", "failed", None, None, None)),
    ("a full disk, however deep in the chain", disk_full, {}, Record([]), ("failed", "no_space", None, None, None)),
    ("scontrol requeue after files only", lambda: stop(signal.SIGTERM), {"Restarts": "2"}, Record([], "files"),
     ("requeued", "requeued", None, True, None)),
    ("scontrol requeue without progress", lambda: stop(signal.SIGTERM), {"Restarts": "2"}, Record([], False),
     ("requeued", "requeued", None, False, None)),
    ("a first failure without progress", boom, {}, Record([], False),
     ("failed", "failed", None, False, "it failed without progress")),
    ("the same failure again", boom, {}, Record(["failed"], False, "SAME"),
     ("failed", "failed", None, False, "it failed without progress the same way as the attempt before")),
    ("failures with progress, to the cap", boom, {}, Record(["failed"] * 3, True),
     ("failed", "failed", None, True, "4 failures in this submission (--max-requeues 3)")),
    ("one failure with progress", boom, {}, Record(["failed"] * 2, True), ("requeued", "failed", "requeue", True, None)),
    ("stops without progress, past the cap", lambda: stop(signal.SIGUSR2), {}, Record(["timeout"] * 3, False, None, False),
     ("timeout", "timeout", None, False, "4 stops in a row without progress (--max-requeues 3)")),
    ("a preemption past the cap", lambda: stop(signal.SIGUSR2), {"PreemptTime": "2026-11-28T14:08:46"},
     Record(["preempted"] * 3, False, None, False),
     ("preempted", "preempted", None, False, "4 stops in a row without progress (--max-requeues 3)")),
    ("SIGTERM from elsewhere past the cap", lambda: stop(signal.SIGTERM), {}, Record(["terminated"] * 3, False, None, False),
     ("timeout", "terminated", None, False, "4 stops in a row without progress (--max-requeues 3)")),
    ("a time limit with progress", lambda: stop(signal.SIGUSR2), {}, Record(["timeout"] * 3, True, None, False),
     ("requeued", "timeout", "requeue", True, None)),
])
def test_each_decision_whole(slurm_env, case, make_exc, info, record, expected):
    """Every field of the decision the job records (state, cause, action, progressed, why it
    gave up), for each way an attempt can end on SLURM."""
    fake_info(**info)
    exc = make_exc()
    if record.previous == "SAME":
        record.previous = attempts.fingerprint(exc)
    assert tuple(attempts.decide(exc, record, max_requeues=3)) == expected, case


def test_the_attempt_budget_ends_a_point_that_progresses(slurm_env):
    fake_info()
    record = Record(["timeout"] * 4, progress=True)
    decision = attempts.decide(stop(signal.SIGUSR2), record, 3, max_attempts=5)
    assert tuple(decision) == ("timeout", "timeout", None, True, "--max-attempts 5 reached")
    interrupt.reset()
    assert tuple(attempts.decide(boom(), Record(["failed"] * 4, True), 9, max_attempts=5)) == (
        "failed", "failed", None, True, "--max-attempts 5 reached")


def test_the_attempt_record_on_disk_through_two_starts(tmp_path, monkeypatch):
    """The status file an attempt writes, field by field: who and where it runs, the job and
    restart count SLURM gives, what it found at its start (progress, newest checkpoint, the
    code's own files); a start that finds an attempt still "running" records that one as
    lost (it ended at its last heartbeat); an update lands on the latest attempt only."""
    import json
    import os
    import socket

    from ptslurm.records import STATUS

    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "77")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "ckpt_10.pth").write_bytes(b"x")
    (tmp_path / "own.txt").write_text("written by the code")
    (tmp_path / "ptslurm_intent.json").write_text("{}")  # ptslurm's own: not the code's footprint
    record = attempts.AttemptRecord(tmp_path, submission=4, code_dir="/sweep/code")
    first = record.start(packed=3)
    on_disk = json.loads((tmp_path / STATUS).read_text())
    assert (on_disk["state"], on_disk["attempt"], on_disk["job_id"], on_disk["submission"],
            on_disk["code_dir"]) == ("running", 1, "77_3", 4, "/sweep/code")
    a = on_disk["attempts"][0]
    assert (a["attempt"], a["state"], a["job_id"], a["submission"], a["host"], a["pid"], a["restart_count"],
            a["packed"]) == (1, "running", "77_3", 4, socket.gethostname(), os.getpid(), 2, 3)
    assert a["started"] and a["heartbeat"] and on_disk["updated"] and isinstance(a["usage"], dict)
    assert a["checkpoint_at_start"][0] == "ckpt_10.pth" and a["footprint_at_start"][0] == 2  # own.txt, the ckpt
    assert first.attempt == 1
    monkeypatch.setenv("SLURM_RESTART_COUNT", "3")
    again = attempts.AttemptRecord(tmp_path, submission=4)  # the first one never said how it ended
    again.start()
    again.update(state=attempts.State.TIMEOUT, cause="timeout")
    on_disk = json.loads((tmp_path / STATUS).read_text())
    assert [(x["attempt"], x["state"]) for x in on_disk["attempts"]] == [(1, "lost"), (2, "timeout")]
    assert on_disk["attempts"][0]["ended"] == on_disk["attempts"][0]["heartbeat"]
    assert on_disk["attempts"][1]["restart_count"] == 3 and on_disk["state"] == "timeout"
    assert on_disk["code_dir"] == "/sweep/code", "a later attempt keeps the snapshot it runs"
    final = attempts.AttemptRecord(tmp_path, submission=5)
    assert final.status.submission == 5, "the command line's intent decides the submission"


def test_the_footprint_counts_only_what_the_code_wrote(tmp_path):
    """[count, newest mtime] of the code's own files: ptslurm's files at the top (status,
    intent, lease, config, its reserve), sacred's runs, temp files and links left out; a
    file of the code named like ptslurm's deeper down still counts."""
    import os

    def write(rel, mtime_ns):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)
        os.utime(path, ns=(mtime_ns, mtime_ns))

    write("own.txt", 1_000)
    write("runs/ptslurm_status.json", 3_000)  # the code's, below the top
    write("lightning_logs/version_0/.ptslurm-x", 2_000)
    for rel in ("ptslurm_status.json", "ptslurm_intent.json", "ptslurm_lease.json", "config.json",
                ".ptslurm-reserve", "sacred/1/run.json", "model.pt.tmp"):
        write(rel, 9_000)
    (tmp_path / "latest.pth").symlink_to(tmp_path / "own.txt")
    assert attempts.footprint(tmp_path) == [3, 3_000]
    assert attempts.footprint(tmp_path / "missing") == [0, 0]


def test_a_full_disk_is_still_recorded_from_the_reserve(small_tmpfs, monkeypatch):
    """An attempt holds back some space (its reserve); when the disk fills up, the end of the
    attempt is written after giving the reserve back. Without a reserve the full disk's error
    goes up."""
    import errno
    import json

    from ptslurm.records import STATUS

    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    mnt = small_tmpfs("1m")
    record = attempts.AttemptRecord(mnt)
    record.reserve()
    assert (mnt / record.RESERVE).stat().st_size == record.RESERVE_BYTES
    record.start()
    with open(mnt / "filler", "wb", buffering=0) as fh:  # the code fills the disk
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    record.update(state=attempts.State.FAILED, cause="no_space", final=True)
    assert json.loads((mnt / STATUS).read_text())["state"] == "failed"
    assert not (mnt / record.RESERVE).exists(), "the reserve was given back"
    again = attempts.AttemptRecord(mnt)  # the next attempt, on a disk still full, with no reserve left
    again.start()
    with pytest.raises(OSError) as raised:
        again.update(resumed_from={"blob": "x" * 400_000})
    assert raised.value.errno == errno.ENOSPC


def test_the_failure_before_is_the_previous_attempt_of_this_submission():
    record = Record([])
    failed = Attempt(cause="failed", submission=1, fingerprint="f")
    cases = [((), None), ((failed,), failed), ((failed.replace(submission=0),), None),
             ((failed.replace(cause="timeout"),), None), ((failed, Attempt(cause="timeout", submission=1)), None)]
    for earlier, expected in cases:
        record.status = PointStatus(submission=1, attempts=earlier + (Attempt(submission=1),))
        assert attempts.AttemptRecord.previous_failure(record) == expected, earlier


@pytest.mark.parametrize("case, sig, info, restart_count, expected", [
    ("an empty preemption time is none", signal.SIGUSR2, {"PreemptTime": ""}, "1", "timeout"),
    ("no restart count on record: the first run", signal.SIGUSR2, {"Restarts": None}, None, "timeout"),
    ("SLURM restarted it, the job's environment says none", signal.SIGUSR2, {"Restarts": "1"}, None, "requeued"),
    ("requeued, the counts agreeing", signal.SIGTERM, {"JobState": "REQUEUED"}, "1", "requeued"),
    ("held on its way back", signal.SIGTERM, {"JobState": "REQUEUE_HOLD"}, "1", "requeued"),
])
def test_what_slurms_record_says_of_a_stop(slurm_env, case, sig, info, restart_count, expected):
    fake_info(**info)
    if restart_count is None:
        slurm_env.delenv("SLURM_RESTART_COUNT")
    else:
        slurm_env.setenv("SLURM_RESTART_COUNT", restart_count)
    assert attempts.classify(stop(sig)) == expected, case


def test_ctrl_c_outside_slurm_is_an_interruption(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    interrupt.reset()
    assert attempts.classify(KeyboardInterrupt()) == "interrupted"
    assert attempts.classify(RuntimeError("x")) == "failed"
