"""Taking over a stale lease is exclusive (issue 20): of 2 or 10 processes that find the same
stale lease at once, exactly one holds it and the others stand down (LeaseHeld) without
writing anything into the storage dir."""
import json
import multiprocessing
import os
import socket
import subprocess

import pytest

from ptslurm.job import lease




def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def contender(storage_dir, n, barrier, done, results):
    barrier.wait()
    try:
        held = lease.acquire(storage_dir, f"7_{n}", wait_s=0, scheduler_running=lambda job: None)
    except lease.LeaseHeld:
        results.put(("held-elsewhere", n))
        done.wait()
        return
    results.put(("holder", n))
    done.wait()  # keep it while the others decide
    held.release()


@pytest.mark.parametrize("contenders", [2, 10])
def test_exactly_one_of_many_takes_over_a_stale_lease(tmp_path, contenders):
    ctx = multiprocessing.get_context("fork")
    trials = 100
    for trial in range(trials):
        storage_dir = tmp_path / f"t{trial}"
        storage_dir.mkdir()
        stale = {"job_id": "1_0", "host": socket.gethostname(), "pid": dead_pid(), "token": "old",
                 "heartbeat": "2026-01-01T00:00:00+00:00"}
        (storage_dir / lease.LEASE).write_text(json.dumps(stale))
        barrier, done, results = ctx.Barrier(contenders), ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=contender, args=(storage_dir, n, barrier, done, results))
                 for n in range(contenders)]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=30) for _ in procs]
        done.set()
        for p in procs:
            p.join(30)
        holders = [n for what, n in outcomes if what == "holder"]
        assert len(holders) == 1, f"trial {trial}: holders {holders}"
        leftovers = sorted(p.name for p in storage_dir.iterdir())
        assert leftovers == [], f"trial {trial}: the storage dir holds {leftovers} after release"
