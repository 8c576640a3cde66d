"""The lease's rules, one by one, in process (no SLURM, no sleeps but the lease's own short
ones): who may take a lease over, what a heartbeat writes, what release removes, how a
takeover decides under its lock, and what acquire does with a live, a stale, a torn and a
foreign lease. The SLURM tier races real jobs for it (test_lease_race, test_jobcontrol)."""
import datetime
import json
import os
import socket
import time

import pytest

from ptslurm.job import lease
from ptslurm.errors import LeaseHeld

pytestmark = pytest.mark.fast

HOST = socket.gethostname()


def iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat()


def dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        pid -= 1


FRESH = "a heartbeat just now"  # set when the test runs (parameters are made at collection, maybe
SELF = -2  # in another process: a pid taken then could be signalled by a mutant of `alive`)


def holder(**fields) -> dict:
    base = {"job_id": "4242_0", "host": HOST, "pid": SELF, "heartbeat": FRESH, "token": "t"}
    base.update(fields)
    return base


def now_fresh(lease_holder):
    if isinstance(lease_holder, dict):
        lease_holder = dict(lease_holder)
        if lease_holder.get("heartbeat") == FRESH:
            lease_holder["heartbeat"] = iso(time.time())
        if lease_holder.get("pid") == SELF:
            lease_holder["pid"] = os.getpid()
    return lease_holder


UNKNOWN = staticmethod(lambda job: None)


@pytest.mark.parametrize("case, lease_holder, me, scheduler, expected", [
    ("torn content", None, "1_0", None, True),
    ("a list, not a lease", ["x"], "1_0", None, True),
    ("the same array task (a requeue)", holder(), "4242_0", True, True),
    ("its process on this host is gone", holder(pid=-1), "1_0", True, True),
    ("a live local run here", holder(job_id="local-7", heartbeat=iso(0)), "1_0", None, False),
    ("a live job the scheduler runs", holder(), "1_0", True, False),
    ("a live job the scheduler cannot tell about", holder(), "1_0", None, False),
    ("a job the scheduler no longer runs, its attempt still beating (a killed packing parent)", holder(), "1_0",
     False, False),
    ("a job the scheduler no longer runs, silent for two heartbeats", holder(heartbeat=iso(time.time() - 80)), "1_0",
     False, True),
    ("a heartbeat long ago", holder(heartbeat=iso(time.time() - 3600)), "1_0", True, True),
    ("no heartbeat at all", holder(heartbeat=None), "1_0", True, True),
    ("a holder on another host, fresh", holder(host="elsewhere", pid=1), "1_0", None, False),
    ("a holder without a job id, fresh", holder(job_id=""), "", False, False),
    ("a holder with no job id field, fresh", {"host": HOST, "pid": SELF, "heartbeat": FRESH}, "1_0", False, False),
])
def test_who_may_take_a_lease_over(case, lease_holder, me, scheduler, expected):
    lease_holder = now_fresh(lease_holder)
    if isinstance(lease_holder, dict) and lease_holder.get("pid") == -1:
        lease_holder = dict(lease_holder, pid=dead_pid())
    asked = []

    def running(job):
        asked.append(job)
        return scheduler

    assert lease.stale(lease_holder, me, running) is expected, case
    if case == "a live local run here":
        assert not asked, "a local run is never the scheduler's"


def test_the_scheduler_is_asked_only_about_slurm_jobs():
    asked = []
    lease.stale(now_fresh(holder(host="elsewhere", pid=1, job_id="local-3")), "1_0", lambda job: asked.append(job))
    lease.stale(now_fresh(holder(job_id="88_1")), "1_0", lambda job: asked.append(job))
    assert asked == ["88_1"]


def test_the_scheduler_running_a_job_means_on_a_node(monkeypatch, fake_slurm):
    from ptslurm.errors import SubmissionError

    fake_slurm.QUEUED = ("PENDING", "RUNNING", "COMPLETING", "SUSPENDED")
    for state, expected in [("RUNNING", True), ("COMPLETING", True), ("SUSPENDED", True), ("PENDING", False)]:
        fake_slurm.jobs["5_0"] = {"state": state}
        fake_slurm.jobs["5_1"] = {"state": "RUNNING"}  # its neighbour runs whatever 5_0 does
        assert lease._scheduler_running("5_0") is expected, state
    fake_slurm.end(["5_0"])
    assert lease._scheduler_running("5_0") is False  # gone from the queue

    def fails(jobs):
        raise SubmissionError("squeue did not answer")

    monkeypatch.setattr(fake_slurm.scheduler, "queue_states", fails)
    assert lease._scheduler_running("5_0") is None


def test_age_of_a_heartbeat():
    assert lease._age_s(None) == float("inf") and lease._age_s("not a time") == float("inf")
    assert 9 < lease._age_s(iso(time.time() - 10)) < 60


@pytest.fixture
def quiet(monkeypatch):
    monkeypatch.setattr(lease, "HEARTBEAT_S", 3600.0)  # no heartbeat thread wakes up during a test


def test_the_heartbeat_thread_is_a_named_daemon(tmp_path, quiet):
    """A lease never keeps a finished process alive, and its thread is named in stack dumps."""
    held = lease.acquire(tmp_path, "12_3", wait_s=0)
    try:
        assert held._thread.daemon and held._thread.name == "ptslurm-heartbeat"
    finally:
        held.release()


def test_the_same_job_takes_its_own_live_lease_at_once(tmp_path, quiet):
    """A requeued array task finds its previous run's lease (SLURM ended that run first)."""
    (tmp_path / lease.LEASE).write_text(json.dumps(now_fresh(holder(job_id="77_1"))))
    held = lease.acquire(tmp_path, "77_1", wait_s=0, scheduler_running=lambda job: True)
    held.release()


def test_waiting_for_a_live_lease_sleeps_no_longer_than_the_wait(tmp_path, quiet, monkeypatch):
    (tmp_path / lease.LEASE).write_text(json.dumps(now_fresh(holder(job_id="77_1"))))
    slept = []
    monkeypatch.setattr(lease.time, "sleep", lambda s: slept.append(s))
    with pytest.raises(LeaseHeld):
        lease.acquire(tmp_path, "1_0", wait_s=0.3, scheduler_running=lambda job: True)
    assert slept and max(slept) <= 0.3 and min(slept) >= 0.1 - 1e-9, slept


def test_a_torn_lease_older_than_five_seconds_is_taken_at_once(tmp_path, quiet, monkeypatch):
    path = tmp_path / lease.LEASE
    path.write_text("{")
    old = time.time() - 5.5
    os.utime(path, (old, old))
    slept = []
    monkeypatch.setattr(lease.time, "sleep", lambda s: slept.append(s))
    held = lease.acquire(tmp_path, "1_0", wait_s=0)
    held.release()
    assert slept == [], "it waited for a writer of a lease 5.5 s old"


def test_acquire_writes_who_holds_it_and_release_removes_it(tmp_path, quiet):
    held = lease.acquire(tmp_path, "12_3", wait_s=0)
    path = tmp_path / lease.LEASE
    data = json.loads(path.read_text())
    assert data["job_id"] == "12_3" and data["host"] == HOST and data["pid"] == os.getpid()
    assert data["token"] == held.data["token"] and len(data["token"]) == 32
    assert data["acquired"] and data["heartbeat"]
    assert path.stat().st_mode & 0o777 == 0o644
    assert held.mine()
    held.release()
    assert not path.exists() and held._stop.is_set()


def test_mine_is_false_for_a_missing_damaged_or_other_lease(tmp_path, quiet):
    held = lease.acquire(tmp_path, "12_3", wait_s=0)
    path = tmp_path / lease.LEASE
    try:
        path.write_text("{torn")
        assert not held.mine()
        path.write_text("[1, 2]")
        assert not held.mine()
        path.write_text(json.dumps(dict(held.data, token="other")))
        assert not held.mine()
        path.unlink()
        assert not held.mine()
    finally:
        held.release()


def test_a_heartbeat_survives_a_full_disk_and_failing_callbacks(tmp_path, quiet, monkeypatch):
    held = lease.acquire(tmp_path, "12_3", wait_s=0)
    try:
        calls = []

        def bad():
            calls.append("bad")
            raise RuntimeError("a callback that fails")

        held.callbacks += [bad, lambda: calls.append("good")]

        def full(path, data):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(lease.writes, "atomic_write_json", full)
        held.beat()
        assert calls == ["bad", "good"], "a failing callback stopped the others, or a full disk the beat"
    finally:
        monkeypatch.undo()
        held.release()


def test_the_heartbeat_thread_beats(tmp_path, monkeypatch):
    monkeypatch.setattr(lease, "HEARTBEAT_S", 0.05)
    held = lease.acquire(tmp_path, "12_3", wait_s=0)
    beats = []
    held.callbacks.append(lambda: beats.append(1))
    try:
        deadline = time.time() + 5
        while len(beats) < 2 and time.time() < deadline:
            time.sleep(0.02)
        assert len(beats) >= 2
    finally:
        held.release()
    count = len(beats)
    time.sleep(0.2)
    assert len(beats) <= count + 1, "release did not stop the heartbeat"


def test_release_leaves_a_lease_taken_over(tmp_path, quiet):
    held = lease.acquire(tmp_path, "12_3", wait_s=0)
    path = tmp_path / lease.LEASE
    path.write_text(json.dumps(dict(held.data, token="new holder")))
    held.release()
    assert json.loads(path.read_text())["token"] == "new holder"


def test_a_live_lease_is_not_taken_and_the_message_names_its_job(tmp_path, quiet):
    (tmp_path / lease.LEASE).write_text(json.dumps(now_fresh(holder(job_id="77_1"))))
    started = time.time()
    with pytest.raises(LeaseHeld) as caught:
        lease.acquire(tmp_path, "1_0", wait_s=0.3, scheduler_running=lambda job: True)
    waited = time.time() - started
    assert 0.3 <= waited < 5, waited
    message = str(caught.value)
    beat = json.loads((tmp_path / lease.LEASE).read_text())["heartbeat"]
    assert message == (f"storage dir {str(tmp_path)!r} is in use by another live attempt (job 77_1, heartbeat "
                       f"{beat}); this attempt did not run. Cancel the other one first (`ptslurm cancel`)")
    assert json.loads((tmp_path / lease.LEASE).read_text())["job_id"] == "77_1"


def test_a_stale_lease_is_taken_over(tmp_path, quiet):
    (tmp_path / lease.LEASE).write_text(json.dumps(now_fresh(holder(job_id="77_1", heartbeat=iso(time.time() - 80)))))
    held = lease.acquire(tmp_path, "1_0", wait_s=0, scheduler_running=lambda job: False)
    try:
        assert json.loads((tmp_path / lease.LEASE).read_text())["job_id"] == "1_0"
        assert not (tmp_path / f".{lease.LEASE}.takeover").exists(), "the takeover lock stayed"
    finally:
        held.release()


def test_an_old_torn_lease_is_taken_over_and_a_fresh_one_is_waited_for(tmp_path, quiet):
    path = tmp_path / lease.LEASE
    path.write_text("{")
    old = time.time() - 60
    os.utime(path, (old, old))
    held = lease.acquire(tmp_path, "1_0", wait_s=0)
    held.release()
    path.write_text("{")  # being written 4.3 s ago: acquire gives its writer up to 5 s, then takes it
    recent = time.time() - 4.3
    os.utime(path, (recent, recent))
    started = time.time()
    held = lease.acquire(tmp_path, "1_0", wait_s=0)
    held.release()
    assert 0.5 <= time.time() - started < 4, "a lease being written was taken at once, or waited for too long"


def test_a_lease_of_another_user_is_no_lease(tmp_path, quiet):
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    path = tmp_path / lease.LEASE
    path.write_text(json.dumps(now_fresh(holder(job_id="77_1"))))
    os.chown(path, 12345, -1)
    held = lease.acquire(tmp_path, "1_0", wait_s=0, scheduler_running=lambda job: True)
    try:
        assert json.loads(path.read_text())["job_id"] == "1_0" and path.stat().st_uid == os.geteuid()
    finally:
        held.release()


def test_a_takeover_removes_only_the_lease_it_judged(tmp_path):
    path = tmp_path / lease.LEASE
    judged = holder(job_id="77_1")
    path.write_text(json.dumps(dict(judged, token="a new holder")))
    lease._take_over(path, judged)
    assert path.exists(), "a new holder's lease was removed"
    path.write_text(json.dumps(judged))
    lease._take_over(path, judged)
    assert not path.exists()
    lease._take_over(path, judged)  # gone meanwhile: nothing to do
    assert not (tmp_path / f".{lease.LEASE}.takeover").exists()


def test_a_takeover_waits_for_another_taker_and_clears_a_dead_takers_lock(tmp_path):
    path = tmp_path / lease.LEASE
    judged = holder(job_id="77_1")
    path.write_text(json.dumps(judged))
    lock = tmp_path / f".{lease.LEASE}.takeover"
    lock.write_text("")
    lease._take_over(path, judged)
    assert path.exists() and lock.exists(), "it went on while another taker held the lock"
    old = time.time() - lease.TAKEOVER_STALE_S - 5
    os.utime(lock, (old, old))
    lease._take_over(path, judged)
    assert not lock.exists(), "a dead taker's lock stays forever"
    lease._take_over(path, judged)
    assert not path.exists()


def test_a_takeover_leaves_a_lease_being_written(tmp_path):
    path = tmp_path / lease.LEASE
    path.write_text("")  # a new holder between its O_EXCL create and its write
    lease._take_over(path, None)
    assert path.exists()
    old = time.time() - 5.5
    os.utime(path, (old, old))
    lease._take_over(path, None)
    assert not path.exists(), "an empty lease 5.5 s old stays"


def test_a_lease_released_between_two_looks_is_taken(tmp_path, quiet, monkeypatch):
    """The holder releases after acquire's create failed and before it reads the file (or
    while the file is torn): acquire tries the create again, it does not give up."""
    import pathlib

    path = tmp_path / lease.LEASE
    real = pathlib.Path.read_text
    for vanish_as in ("gone", "torn"):
        path.write_text(json.dumps(now_fresh(holder(job_id="77_1"))))
        calls = []

        def read_text(self, *args, **kwargs):
            if self == path and not calls:
                calls.append(1)
                self.unlink()  # the holder releases right now
                if vanish_as == "gone":
                    raise FileNotFoundError(str(self))
                return "{"  # what was read is torn, and the file is gone by the time of the stat
            return real(self, *args, **kwargs)

        monkeypatch.setattr(pathlib.Path, "read_text", read_text)
        held = lease.acquire(tmp_path, "1_0", wait_s=0, scheduler_running=lambda job: True)
        monkeypatch.setattr(pathlib.Path, "read_text", real)
        assert held is not None and json.loads(path.read_text())["job_id"] == "1_0", vanish_as
        held.release()


def test_a_heartbeat_that_races_the_release_leaves_no_lease_behind(tmp_path, quiet, monkeypatch):
    """The heartbeat thread checked the lease was its own, then release() removed it, then the
    beat wrote it back: a stale lease after the attempt had ended (seen 1 in 8)."""
    import threading

    from ptslurm.records import writes

    held = lease.acquire(tmp_path, "1_0", wait_s=0)
    writing, release_done = threading.Event(), threading.Event()
    real = writes.atomic_write_json

    def slow_write(path, data, **kw):
        writing.set()
        release_done.wait(timeout=1.0)  # release() comes while the beat writes
        return real(path, data, **kw)

    monkeypatch.setattr(writes, "atomic_write_json", slow_write)
    beat = threading.Thread(target=held.beat)
    beat.start()
    assert writing.wait(timeout=5)
    releaser = threading.Thread(target=lambda: (held.release(), release_done.set()))
    releaser.start()
    beat.join(timeout=5)
    releaser.join(timeout=5)
    assert not (tmp_path / lease.LEASE).exists(), "the released lease was written back"
