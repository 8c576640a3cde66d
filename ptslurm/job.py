"""What runs inside a job, under SLURM or locally: load the point from the sweep's manifest,
import the experiment from the code snapshot and run it with sacred, one attempt per start.

Resume state lives on disk, not in a pickle: every start reads the manifest and the storage
dir afresh, so a requeue, a node failure or a resubmission all take the same path.
"""
import os
import signal
import socket
import sys
import threading
import traceback
import typing as tp
from pathlib import Path

from . import commands, interrupt, runtime, sacred_adapter, storage
from .records import STATUS, Attempt, Manifest, PointEntry, PointStatus, State, read_intent, read_status
from .runtime import ENV_POINT, ENV_STORAGE_DIR, ENV_SWEEP_DIR, job_id, now, on_slurm


class AttemptRecord:
    """The one writer of a point's ``ptslurm_status.json`` (a PointStatus): the latest state
    plus one Attempt per start, rewritten atomically at each change. Thread-safe: the
    heartbeat and the watchdog write from threads."""

    RESERVE = ".ptslurm-reserve"  # space kept back so that a full disk can still be recorded
    RESERVE_BYTES = 256 * 1024

    def __init__(self, storage_dir: Path, submission: int = 0, code_dir: tp.Optional[str] = None):
        from . import records

        self.path = storage_dir / STATUS
        self.storage_dir = storage_dir
        self._lock = threading.RLock()
        found = records.read(self.path, PointStatus).record or PointStatus()
        # the command line's intent decides the submission
        self.status = found.replace(submission=submission, code_dir=code_dir or found.code_dir)

    @property
    def latest(self) -> Attempt:
        return self.status.attempts[-1]

    def start(self, **fields: tp.Any) -> Attempt:
        with self._lock:
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
        return prev if prev.submission == self.status.submission and prev.cause == "failed" else None

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
            storage.atomic_write_json(self.path, data)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            try:  # the disk is full: give back the reserve and write once more
                os.unlink(self.storage_dir / self.RESERVE)
            except OSError:
                raise exc from None
            storage.atomic_write_json(self.path, data)


def latest_checkpoint(storage_dir: Path) -> tp.Optional[tp.List[tp.Any]]:
    """``[name, mtime_ns]`` of the newest file under ``<storage_dir>/checkpoints`` (any code's
    own checkpoints count), None when there is none."""
    best: tp.Optional[tp.List[tp.Any]] = None
    try:
        for entry in os.scandir(Path(storage_dir) / storage.CHECKPOINTS):
            if entry.is_file():
                stamp = entry.stat().st_mtime_ns
                if best is None or stamp > best[1]:
                    best = [entry.name, stamp]
    except OSError:
        return None
    return best


STOPS = ("timeout", "terminated", "preempted", "lost")  # the scheduler ended it, not the code
OWN_FILES = {STATUS, "ptslurm_intent.json", "ptslurm_lease.json", storage.CONFIG, storage.CLAIM}


def footprint(storage_dir: Path) -> tp.List[int]:
    """``[count, newest mtime_ns]`` of the files under the storage dir that the point's code
    wrote, leaving out ptslurm's own (status, intent, lease, config) and sacred's
    (``sacred/``) and temp files: a change between an attempt's start and end is progress."""
    count, newest = 0, 0
    top = str(storage_dir)
    for dirpath, dirnames, filenames in os.walk(top):
        if dirpath == top:
            dirnames[:] = [d for d in dirnames if d != storage.SACRED]
        for name in filenames:
            if (dirpath == top and (name in OWN_FILES or name.startswith(".ptslurm"))) or name.endswith(".tmp"):
                continue
            try:
                stamp = os.stat(os.path.join(dirpath, name), follow_symlinks=False).st_mtime_ns
            except OSError:
                continue
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


def run_point(sweep_dir: tp.Union[str, Path], index: int) -> tp.Any:
    """Run one attempt of point ``index`` of the sweep in ``sweep_dir``; return the sacred
    run's result. The attempt holds the storage dir's lease while it runs. On a stop request
    or an error the attempt is recorded with its cause and, on SLURM, the job is requeued
    within the retry policy; then the exception propagates. A point whose cancel intent is
    set does not run. Raises LeaseHeld when another live attempt holds the storage dir."""
    from . import lease as leases

    sweep_dir = Path(sweep_dir)
    manifest = storage.read_manifest(sweep_dir)
    entry = manifest.point(index)
    storage_dir = entry.path
    storage.make_dirs(storage_dir)
    storage.require_own_dir(storage_dir)
    os.environ[ENV_STORAGE_DIR] = str(storage_dir)
    os.environ[ENV_SWEEP_DIR] = str(sweep_dir)
    os.environ[ENV_POINT] = str(index)
    ranks = runtime.distributed()
    runtime.pin_gpu(ranks)
    interrupt.reset()
    interrupt.install()  # a flag only; replaces submitit's checkpoint-in-the-handler
    if not ranks.is_main:
        return _follow(manifest, entry, sweep_dir)
    held = leases.acquire(storage_dir, job_id())
    try:
        intent = read_intent(storage_dir)
        done = read_status(storage_dir).latest
        if done is not None and done.state == State.COMPLETED and done.submission >= intent.submission:
            # SLURM requeued a job whose point already completed (a node failure after the
            # end, `scontrol requeue`): running it again would redo the work and add an attempt
            print(f"ptslurm: point {index} already completed in this submission (attempt {done.attempt}); "
                  f"nothing to run", file=sys.stderr, flush=True)
            return done.result
        _clear_leftovers(storage_dir / storage.CHECKPOINTS)
        record = AttemptRecord(storage_dir, submission=intent.submission,
                               code_dir=str(Path(manifest.code_of(entry.code_version).snapshot).parent))
        record.reserve()
        record.start(**({"ranks": ranks.world_size, "nodes": ranks.nodes} if ranks.world_size > 1 else {}))
        held.callbacks.append(record.beat)
        if intent.cancelled:  # cancelled while queued, or requeued after a cancel
            record.update(state=State.CANCELLED, cause="cancelled", ended=now(), final=True)
            return None
        runtime.activate(None, record)
        max_requeues, max_attempts = manifest.resources.max_requeues, manifest.resources.max_attempts
        interrupt.on_unheeded(lambda: _unheeded(record, max_requeues, held, max_attempts,
                                                 lambda: _notify(manifest, sweep_dir)))
        return _attempt(manifest, entry, sweep_dir, record, max_requeues, max_attempts)
    finally:
        interrupt.on_unheeded(None)
        try:
            os.unlink(storage_dir / AttemptRecord.RESERVE)
        except OSError:
            pass
        held.release()
        runtime.activate(None, None)
        _notify(manifest, sweep_dir)


def _notify(manifest: Manifest, sweep_dir: Path) -> None:
    """``sweep --notify``: this job may be the one that ended the sweep's last point."""
    if not manifest.notify:
        return
    try:
        from .housekeeping import notify_if_ended

        notify_if_ended(manifest, sweep_dir)
    except Exception as exc:  # noqa: BLE001 - a notification never fails the point
        print(f"ptslurm: warning: --notify: {exc}", file=sys.stderr, flush=True)


def _clear_leftovers(ckpt_dir: Path) -> None:
    """Before an attempt runs (it holds the lease: no other writer is alive): temp files of
    killed checkpoint writers are removed, and a ``checkpoints/`` folder left with nothing
    else (a kill or full disk during the first save) is removed too, so that code asking
    ``(storage_dir / 'checkpoints').exists()`` starts fresh instead of failing to resume."""
    try:
        names = os.listdir(ckpt_dir)
    except OSError:
        return
    stale = [n for n in names if n.startswith(".") and n.endswith(".tmp")]
    for name in stale:
        try:
            os.unlink(ckpt_dir / name)
        except OSError:
            pass
    if len(stale) == len(names):
        try:
            os.rmdir(ckpt_dir)
        except OSError:
            return
        print(f"ptslurm: {ckpt_dir} held no checkpoint" + (f" (only {len(stale)} temp file(s) of a killed writer)"
              if stale else "") + ": this attempt starts fresh", file=sys.stderr, flush=True)


def _follow(manifest: Manifest, entry: PointEntry, sweep_dir: Path) -> tp.Any:
    """A rank other than 0 of a distributed point: the same experiment with the same config,
    without observers, lease or status file (rank 0 records the attempt, writes checkpoints
    and requeues the job; a stop reaches every rank through the Trainer's agreement)."""
    if read_intent(entry.path).cancelled:
        return None
    enter_snapshot(manifest, sweep_dir, entry.index)
    run = _create_run(manifest, entry, None, observe=False)
    runtime.activate(run, None)
    route_logging()
    try:
        return run()
    except interrupt.Interrupted:
        return None  # all ranks stopped together; rank 0 wrote the checkpoint and requeues the job
    finally:
        runtime.activate(None, None)


def _attempt(manifest: Manifest, entry: PointEntry, sweep_dir: Path, record: AttemptRecord,
             max_requeues: int, max_attempts: tp.Optional[int] = None) -> tp.Any:
    run = None
    try:
        enter_snapshot(manifest, sweep_dir, entry.index)
        run = _create_run(manifest, entry, record)
        runtime.activate(run, record)
        route_logging()
        result = run()
        record.update(sacred_id=sacred_adapter.run_id(run), state=State.COMPLETED, ended=now(),
                      result=storage.jsonable(result, fallback=repr), final=True)
        return result
    except BaseException as exc:
        state, cause, action, progressed, gave_up = decide(exc, record, max_requeues, max_attempts)
        record.update(state=state, cause=cause, sacred_id=sacred_adapter.run_id(run), ended=now(),
                      progressed=progressed, gave_up=gave_up,
                      error=f"{type(exc).__name__}: {exc}", action=action, fingerprint=fingerprint(exc),
                      traceback="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
                      final=True)
        if action == "requeue":
            commands.requeue(job_id())
        raise


END_MARGIN_S = float(os.environ.get("PTSLURM_END_MARGIN_S", "10"))  # before the job's end: see _use_allocation


def _use_allocation() -> None:
    """Code that never asks ``should_stop()`` cannot checkpoint on demand: ending it at the
    time-limit signal would throw away the rest of the allocation and save nothing it would
    not have saved itself. So on a time limit it runs on until ``END_MARGIN_S`` before the
    job's end as SLURM reports it (``EndTime``; SLURM then sends SIGTERM, waits KillWait and
    kills), then is recorded and requeued. Any other signal meanwhile (a preemption, a
    cancel, a requeue) ends the wait at once."""
    import time

    if not on_slurm() or not interrupt.never_asked() or interrupt.received() != signal.SIGUSR2:
        return
    if classify(interrupt.Interrupted("probe")) != "timeout":
        return
    from .results import timestamp

    info = commands.job_info(os.environ["SLURM_JOB_ID"])
    end = timestamp(_local_iso(info.get("EndTime")))
    if end is None:
        return
    until = end - END_MARGIN_S
    if until - time.time() > 1:
        print(f"ptslurm: time limit ahead (job ends {info.get('EndTime')}); the code does not ask "
              f"ptslurm.should_stop(), so it keeps running until {END_MARGIN_S:g} s before the end", flush=True)
    seen = interrupt.signals_received()
    while time.time() < until and interrupt.signals_received() == seen:
        time.sleep(min(1.0, max(0.05, until - time.time())))


def _local_iso(text: tp.Optional[str]) -> tp.Optional[str]:
    """scontrol's times (``2026-12-01T10:00:00``, the local time zone) as ISO with offset."""
    import datetime

    if not text or text in ("Unknown", "None"):
        return None
    try:
        return datetime.datetime.fromisoformat(text).astimezone().isoformat()
    except ValueError:
        return None


def _unheeded(record: AttemptRecord, max_requeues: int, held: tp.Any, max_attempts: tp.Optional[int] = None,
              ended: tp.Callable[[], None] = lambda: None) -> None:
    """The watchdog's action for code that did not ask ``should_stop()``: on a time limit,
    use the allocation to its end (``_use_allocation``); then record the attempt, requeue it
    within the caps and end the process; the next attempt resumes from the code's own
    latest checkpoint."""
    _use_allocation()
    exc = interrupt.Interrupted("stop request not heeded")
    state, cause, action, progressed, gave_up = decide(exc, record, max_requeues, max_attempts)
    record.update(state=state, cause=cause, ended=now(), action=action, unheeded=True, final=True,
                  progressed=progressed, gave_up=gave_up,
                  error=f"stop request ({cause}) not heeded by the running code: the process was ended; "
                        f"the next attempt resumes from the code's own latest checkpoint")
    why = {"timeout": "the time limit", "terminated": "SIGTERM", "preempted": "a preemption",
           "requeued": "scontrol requeue", "cancelled": "a cancel"}.get(cause, cause)
    then = ("the next attempt resumes from the code's own latest checkpoint" if action == "requeue"
            else f"it is not requeued: {gave_up}" if gave_up else "it is not requeued")
    run = runtime.active_run()
    line = f"ptslurm: ended this attempt for {why} (the code did not ask ptslurm.should_stop()); {then}"
    if run is not None:
        sacred_adapter.close_interrupted(run, line)
    else:
        print(line, flush=True)
    if action == "requeue":
        try:
            commands.requeue(job_id())
        except Exception:  # noqa: BLE001 - recorded; the scheduler ends the job anyway
            pass
    held.release()
    if action != "requeue":
        ended()
    sys.stdout.flush()
    sys.stderr.flush()
    interrupt.end_process()


class _CurrentStream:
    """Writes to whatever ``sys.<name>`` is when a record is emitted: sacred's capture while
    the run is on, so that ``logging`` output lands in cout.txt too."""

    def __init__(self, name: str):
        self.name = name

    def write(self, text: str) -> int:
        return getattr(sys, self.name).write(text)

    def flush(self) -> None:
        getattr(sys, self.name).flush()


def route_logging() -> None:
    """Point every logging StreamHandler bound to the process's stdout/stderr (made at import
    time, before sacred's capture replaced them) at the current stream instead."""
    import logging

    streams = {id(sys.__stderr__): "stderr", id(sys.__stdout__): "stdout",
               id(sys.stderr): "stderr", id(sys.stdout): "stdout"}
    loggers = [logging.getLogger()] + [lg for lg in logging.Logger.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger)]
    submitit = logging.getLogger("submitit")
    if submitit.handlers:  # its own handler prints each line; the root's (sacred's) printed it twice
        submitit.propagate = False
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                name = streams.get(id(handler.stream))
                if name:
                    handler.setStream(_CurrentStream(name))


def enter_snapshot(manifest: Manifest, sweep_dir: Path, index: int) -> None:
    """Check that the code snapshot is what was submitted, then work in it: its copy of the
    experiment's folder is the working directory and nothing of the user's live tree is
    importable. Raises SnapshotError (never retried) when a file changed."""
    from . import snapshot

    version = manifest.code_of(manifest.point(index).code_version)
    code = sweep_dir / version.dir
    # the snapshot's modules are compiled from their verified source: a planted .pyc in its
    # __pycache__ never runs, and nothing is written there (the environment's own compiled
    # modules are used as usual: a global pycache prefix would recompile all of torch)
    snapshot.source_only(code)
    if version.sha256:
        snapshot.verify(code, version.sha256, f"to run the new code: `ptslurm resubmit {sweep_dir} "
                                              f"--points {index} --refresh-code`")
    if version.workdir:
        os.chdir(version.workdir)
    if version.source_root:
        snapshot.isolate(Path(version.source_root), code)


def classify(exc: BaseException, storage_dir: tp.Optional[Path] = None) -> str:
    """Why the attempt ended, from the command line's intent and SLURM's own record of the
    job (not from elapsed time): ``cancelled`` (``ptslurm cancel``, or scancel: SIGTERM first
    and the job CANCELLED or COMPLETING), ``preempted`` (PreemptTime is set), ``requeued``
    (someone ran scontrol requeue: the restart count moved on), ``timeout`` (the --signal
    before the time limit), ``terminated`` (SIGTERM from elsewhere), ``failed`` (an
    exception), ``interrupted`` (a stop request outside SLURM)."""
    stopped = interrupt.received() is not None or isinstance(exc, KeyboardInterrupt)
    if stopped and storage_dir is not None and read_intent(storage_dir).cancelled:
        return "cancelled"
    if not on_slurm():
        return "interrupted" if stopped else "failed"
    if not stopped:
        return "failed"
    info = commands.job_info(os.environ["SLURM_JOB_ID"])
    if info.get("PreemptTime") not in (None, "", "None"):
        return "preempted"
    restarts = int(info.get("Restarts", "0") or 0)
    if restarts > int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) or info.get("JobState") in (
            "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "PENDING"):
        return "requeued"
    if info.get("JobState") == "CANCELLED" or (
            info.get("JobState") == "COMPLETING" and interrupt.received() == signal.SIGTERM):
        return "cancelled"  # scancel: SIGTERM, and the job is on its way out
    if interrupt.received() == signal.SIGUSR2:
        return "timeout"
    return "terminated"


class Decision(tp.NamedTuple):
    """How an attempt ended and what happens next: ``action`` is ``requeue`` (we ask SLURM)
    or None; ``progressed`` whether it got anywhere; ``gave_up`` why it is not requeued."""

    state: State
    cause: str
    action: tp.Optional[str]
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
    from .errors import SnapshotError

    if isinstance(exc, SnapshotError):  # running it again cannot help
        return Decision(State.FAILED, "failed", None)
    if _disk_full(exc):  # neither can running it again on a full disk: a person must make room
        return Decision(State.FAILED, "no_space", None)
    cause = classify(exc, getattr(record, "storage_dir", None))
    if cause == "cancelled":
        return Decision(State.CANCELLED, cause, None)
    if not on_slurm():  # nothing to requeue: "failed" or "interrupted" is final
        return Decision(State(cause), cause, None)
    if cause == "requeued":
        return Decision(State.REQUEUED, cause, None, record.made_progress(any_file=True))  # SLURM puts it back
    # a job that ends by itself during a preemption's grace time is not requeued by SLURM
    # (it ends FAILED): requeue it like a timeout
    final = {"timeout": State.TIMEOUT, "terminated": State.TIMEOUT, "failed": State.FAILED,
             "preempted": State.PREEMPTED}[cause]
    if cause == "failed":
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
    return Decision(State.REQUEUED, cause, "requeue", progressed)


def _create_run(manifest: Manifest, entry: PointEntry, record: tp.Optional[AttemptRecord] = None,
                observe: bool = True) -> tp.Any:
    """The sacred Run of this attempt, built from the snapshot with the point's updates,
    named configs and seed; ptslurm's FileStorageObserver first (it decides the run id, so
    attempt n of a point is ``sacred/<n>``), the experiment's own observers after it."""
    from . import experiment

    storage_dir = entry.path
    _, ex = experiment.load(Path(manifest.code_of(entry.code_version).snapshot), module_name=manifest.experiment.module)
    # the snapshot is not the repository; the submission's git state is recorded below
    ex.save_git_info = False
    updates = dict(entry.updates)
    if entry.seed is not None and entry.seed_source == "ptslurm":
        updates.setdefault("seed", entry.seed)
    if manifest.storage_key:
        updates[manifest.storage_key] = str(storage_dir)
    # config scopes shaped like the seed's allocate a dir under $STORAGE_ROOT while the config
    # is built: let them do it in a throw-away place; the storage dir comes from ptslurm
    with experiment.sandbox(ex, quiet=False):
        run = sacred_adapter.create_run(ex, updates, entry.named_configs)
    if not observe:  # a rank other than 0: exactly one sacred/<n> per attempt
        sacred_adapter.no_observers(run)
        return run
    on_start = (lambda run_id: record.update(sacred_id=run_id)) if record is not None else None
    sacred_adapter.observe_first(run, str(storage_dir / storage.SACRED), on_start)
    git = manifest.git
    # sacred's default "fd" capture goes through a tee process whose last lines can miss
    # cout.txt when the run ends; "sys" capture is exact for Python output, and the job's
    # whole stdout/stderr is in the scheduler's log anyway
    sacred_adapter.set_run_info(run, capture_mode=os.environ.get("PTSLURM_CAPTURE_MODE", "sys"),
                                repository=git if git.get("commit") else None,
                                info={"sweep": manifest.name, "point": entry.index, "job_id": job_id(),
                                      "git": git})
    runtime.dump_config(run.config, storage_dir / storage.CONFIG)
    return run


def main(argv: tp.Optional[tp.List[str]] = None) -> int:
    """``python -m ptslurm.jobmain SWEEP_DIR INDEX``: the local backend's entry point."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m ptslurm.jobmain SWEEP_DIR INDEX", file=sys.stderr)
        return 2
    try:
        run_point(argv[0], int(argv[1]))
    except Exception:
        traceback.print_exc()
        return 1
    return 0
