"""Job-side decisions as pure functions: why an attempt ended (from SLURM's record of the
job, faked here) and whether it is requeued within the caps."""
import signal

import pytest

from ptslurm import interrupt, job


class Record:
    def __init__(self, causes):
        self.data = {"attempts": [{"cause": c} for c in causes] + [{}]}

    count = job.AttemptRecord.count


@pytest.fixture
def slurm_env(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    interrupt.reset()
    yield monkeypatch
    interrupt.reset()


def fake_info(monkeypatch, **fields):
    import ptslurm.executor

    base = {"JobState": "RUNNING", "Restarts": "1", "PreemptTime": "None"}
    base.update(fields)
    monkeypatch.setattr(ptslurm.executor, "job_info", lambda job_id: base)


@pytest.mark.parametrize("sig, fields, causes, expected", [
    (signal.SIGUSR2, {"PreemptTime": "2026-11-28T14:08:46"}, [], ("requeued", "preempted", "requeue")),
    (signal.SIGUSR2, {"PreemptTime": "2026-11-28T14:08:46"}, ["preempted"] * 3, ("preempted", "preempted", None)),
    (signal.SIGTERM, {"Restarts": "2", "JobState": "COMPLETING"}, [], ("requeued", "requeued", None)),
    (signal.SIGUSR2, {}, [], ("requeued", "timeout", "requeue")),
    (signal.SIGUSR2, {}, ["timeout", "preempted", "timeout", "timeout"], ("timeout", "timeout", None)),
    (signal.SIGTERM, {"JobState": "CANCELLED"}, [], ("cancelled", "cancelled", None)),
    (None, {}, ["failed"], ("requeued", "failed", "requeue")),
    (None, {}, ["failed", "failed", "failed"], ("failed", "failed", None)),
])
def test_decisions_on_slurm(slurm_env, sig, fields, causes, expected):
    fake_info(slurm_env, **fields)
    if sig is not None:
        interrupt.request_stop(sig)
        exc = interrupt.Interrupted("stopped")
    else:
        exc = RuntimeError("boom")
    assert job.decide(exc, Record(causes), max_requeues=3) == expected


def test_outside_slurm_nothing_is_requeued(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    interrupt.reset()
    assert job.decide(RuntimeError("x"), Record([]), 3) == ("failed", "failed", None)
    interrupt.request_stop()
    assert job.decide(interrupt.Interrupted("x"), Record([]), 3) == ("interrupted", "interrupted", None)
    interrupt.reset()


def test_caps_count_only_attempts_of_the_current_submission():
    record = Record([])
    record.data = {"submission": 1, "attempts": [{"cause": "failed", "submission": 0}] * 3 +
                   [{"cause": "failed", "submission": 1}, {}]}
    assert record.count("failed") == 1
