"""One live attempt per storage dir: an attempt holds a lease file (``ptslurm_lease.json``)
while it runs and renews its heartbeat every ``HEARTBEAT_S``.

Taking the lease is an ``O_EXCL`` create, which NFS (v3 and later) honours across clients,
unlike flock. A lease left by a dead attempt is taken over when its holder is this same job
(a requeued array task: SLURM ended the previous run before restarting it), a process on this
host that is gone, a job the scheduler no longer runs, or a heartbeat older than
``STALE_AFTER_S``. A takeover renames the stale file away first, so of two contenders only
one wins. A second attempt waits up to ``WAIT_S`` (a cancelled predecessor still writing its
checkpoint) and then stops with ``LeaseHeld``; it never trains into the same dir.
"""
import json
import os
import socket
import threading
import time
import typing as tp
import uuid
from pathlib import Path

from .. import records
from ..records import writes
from ..errors import LeaseHeld  # noqa: F401 - lease.LeaseHeld, what callers catch
from ..records import LEASE, SLURM_ON_NODE, PointPaths
from ..read.state import alive, timestamp
from ..records.recordkit import now

HEARTBEAT_S = 30.0
STALE_AFTER_S = 150.0  # five missed heartbeats
ENDED_JOB_STALE_S = records.LIVE_HEARTBEAT_S  # a holder whose job the scheduler says has ended, silent
WAIT_S = float(os.environ.get("PTSLURM_LEASE_WAIT_S", "120"))


def _age_s(text: tp.Optional[str]) -> float:
    then = timestamp(text)
    return float("inf") if then is None else time.time() - then


def stale(holder: tp.Optional[dict], me: str, scheduler_running: tp.Callable[[str], tp.Optional[bool]]) -> bool:
    """Whether a lease ``holder`` may be taken over by job ``me``. ``scheduler_running(job)``
    says whether the scheduler still runs a job (None: it cannot tell)."""
    if not isinstance(holder, dict):
        return True  # torn or foreign content: its writer died mid-write
    job = str(holder.get("job_id", ""))
    if job and job == me:
        return True  # this job's own previous run (requeue): SLURM ended it before restarting
    if not alive(holder.get("host"), holder.get("pid")):
        return True  # its process on this host is gone
    if job.startswith("local-") and holder.get("host") == socket.gethostname():
        return False
    if _age_s(holder.get("heartbeat")) > STALE_AFTER_S:
        return True
    if job and not job.startswith("local-"):
        running = scheduler_running(job)
        # the scheduler's word ends a lease only once it stopped beating too: a point whose job
        # ended (its packing parent killed) may still run on its node, and must not run twice
        if running is False and _age_s(holder.get("heartbeat")) > ENDED_JOB_STALE_S:
            return True
    return False


class Lease:
    """A held lease; ``release()`` gives it up, ``beat()`` renews it (a daemon thread does)."""

    def __init__(self, path: Path, data: dict):
        self.path = path
        self.data = data
        self.callbacks: tp.List[tp.Callable[[], None]] = []
        self._stop = threading.Event()
        self._writing = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="ptslurm-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            self.beat()

    def mine(self) -> bool:
        try:
            return json.loads(self.path.read_text()).get("token") == self.data["token"]
        except (OSError, ValueError, AttributeError):
            return False

    def beat(self) -> None:
        with self._writing:  # never after release() removed the file: it would stand there, stale
            if self._stop.is_set() or not self.mine():
                return  # released, or taken over (we were presumed dead): leave it alone
            self.data["heartbeat"] = now()
            try:
                writes.atomic_write_json(self.path, self.data)
            except OSError:
                pass
        for callback in self.callbacks:
            try:
                callback()
            except Exception:  # noqa: BLE001 - a heartbeat must never kill the run
                pass

    def release(self) -> None:
        with self._writing:
            self._stop.set()
            if self.mine():
                try:
                    self.path.unlink()
                except OSError:
                    pass


def _scheduler_running(job: str) -> tp.Optional[bool]:
    from .. import schedulers

    try:
        states = schedulers.slurm().queue_states([job])
    except Exception:  # noqa: BLE001 - no scheduler to ask
        return None
    return states.get(job) in SLURM_ON_NODE


TAKEOVER_STALE_S = 30.0  # a takeover lock older than this: its taker died in the critical section


def _take_over(path: Path, judged: tp.Optional[dict]) -> None:
    """Remove the stale lease ``judged`` (as read) so that a contender's ``O_EXCL`` create can
    win. Takers exclude each other with a lock file of their own, and under it the lease is
    removed only if it is still the one judged stale: a contender that read the stale lease
    before another took it over never removes the new holder's lease."""
    lock = path.with_name(f".{LEASE}.takeover")
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        try:
            if time.time() - lock.stat().st_mtime > TAKEOVER_STALE_S:
                lock.unlink()
        except OSError:
            pass
        time.sleep(0.05)
        return
    os.close(fd)
    try:
        try:
            if os.stat(path).st_uid != os.geteuid():  # planted by another user: never a holder
                path.unlink()
                return
            current = json.loads(path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError):
            current = None
            try:  # empty or torn: a new holder may be writing it right now
                if time.time() - path.stat().st_mtime < 5:
                    return
            except OSError:
                return
        if current == judged:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
    finally:
        try:
            lock.unlink()
        except OSError:
            pass


def acquire(storage_dir: Path, job_id: str, wait_s: float = WAIT_S,
            scheduler_running: tp.Callable[[str], tp.Optional[bool]] = _scheduler_running) -> Lease:
    """Take the lease of ``storage_dir`` for ``job_id``; raise LeaseHeld when another live
    attempt keeps it longer than ``wait_s``."""
    path = PointPaths(Path(storage_dir)).lease
    data = {"job_id": job_id, "host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex,
            "acquired": now(), "heartbeat": now()}
    deadline = time.time() + wait_s
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                json.dump(data, fh)
                fh.flush()
                os.fsync(fh.fileno())
            return Lease(path, data)
        try:
            holder = json.loads(path.read_text())
            if os.stat(path).st_uid != os.geteuid():
                holder = None  # a lease of somebody else's is no lease: only our own attempts hold one
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            holder = None
            try:  # a lease being written right now is not torn: give its writer a moment
                if time.time() - path.stat().st_mtime < 5:
                    time.sleep(0.5)
                    continue
            except OSError:
                continue
        if stale(holder, job_id, scheduler_running):
            _take_over(path, holder)
            continue
        if time.time() >= deadline:
            who = holder.get("job_id") if isinstance(holder, dict) else "?"
            raise LeaseHeld(f"storage dir {str(storage_dir)!r} is in use by another live attempt (job {who}, "
                            f"heartbeat {holder.get('heartbeat') if isinstance(holder, dict) else '?'}); "
                            f"this attempt did not run. Cancel the other one first (`ptslurm cancel`)")
        time.sleep(min(2.0, max(0.1, deadline - time.time())))
