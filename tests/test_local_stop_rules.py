"""Stopping a local sweep's attempts (``schedulers.stop_groups``/``stop_local``), on real
processes: each attempt's whole process group gets SIGTERM, and SIGKILL only when it is still
there after the grace time; a process that is not a group leader (`ptslurm run` in a shell)
is stopped itself; an attempt of another host or one already gone is left alone."""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from ptslurm import schedulers
from ptslurm.records import Attempt

pytestmark = pytest.mark.fast

# a parent that starts a child in its group (a data loader's worker), each saying "ready"
# once its handler is in: argv[1] how the parent takes SIGTERM, argv[2] how the child does
BODY = """
import os, signal, subprocess, sys, time
if sys.argv[1] == "ignore":
    signal.signal(signal.SIGTERM, lambda *a: None)
if len(sys.argv) > 2:
    child = subprocess.Popen([sys.executable, "-c", sys.argv[3], sys.argv[2]], stdout=sys.stdout)
print("ready", os.getpid(), flush=True)
while True:
    time.sleep(0.05)
"""


def start(ignore: bool, new_group: bool = True, child_ignores: bool = None) -> subprocess.Popen:
    way = {True: "ignore", False: "obey"}
    proc = subprocess.Popen([sys.executable, "-c", BODY, way[ignore], way[ignore if child_ignores is None
                                                                          else child_ignores], BODY],
                            stdout=subprocess.PIPE, text=True, start_new_session=new_group)
    said = [proc.stdout.readline(), proc.stdout.readline()]
    assert all(line.startswith("ready") for line in said), said
    proc.child = int([line for line in said if int(line.split()[1]) != proc.pid][0].split()[1])
    return proc


def running(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().split(") ")[-1][0] != "Z"
    except OSError:
        return False


def _pgid(pid: int) -> int:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return -1


def test_a_group_that_obeys_sigterm_ends_within_the_grace_time(tmp_path):
    proc = start(ignore=False)
    began = time.monotonic()
    schedulers.stop_groups([proc.pid], grace_s=30)
    assert proc.wait(timeout=10) == -signal.SIGTERM
    assert time.monotonic() - began < 25, "no wait for the grace time once the group is gone"
    deadline = time.monotonic() + 10
    while running(proc.child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(proc.child), "its child got SIGTERM too"


def test_a_child_that_ignores_sigterm_is_killed_when_its_leader_obeyed():
    """The attempt's process ends at SIGTERM, a worker of its group does not: the group is
    not gone while the worker runs (the leader, unreaped, is a zombie)."""
    proc = start(ignore=False, child_ignores=True)
    try:
        schedulers.stop_groups([proc.pid], grace_s=1.0)
        deadline = time.monotonic() + 10
        while running(proc.child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not running(proc.child), "the worker still runs after the grace time"
    finally:
        try:
            os.kill(proc.child, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def test_a_group_that_ignores_sigterm_is_killed_after_the_grace_time():
    proc = start(ignore=True)
    began = time.monotonic()
    schedulers.stop_groups([proc.pid], grace_s=1.0)
    assert proc.wait(timeout=10) == -signal.SIGKILL
    assert time.monotonic() - began >= 1.0, "SIGKILL only after the grace time"


def test_a_process_that_leads_no_group_is_stopped_itself():
    proc = start(ignore=False, new_group=False)
    try:
        schedulers.stop_groups([proc.pid], grace_s=5)
        assert proc.wait(timeout=10) == -signal.SIGTERM
        assert os.getpgid(0) == os.getpid() or _pgid(os.getpid()) != -1, "this test's own group was not signalled"
    finally:
        proc.kill()


def test_only_this_hosts_running_attempts_are_stopped():
    mine, other = start(ignore=False), start(ignore=False)
    try:
        schedulers.stop_local([Attempt(host=socket.gethostname(), pid=mine.pid),
                               Attempt(host="another-node", pid=other.pid), Attempt(host=socket.gethostname())], 5)
        assert mine.wait(timeout=10) == -signal.SIGTERM
        assert other.poll() is None, "a pid on another host is another process"
    finally:
        os.killpg(other.pid, signal.SIGKILL)
        other.wait()
    schedulers.stop_groups([mine.pid], grace_s=0.5)  # gone already: nothing to do, no error
