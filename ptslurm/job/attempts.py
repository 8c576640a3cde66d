"""An attempt of a point: its record in the point's status file (``AttemptRecord``, the job
its only writer) and the retry policy that decides, from that record and SLURM's own word on
the job, how the attempt ended and whether the point is requeued (``classify``, ``decide``).
"""
import os
import signal
import socket
import stat
import threading
import traceback
import typing as tp
from pathlib import Path

from . import interrupt, sampler
from .. import records, schedulers
from ..records import writes
from ..records import (OWN_FILES, STOPS, WISHED, Action, Cause, SLURM_COMPLETING, SLURM_REQUEUING, Attempt, PointPaths,
                       PointStatus, State, read_intent)
from ..records.recordkit import now
from .runtime import job_id, on_slurm


class AttemptRecord:
    """The one writer of a point's ``ptslurm_status.json`` (a PointStatus): the latest state
    plus one Attempt per start, rewritten atomically at each change. Thread-safe: the
    heartbeat and the watchdog write from threads."""

    RESERVE = ".ptslurm-reserve"  # space kept back so that a full disk can still be recorded
    RESERVE_BYTES = 256 * 1024

    def __init__(self, storage_dir: Path, submission: int = 0, code_dir: tp.Optional[str] = None):
        from .. import records

        self.path = PointPaths(storage_dir).status
        self.storage_dir = storage_dir
        self._lock = threading.RLock()
        found = records.read(self.path, PointStatus).record or PointStatus()
        # the command line's intent decides the submission
        self.status = found.replace(submission=submission, code_dir=code_dir or found.code_dir)
        self.sampler: tp.Optional[sampler.Sampler] = None  # what the attempt uses, from its start

    @property
    def latest(self) -> Attempt:
        return self.status.attempts[-1]

    def start(self, **fields: tp.Any) -> Attempt:
        with self._lock:
            self.sampler = sampler.Sampler().start()
            fields.setdefault("usage", self.sampler.usage())
            # an attempt still "running" was killed without a word: SIGKILL, node failure
            earlier = tuple(a.replace(state=State.LOST, ended=a.heartbeat) if a.state == State.RUNNING else a
                            for a in self.status.attempts)
            entry = Attempt(attempt=len(earlier) + 1, state=State.RUNNING, job_id=job_id(),
                            submission=self.status.submission, host=socket.gethostname(), pid=os.getpid(),
                            started=now(), heartbeat=now(),
                            restart_count=int(os.environ.get("SLURM_RESTART_COUNT", 0) or 0),
                            progress_at_start=self.status.progress,
                            checkpoint_at_start=latest_checkpoint(self.storage_dir),
                            footprint_at_start=footprint(self.storage_dir), **fields)
            self._save(earlier + (entry,))
            return entry

    def update(self, **fields: tp.Any) -> None:
        with self._lock:
            entry = self.latest
            if entry.final:
                return  # already recorded as ended (the watchdog got there first)
            if self.sampler is not None:  # each write brings the usage up to date; the end stops it
                fields.setdefault("usage", self.sampler.usage())
                if fields.get("final"):
                    self.sampler.stop()
            self._save(self.status.attempts[:-1] + (entry.replace(**fields),))

    def beat(self) -> None:
        self.update(heartbeat=now())

    def report(self, progress: tp.Dict[str, tp.Any], resumed: bool) -> None:
        """Training progress (``runtime.report_progress``)."""
        with self._lock:
            self.status = self.status.replace(progress=progress)
            if resumed:
                self.update(resumed_from=progress)
            else:
                self.update()

    def count(self, cause: str) -> int:
        """Earlier attempts of this submission (``ptslurm resubmit`` starts a new one; this
        attempt excluded) that ended for ``cause``."""
        return sum(1 for a in self.status.attempts[:-1]
                   if a.cause == cause and a.submission == self.status.submission)

    def made_progress(self, any_file: bool = False) -> bool:
        """Whether this attempt got anywhere: reported progress or wrote a checkpoint; with
        ``any_file``, also any file its code created or changed under the storage dir
        (Lightning's ``last.ckpt`` wherever it is, a plain loop's own state file)."""
        entry = self.latest
        if (self.status.progress != entry.progress_at_start
                or latest_checkpoint(self.storage_dir) != entry.checkpoint_at_start):
            return True
        # code that reports its progress (ptslurm's Trainer) is judged by what it reports:
        # its event files change at every start; for code that never does, any file counts
        return (any_file and self.status.progress is None and entry.footprint_at_start is not None
                and footprint(self.storage_dir) != entry.footprint_at_start)

    def stalls(self) -> int:
        """Earlier attempts of this submission, counted back from this one, that were stopped
        (time limit, preemption, node failure) without making progress, in a row."""
        n = 0
        for a in reversed(self.status.attempts[:-1]):
            if a.submission != self.status.submission or a.cause not in STOPS or a.progressed is not False:
                break
            n += 1
        return n

    def attempts_in_submission(self) -> int:
        """Attempts of this submission, this one included."""
        return sum(1 for a in self.status.attempts if a.submission == self.status.submission)

    def previous_failure(self) -> tp.Optional[Attempt]:
        """The attempt before this one when it failed in the same submission."""
        if len(self.status.attempts) < 2:
            return None
        prev = self.status.attempts[-2]
        return prev if prev.submission == self.status.submission and prev.cause == Cause.FAILED else None

    def reserve(self) -> None:
        """Hold some disk space in the storage dir (given back to record the end of an
        attempt that filled the disk)."""
        try:
            with open(self.storage_dir / self.RESERVE, "wb") as fh:
                fh.write(b"\0" * self.RESERVE_BYTES)
        except OSError:
            pass

    def _save(self, attempts: tp.Tuple[Attempt, ...]) -> None:
        import errno

        entry = attempts[-1]
        self.status = self.status.replace(attempts=attempts, state=entry.state, attempt=entry.attempt,
                                          job_id=entry.job_id, updated=now())
        data = self.status.to_json()
        try:
            writes.atomic_write_json(self.path, data)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            try:  # the disk is full: give back the reserve and write once more
                os.unlink(self.storage_dir / self.RESERVE)
            except OSError:
                raise exc from None
            writes.atomic_write_json(self.path, data)


def latest_checkpoint(storage_dir: Path) -> tp.Optional[tp.List[tp.Any]]:
    """``[name, mtime_ns]`` of the newest file under ``<storage_dir>/checkpoints`` (any code's
    own checkpoints count), None when there is none."""
    best: tp.Optional[tp.List[tp.Any]] = None
    try:
        for entry in os.scandir(PointPaths(Path(storage_dir)).checkpoints):
            if entry.is_file():
                stamp = entry.stat().st_mtime_ns
                if best is None or stamp > best[1]:
                    best = [entry.name, stamp]
    except OSError:
        return None
    return best






def footprint(storage_dir: Path) -> tp.List[int]:
    """``[count, newest mtime_ns]`` of the files under the storage dir that the point's code
    wrote, leaving out ptslurm's own (status, intent, lease, config), sacred's
    (``sacred/``), temp files and links: a change between an attempt's start and end is progress."""
    count, newest = 0, 0
    top = str(storage_dir)
    for dirpath, dirnames, filenames in os.walk(top):
        if dirpath == top:
            dirnames[:] = [d for d in dirnames if d != records.SACRED]
        for name in filenames:
            if (dirpath == top and (name in OWN_FILES or name.startswith(".ptslurm"))) or name.endswith(".tmp"):
                continue
            try:
                st = os.stat(os.path.join(dirpath, name), follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode):  # the working dir's links to the code, ckpt_latest.pth: not written data
                continue
            stamp = st.st_mtime_ns
            count += 1
            newest = max(newest, stamp)
    return [count, newest]


def fingerprint(exc: BaseException) -> str:
    """What identifies a failure across attempts: the exception type and message and the
    frames it passed (file name and line), not addresses or times."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = ";".join(f"{os.path.basename(f.filename)}:{f.lineno}" for f in frames)
    return f"{type(exc).__name__}: {str(exc)[:500]} @ {where}"


def _disk_full(exc: tp.Optional[BaseException]) -> bool:
    import errno

    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def classify(exc: BaseException, storage_dir: tp.Optional[Path] = None) -> Cause:
    """Why the attempt ended, from the command line's intent and SLURM's own record of the
    job (not from elapsed time): ``cancelled`` (``ptslurm cancel``, or scancel: SIGTERM first
    and the job CANCELLED or COMPLETING), ``preempted`` (PreemptTime is set), ``requeued``
    (someone ran scontrol requeue: the restart count moved on), ``timeout`` (the --signal
    before the time limit), ``terminated`` (SIGTERM from elsewhere), ``failed`` (an
    exception), ``interrupted`` (a stop request outside SLURM)."""
    stopped = interrupt.received() is not None or isinstance(exc, KeyboardInterrupt)
    intent = read_intent(storage_dir) if stopped and storage_dir is not None else None
    if intent is not None and intent.stops:
        return WISHED[intent.wish][1]  # a cancel
    if not on_slurm():
        return Cause.INTERRUPTED if stopped else Cause.FAILED
    if not stopped:
        return Cause.FAILED
    parent = os.environ.get("PTSLURM_PACK_PARENT", "")  # (pack.ENV_PACK_PARENT)
    if parent.isdigit() and os.getppid() != int(parent):
        return Cause.TERMINATED  # the packed job's own process died: its end, not a cancel; resumable
    info = schedulers.in_job().job_info(os.environ["SLURM_JOB_ID"])
    if info.get("PreemptTime") not in (None, "", "None"):
        return Cause.PREEMPTED
    restarts = int(info.get("Restarts", "0") or 0)
    if restarts > int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) or info.get("JobState") in SLURM_REQUEUING:
        return Cause.REQUEUED
    if info.get("JobState") == "CANCELLED" or (
            info.get("JobState") == SLURM_COMPLETING and interrupt.received() == signal.SIGTERM):
        return Cause.CANCELLED  # scancel: SIGTERM, and the job is on its way out
    if interrupt.received() == signal.SIGUSR2:
        return Cause.TIMEOUT
    return Cause.TERMINATED


class Decision(tp.NamedTuple):
    """How an attempt ended and what happens next: ``action`` is ``requeue`` (we ask SLURM)
    or None; ``progressed`` whether it got anywhere; ``gave_up`` why it is not requeued."""

    state: State
    cause: Cause
    action: tp.Optional[Action]
    progressed: tp.Optional[bool] = None
    gave_up: tp.Optional[str] = None


def decide(exc: BaseException, record: AttemptRecord, max_requeues: int,
           max_attempts: tp.Optional[int] = None) -> Decision:
    """The retry policy (README, "Retry policy"). A stop by the scheduler (time limit,
    preemption, node failure) after which the point made progress (reported progress, a new
    checkpoint, any file its code wrote under the storage dir) is always requeued: a long
    training lives through as many jobs as it needs. ``max_requeues`` bounds the stops in a
    row without progress. A failure (an exception) is requeued only when the attempt made
    progress or failed differently from the attempt before it, at most ``max_requeues``
    times; the same failure without progress (a bug, a missing module) ends the point at
    once. ``max_attempts`` (optional) caps the attempts of a submission."""
    from ..errors import SnapshotError

    if isinstance(exc, SnapshotError):  # running it again cannot help
        return Decision(State.FAILED, Cause.FAILED, None)
    if _disk_full(exc):  # neither can running it again on a full disk: a person must make room
        return Decision(State.FAILED, Cause.NO_SPACE, None)
    cause = classify(exc, getattr(record, "storage_dir", None))
    wished = {c: s for s, c in WISHED.values()}
    if cause in wished:  # a cancel (the command line's wish): the point shows the wish's state
        return Decision(wished[cause], cause, None)
    if not on_slurm():  # nothing to requeue: "failed" or "interrupted" is final
        return Decision(State(cause), cause, None)
    if cause == Cause.REQUEUED:
        return Decision(State.REQUEUED, cause, None, record.made_progress(any_file=True))  # SLURM puts it back
    # a job that ends by itself during a preemption's grace time is not requeued by SLURM
    # (it ends FAILED): requeue it like a timeout
    final = {Cause.TIMEOUT: State.TIMEOUT, Cause.TERMINATED: State.TIMEOUT, Cause.FAILED: State.FAILED,
             Cause.PREEMPTED: State.PREEMPTED}[cause]
    if cause == Cause.FAILED:
        progressed = record.made_progress()
        previous = record.previous_failure()
        differs = previous is not None and previous.fingerprint != fingerprint(exc)
        if not (progressed or differs):
            return Decision(final, cause, None, progressed, "it failed without progress"
                            + (" the same way as the attempt before" if previous is not None else ""))
        if record.count(cause) >= max_requeues:
            return Decision(final, cause, None, progressed,
                            f"{record.count(cause) + 1} failures in this submission (--max-requeues {max_requeues})")
    else:
        progressed = record.made_progress(any_file=True)
        stalls = 0 if progressed else record.stalls() + 1
        if stalls > max_requeues:
            return Decision(final, cause, None, progressed, f"{stalls} stops in a row without progress "
                                                            f"(--max-requeues {max_requeues})")
    if max_attempts is not None and record.attempts_in_submission() >= max_attempts:
        return Decision(final, cause, None, progressed, f"--max-attempts {max_attempts} reached")
    return Decision(State.REQUEUED, cause, Action.REQUEUE, progressed)

