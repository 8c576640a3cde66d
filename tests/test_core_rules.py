"""The rules of the job-side core that end-to-end tests pin for one value at best (issue 21):
checkpoint trust, retention and fallback, temp files of killed writers; the lease's timing,
with an injected clock (no sleeps)."""
import json
import os
import pickle
import socket
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _evil_checkpoint(path: Path, marker: Path) -> None:
    import torch

    torch.save({"model": {}, "iteration": 5, "x": _Payload(str(marker))}, path)


def test_loading_refuses_pickled_code_unless_trusted(tmp_path):
    import torch

    from ptslurm.train import checkpoint as ckpt

    marker = tmp_path / "pwned"
    evil = tmp_path / "ckpt_5.pth"
    _evil_checkpoint(evil, marker)
    with pytest.raises(ValueError, match="trusted=True only if you trust"):
        ckpt.load_file(evil)
    assert not marker.exists(), "the default load ran the payload"
    plain = tmp_path / "plain.pth"
    torch.save({"model": {"w": torch.ones(2)}, "iteration": 1, "when": {"step": [1, 2]}}, plain)
    assert ckpt.load_file(plain)["when"] == {"step": [1, 2]}
    # the opt-in unpickles anything (for checkpoints made elsewhere, by someone trusted)
    ckpt.load_file(evil, trusted=True)
    assert marker.exists()


def test_resume_skips_a_checkpoint_with_pickled_code_without_running_it(tmp_path):
    from ptslurm.train import checkpoint as ckpt

    good = ckpt.save({"model": {}, "iteration": 4}, tmp_path, 4)
    marker = tmp_path / "pwned"
    _evil_checkpoint(tmp_path / "ckpt_5.pth", marker)
    ckpt.link(tmp_path, ckpt.LATEST, tmp_path / "ckpt_5.pth")
    with pytest.warns(RuntimeWarning, match="ckpt_5.pth is unreadable"):
        path, state = ckpt.load_latest(tmp_path)
    assert path == good and state["iteration"] == 4 and not marker.exists()


def test_a_checkpoint_without_its_iteration_or_model_is_skipped(tmp_path):
    import torch

    from ptslurm.train import checkpoint as ckpt

    ckpt.save({"model": {}, "iteration": 3}, tmp_path, 3)
    torch.save({"model": {}}, tmp_path / "ckpt_6.pth")
    torch.save({"iteration": 7}, tmp_path / "ckpt_7.pth")
    ckpt.link(tmp_path, ckpt.LATEST, tmp_path / "ckpt_7.pth")
    with pytest.warns(RuntimeWarning, match="not a complete ptslurm checkpoint"):
        path, state = ckpt.load_latest(tmp_path)
    assert state["iteration"] == 3


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_retention_keeps_the_newest_and_the_best_whatever_keep_is(tmp_path, keep):
    from ptslurm.train import checkpoint as ckpt

    for it in range(1, 9):
        ckpt.save({"model": {}, "iteration": it}, tmp_path, it, keep=keep, best=(it == 2))
    left = [it for it, _ in ckpt.numbered(tmp_path)]
    assert left == sorted({2} | set(range(9 - keep, 9))), left
    assert os.path.realpath(tmp_path / ckpt.BEST_LOSS) == str((tmp_path / "ckpt_2.pth").resolve())
    assert os.path.realpath(tmp_path / ckpt.LATEST) == str((tmp_path / "ckpt_8.pth").resolve())
    assert ckpt.load_latest(tmp_path)[1]["iteration"] == 8


def test_temp_files_of_killed_writers_are_removed_only_when_old(tmp_path):
    from ptslurm.train import checkpoint as ckpt

    old, fresh = tmp_path / ".ckpt_3.pth.ab12.tmp", tmp_path / ".ckpt_9.pth.cd34.tmp"
    for f in (old, fresh):
        f.write_bytes(b"half a checkpoint")
    ckpt.save({"model": {}, "iteration": 1}, tmp_path, 1)  # the folder's mtime is now
    long_ago = time.time() - 3600
    os.utime(old, (long_ago, long_ago))
    ckpt.prune(tmp_path, keep=5)
    assert not old.exists(), "a killed writer's temp file stays forever"
    assert fresh.exists(), "a temp file that may belong to a live writer was removed"


@pytest.fixture
def clock(monkeypatch):
    """The lease module's clock, moved by hand."""
    from ptslurm.job import lease

    now = [1_800_000_000.0]
    monkeypatch.setattr(lease.time, "time", lambda: now[0])
    return now


def _holder(heartbeat_at: float, job="4242_0") -> dict:
    import datetime

    stamp = datetime.datetime.fromtimestamp(heartbeat_at, datetime.timezone.utc).isoformat()
    # a live process on this host (ours), a job the scheduler cannot tell about
    return {"job_id": job, "host": socket.gethostname(), "pid": os.getpid(), "heartbeat": stamp, "token": "t"}


def test_a_lease_is_stale_only_after_missed_heartbeats(clock):
    from ptslurm.job import lease

    unknown = lambda job: None  # noqa: E731 - the scheduler cannot tell
    beat_at = clock[0]
    for late in (0, lease.HEARTBEAT_S, 2 * lease.HEARTBEAT_S, lease.STALE_AFTER_S - 1):
        clock[0] = beat_at + late
        assert not lease.stale(_holder(beat_at), "999_0", unknown), f"stale {late} s after a heartbeat"
    clock[0] = beat_at + lease.STALE_AFTER_S + 1
    assert lease.stale(_holder(beat_at), "999_0", unknown)
    # a live holder misses at least three beats before anyone may take over
    assert lease.STALE_AFTER_S >= 3 * lease.HEARTBEAT_S
    # the scheduler's word decides earlier, once the holder stopped beating too: a job it no
    # longer runs whose point still beats (its packing parent was killed) is live
    clock[0] = beat_at + 1
    assert not lease.stale(_holder(beat_at), "999_0", lambda job: False)
    clock[0] = beat_at + lease.ENDED_JOB_STALE_S + 1
    assert lease.stale(_holder(beat_at), "999_0", lambda job: False)
    assert lease.ENDED_JOB_STALE_S >= 2 * lease.HEARTBEAT_S
    assert not lease.stale(_holder(beat_at), "999_0", lambda job: True)
    # the same array task (a requeue) takes its own lease at once
    assert lease.stale(_holder(beat_at), "4242_0", unknown)


def test_a_heartbeat_renews_only_a_lease_still_held(tmp_path, monkeypatch):
    from ptslurm.job import lease

    monkeypatch.setattr(lease, "HEARTBEAT_S", 3600.0)  # the thread stays asleep: beats by hand
    held = lease.acquire(tmp_path, "77_0", wait_s=0)
    try:
        first = json.loads((tmp_path / lease.LEASE).read_text())["heartbeat"]
        beats = []
        held.callbacks.append(lambda: beats.append(1))
        monkeypatch.setattr(lease, "now", lambda: "2030-01-01T00:00:00+00:00")
        held.beat()
        assert json.loads((tmp_path / lease.LEASE).read_text())["heartbeat"] == "2030-01-01T00:00:00+00:00" != first
        assert beats == [1]
        taken = dict(json.loads((tmp_path / lease.LEASE).read_text()), token="someone else's")
        (tmp_path / lease.LEASE).write_text(json.dumps(taken))
        monkeypatch.setattr(lease, "now", lambda: "2031-01-01T00:00:00+00:00")
        held.beat()
        assert json.loads((tmp_path / lease.LEASE).read_text()) == taken, "a taken-over lease was written"
        assert beats == [1]
    finally:
        held.release()
    assert (tmp_path / lease.LEASE).exists(), "release removed the new holder's lease"


def test_a_stop_signal_while_the_job_starts_is_recorded_not_fatal(tmp_path):
    """SLURM may send a short job's --signal (USR2) while Python and submitit still load:
    USR2's default action ends the process, so the job's first module installs ptslurm's
    handler before anything else (the batch script runs `python -m ptslurm.job.start` in
    front of submitit's runner)."""
    import signal
    import subprocess
    import sys

    # the runner (submitit's, in a job) says when it loads; the signal comes then, whatever
    # the machine's load (no fixed sleep)
    (tmp_path / "slow_runner.py").write_text("import sys, time\nprint('loading', flush=True)\ntime.sleep(2)\n"
                                             "print('ran', sys.argv[1:])\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))

    def started_with(*command):
        proc = subprocess.Popen([sys.executable, *command], stdout=subprocess.PIPE, text=True, env=env)
        assert proc.stdout.readline().strip() == "loading"
        proc.send_signal(signal.SIGUSR2)
        return proc.returncode if proc.wait() is None else proc.returncode, proc.stdout.read()

    rc, out = started_with("-u", "-m", "ptslurm.job.start", "-u", "-m", "slow_runner", "/the/folder")
    assert rc == 0 and out.strip() == "ran ['/the/folder']", (rc, out)
    rc, _ = started_with("-u", "-m", "slow_runner", "/the/folder")
    assert rc == -signal.SIGUSR2, "without it the signal ends the process (the test means something)"
