"""The typed on-disk contract (ptslurm/records/__init__.py) and the one state function, on literal
files: round trips, damaged files read as named warnings, and the state every command shows
for each combination of status file, intent file and scheduler answer."""
import json

import pytest

from ptslurm import records
from ptslurm.read import results, state
from ptslurm.records import BUSY, RETRYABLE, TERMINAL, Attempt, Intent, Manifest, PointEntry, PointStatus, State

pytestmark = pytest.mark.fast

STATUS_0_1 = {  # what ptslurm 0.1 writes: a point requeued once after a preemption, then done
    "attempts": [
        {"attempt": 1, "state": "requeued", "job_id": "41_0", "submission": 0, "host": "n1", "pid": 11,
         "started": "2026-11-29T01:00:00+00:00", "heartbeat": "2026-11-29T01:04:00+00:00",
         "restart_count": 0, "progress_at_start": None, "checkpoint_at_start": None, "sacred_id": 1,
         "cause": "preempted", "ended": "2026-11-29T01:04:30+00:00", "action": "requeue",
         "error": "Interrupted: stop requested", "fingerprint": "Interrupted: x @ a.py:3", "final": True},
        {"attempt": 2, "state": "completed", "job_id": "41_0", "submission": 0, "host": "n1", "pid": 12,
         "started": "2026-11-29T01:06:00+00:00", "heartbeat": "2026-11-29T01:09:00+00:00",
         "restart_count": 1, "progress_at_start": {"iteration": 50, "epoch": 1, "time": "t"},
         "checkpoint_at_start": ["ckpt_50.pth", 123], "sacred_id": 2, "ended": "2026-11-29T01:09:10+00:00",
         "result": 0.25, "final": True, "future_field": {"kept": True}}],
    "submission": 0, "state": "completed", "attempt": 2, "job_id": "41_0", "updated": "2026-11-29T01:09:10+00:00",
    "progress": {"iteration": 100, "epoch": 2, "time": "t"}, "code_dir": "/s/code"}


def test_status_record_round_trips_and_keeps_fields_it_does_not_know():
    status = PointStatus.from_json(STATUS_0_1)
    assert status.state is State.COMPLETED and status.latest.state is State.COMPLETED
    assert [a.cause for a in status.attempts] == ["preempted", None]
    assert status.result() == 0.25 and status.latest.extra == {"future_field": {"kept": True}}
    assert json.loads(json.dumps(status.to_json())) == STATUS_0_1  # nothing lost, nothing added
    with pytest.raises(Exception):  # frozen: a change is a new record
        status.state = State.FAILED  # type: ignore[misc]
    assert status.replace(state=State.FAILED).state is State.FAILED and status.state is State.COMPLETED


def test_state_values_are_the_strings_in_the_files_and_the_sets_are_consistent():
    assert f"{State.PREEMPTED}" == str(State.PREEMPTED) == "preempted" and State.parse("nonsense") is State.UNKNOWN
    assert json.dumps({"s": State.LOST}) == '{"s": "lost"}'
    assert RETRYABLE < TERMINAL and not (BUSY & TERMINAL) and State.COMPLETED not in RETRYABLE
    assert set(records.ORDER) == set(State)  # every state has its place in the counts


def test_manifest_round_trips_and_job_ids_change_only_through_new_records(tmp_path):
    from ptslurm.records import manifests
    from ptslurm.records.spec import Resources

    entry = PointEntry(index=0, updates={"lr": 0.1}, named_configs=("small",), varied=("lr",), storage_dir="/r/e/1",
                       seed=7)
    manifest = Manifest(name="s", executor="slurm", points=(entry, entry.replace(index=1, storage_dir="/r/e/2")),
                        resources=Resources(gpus=1, timeout_min=30), varied=("lr",))
    manifests.write_manifest(tmp_path, manifest)
    back = manifests.read_manifest(tmp_path)
    assert back == manifest and back.resources.gpus == 1 and back.points[1].path.name == "2"
    book = manifests.ManifestBook(tmp_path, back)
    book.set_jobs({1: "9_1"})
    assert [p.job_id for p in manifests.read_manifest(tmp_path).points] == [None, "9_1"]
    assert back.points[1].job_id is None  # the record read before is unchanged
    assert entry.varied_values(("lr", "named_configs")) == {"lr": 0.1, "named_configs": "small"}
    assert entry.to_point().updates == {"lr": 0.1}


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", '"text"', "\x00\x01"])
def test_a_damaged_record_is_a_named_path_not_an_exception(tmp_path, text):
    path = tmp_path / records.STATUS
    path.write_text(text)
    found = records.read(path, PointStatus)
    assert found.record is None and found.damaged == str(path)
    assert records.read(tmp_path / "missing.json", PointStatus) == records.Read(None, None)
    assert records.read_status(tmp_path) == PointStatus()  # callers that need a record get an empty one


def test_damaged_entries_inside_a_record_are_dropped_not_fatal(tmp_path):
    data = dict(STATUS_0_1, attempts=["torn", STATUS_0_1["attempts"][1]], submission="x")
    status = PointStatus.from_json(data)
    assert len(status.attempts) == 1 and status.submission == 0


def test_nan_and_infinity_written_by_sacred_are_read(tmp_path):
    import math

    path = tmp_path / "metrics.json"
    path.write_text('{"loss": {"steps": [1, 2], "values": [NaN, Infinity]}}')
    values = records.read_json(path)["loss"]["values"]
    assert math.isnan(values[0]) and values[1] == math.inf


def _manifest(executor="slurm", **fields):
    entry = PointEntry(index=0, storage_dir="/nonexistent/1", job_id="5_0" if executor == "slurm" else "local")
    return Manifest(name="s", executor=executor, points=(entry,), **fields), entry


def _status(state, submission=0, host="elsewhere", pid=1):
    return PointStatus(state=state, attempts=(Attempt(state=state, submission=submission, host=host, pid=pid),),
                       submission=submission)


@pytest.mark.parametrize("status,intent,queue,accounting,expected", [
    (PointStatus(), Intent(), None, None, State.PENDING),
    (_status(State.RUNNING), Intent(), {"5_0": "RUNNING"}, None, State.RUNNING),
    (_status(State.RUNNING), Intent(), {"5_0": "PENDING"}, None, State.REQUEUED),  # requeued by SLURM
    (PointStatus(), Intent(), {"5_0": "RUNNING"}, None, State.RUNNING),  # started, nothing written yet
    (_status(State.RUNNING), Intent(), {}, {"5_0": "TIMEOUT"}, State.TIMEOUT),  # killed at the limit
    (_status(State.RUNNING), Intent(), {}, {"5_0": "CANCELLED by 0"}, State.CANCELLED),
    (_status(State.RUNNING), Intent(), {}, {"5_0": "NODE_FAIL"}, State.FAILED),
    (_status(State.RUNNING), Intent(), {}, {}, State.LOST),  # gone without a trace
    (_status(State.FAILED), Intent(submission=1), {"5_0": "PENDING"}, None, State.PENDING),  # resubmitted
    (_status(State.RUNNING), Intent(cancelled=True), {"5_0": "RUNNING"}, None, State.CANCELLED),
    (_status(State.COMPLETED), Intent(cancelled=True), None, None, State.COMPLETED),  # done before the cancel
    (_status(State.RUNNING, submission=2), Intent(cancelled=True, submission=1), None, None, State.RUNNING),
    (_status(State.PREEMPTED), Intent(), {}, {}, State.PREEMPTED),  # ended: the scheduler is not asked
])
def test_point_state(status, intent, queue, accounting, expected):
    manifest, entry = _manifest()
    assert state.point_state(manifest, entry, status, intent, queue, accounting) is expected


def test_point_state_waiting_and_local_runs_whose_process_is_gone():
    import os
    import socket

    manifest, entry = _manifest(waves={"limit": 4})
    assert state.point_state(manifest, entry.replace(job_id=None), PointStatus(), Intent()) is State.WAITING
    here, dead = socket.gethostname(), 2 ** 22 + 12345
    local, entry = _manifest("local", runner={"host": here, "pid": os.getpid()})
    assert state.point_state(local, entry, PointStatus(), Intent()) is State.PENDING
    assert state.point_state(local, entry, _status(State.RUNNING, host=here, pid=dead), Intent()) is State.LOST
    gone = local.replace(runner={"host": here, "pid": dead})
    assert state.point_state(gone, entry, PointStatus(), Intent()) is State.LOST  # its runner died
