"""The state of a sweep's points: one pure function (``point_state``) over a point's records
(its status file, the job's; its intent file, the command line's) and one observation of the
scheduler (a queue, and the accounting of jobs that left it). ``sweep_states`` makes that
observation with the questions that only ask (squeue, sacct): it never writes and never
submits. What ``status``, ``collect``, ``list`` and ``--wait`` show comes from here.
"""
import dataclasses
import datetime
import os
import socket
import time
import typing as tp
from pathlib import Path

from .. import records, schedulers
from ..errors import SubmissionError
from ..records import (ORDER, RUN, SLURM_WAITING, TERMINAL, WISHED, Attempt, Intent, Manifest, PointEntry, PointPaths,
                       PointStatus, State, read, read_intent, read_json)


class Asker(tp.Protocol):
    """The scheduler's questions the read side may ask (of ``schedulers.Scheduler``: SLURM
    answers them with its commands, the local scheduler has no queue to ask, the fake
    answers from its queue in memory)."""

    def slurm_available(self) -> bool: ...

    def queue_states(self, job_ids: tp.Iterable[str]) -> tp.Dict[str, str]: ...

    def accounting_history(self, job_ids: tp.Iterable[str]) -> tp.Dict[str, tp.List[tp.Tuple[str, str]]]: ...


def timestamp(text: tp.Optional[str]) -> tp.Optional[float]:
    """Seconds since the epoch of a time the records hold (ISO 8601, as ``recordkit.now``
    and sacct write it); None for None or anything else."""
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except (TypeError, ValueError):
        return None


def alive(host: tp.Optional[str], pid: tp.Optional[int]) -> bool:
    """False only when ``pid`` ran on this host and is gone."""
    if host != socket.gethostname() or not pid:
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _beating(heartbeat: tp.Optional[str]) -> bool:
    when = timestamp(heartbeat)
    return when is not None and abs(time.time() - when) < records.LIVE_HEARTBEAT_S  # (a node's clock may run a little ahead)


def point_state(manifest: Manifest, entry: PointEntry, status: PointStatus, intent: Intent,
                queue: tp.Optional[tp.Mapping[str, str]] = None,
                accounting: tp.Optional[tp.Mapping[str, str]] = None) -> State:
    """The one state function: what ``status``, ``collect``, ``list`` and ``--wait`` show
    for a point, from its status file (the job's record), its intent file (the command
    line's), and, when given, the scheduler's queue (one squeue call made BEFORE reading the
    files) and accounting (one sacct call)."""
    latest = status.latest
    state = status.state if latest is not None else State.PENDING
    if latest is not None and latest.submission < intent.submission and state in TERMINAL:
        state = State.PENDING  # resubmitted; the new attempt has not started yet
    if intent.stops and state != State.COMPLETED and (latest.submission if latest else 0) <= intent.submission:
        return WISHED[intent.wish][0]  # a cancel applies to the submission it was made in
    if status.cancelled and state != State.COMPLETED:  # written by older versions
        state = State.CANCELLED
    job = entry.job_id
    if not job and state == State.PENDING and (manifest.optuna or manifest.search or (
            latest is None and schedulers.of(manifest.executor).keeps_queue and manifest.waves)):
        return State.WAITING  # over the cluster's submit limit, not asked of Optuna, or promoted and not queued yet
    if queue is not None and job and job != "local" and state not in TERMINAL:
        queued = queue.get(job)
        if queued is None and state == State.RUNNING and latest is not None and _beating(latest.heartbeat):
            pass  # its job has left the queue, but its attempt still beats: it runs (never shown failed)
        elif queued is None:
            acct = (accounting or {}).get(job, "")
            state = (State.CANCELLED if acct.startswith("CANCELLED") else State.TIMEOUT if acct == "TIMEOUT"
                     else State.FAILED if acct in ("OUT_OF_MEMORY", "NODE_FAIL", "FAILED") else State.LOST)
        elif queued in SLURM_WAITING and state == State.RUNNING:
            state = State.REQUEUED
        elif queued == "RUNNING" and state in (State.PENDING, State.REQUEUED):
            state = State.RUNNING
    if state not in TERMINAL and not schedulers.of(manifest.executor).keeps_queue:  # processes of this machine
        if state == State.RUNNING and latest is not None and not alive(latest.host, latest.pid):
            state = State.LOST  # a local run killed without a word (kill -9, reboot)
        elif state == State.PENDING and not alive((manifest.runner or {}).get("host"),
                                                  (manifest.runner or {}).get("pid")):
            state = State.LOST  # its runner (`ptslurm sweep`, `resubmit`) is gone: it will never start
    return state


@dataclasses.dataclass(frozen=True)
class PointRow:
    """What ``status`` shows of one point. ``status_rows`` fills the fields after ``status``."""

    index: int
    state: State
    job_id: tp.Optional[str]
    storage_dir: str
    status: PointStatus
    error: tp.Optional[str] = None
    damaged: tp.Tuple[str, ...] = ()
    varied: tp.Mapping[str, tp.Any] = dataclasses.field(default_factory=dict)
    iteration: tp.Optional[int] = None
    epoch: tp.Optional[int] = None
    heartbeat: tp.Optional[str] = None
    ended: tp.Optional[str] = None
    elapsed_s: float = 0.0
    seed: tp.Optional[int] = None
    code: tp.Optional[str] = None  # the code snapshot the point runs (``v2 (1a2b3c4d)``)
    reason: str = ""  # why its job waits, as squeue says (Priority, Resources, JobHeldUser...)

    @property
    def attempts(self) -> int:
        return len(self.status.attempts)

    @property
    def latest(self) -> tp.Optional[Attempt]:
        return self.status.latest

    def history(self) -> tp.List[tp.Dict[str, tp.Any]]:
        return [{"attempt": a.attempt, "state": a.state.value, "cause": a.cause, "job_id": a.job_id,
                 "sacred_id": a.sacred_id} for a in self.status.attempts]

    def to_json(self) -> tp.Dict[str, tp.Any]:
        """The row as ``status --json`` prints it."""
        return {"index": self.index, "state": self.state.value, "attempts": self.attempts, "job_id": self.job_id,
                "storage_dir": self.storage_dir, "error": self.error, "damaged": list(self.damaged),
                "varied": dict(self.varied), "iteration": self.iteration, "epoch": self.epoch,
                "heartbeat": self.heartbeat, "ended": self.ended, "history": self.history(),
                "elapsed_s": self.elapsed_s, "seed": self.seed, "code": self.code, "reason": self.reason or None,
                "ranks": self.latest.ranks if self.latest is not None else None,
                "nodes": self.latest.nodes if self.latest is not None else None,
                # why the point is not requeued any more (the retry policy's words)
                "gave_up": self.latest.gave_up if self.latest is not None else None,
                "usage": self.latest.usage if self.latest is not None else None}

    def replace(self, **changes: tp.Any) -> "PointRow":
        """``dataclasses.replace`` (the row has no __post_init__) without its per-field checks:
        ``status`` fills 10,000 rows."""
        unknown = changes.keys() - self.__dict__.keys()
        if unknown:
            raise TypeError(f"PointRow has no field {', '.join(sorted(unknown))}")
        row = object.__new__(PointRow)
        row.__dict__.update(self.__dict__)
        row.__dict__.update(changes)
        return row


def point_files(manifest: Manifest, sweep_dir: tp.Optional[Path] = None,
                queue: tp.Optional[tp.Mapping[str, str]] = None
                ) -> tp.List[tp.Tuple["records.Read[PointStatus]", records.Intent]]:
    """Each point's status and intent records, as read from its storage dir. Given the
    ``sweep_dir`` of a sweep that keeps ``touched`` notes, a point without one has neither
    file yet and none of its files is opened, unless the ``queue`` shows its job other than
    pending (a running job's files are read whatever the notes say)."""
    skip = _untouched(manifest, sweep_dir, queue)
    blank: tp.Tuple["records.Read[PointStatus]", Intent] = (records.Read(None), Intent())
    return [blank if e.index in skip else
            (read(os.path.join(e.storage_dir, records.STATUS), PointStatus), read_intent(e.storage_dir))
            for e in manifest.points]


def _untouched(manifest: Manifest, sweep_dir: tp.Optional[Path],
               queue: tp.Optional[tp.Mapping[str, str]]) -> tp.Set[int]:
    """The points whose files ``point_files`` need not open (``records.TOUCHED``)."""
    if sweep_dir is None or not manifest.touched:
        return set()
    try:
        noted = {int(name) for name in os.listdir(os.path.join(sweep_dir, records.TOUCHED)) if name.isdigit()}
    except FileNotFoundError:
        noted = set()
    except OSError:
        return set()  # unreadable notes: read every point's files
    # without a queue to ask (a local sweep, a controller that did not answer) the notes alone
    return {e.index for e in manifest.points if e.index not in noted
            and (queue is None or queue.get(e.job_id or "") == records.SLURM_PENDING)}


def point_states(manifest: Manifest, queue: tp.Optional[tp.Mapping[str, str]] = None,
                 accounting: tp.Optional[tp.Mapping[str, str]] = None,
                 files: tp.Optional[tp.Sequence[tp.Tuple["records.Read[PointStatus]", records.Intent]]] = None
                 ) -> tp.List[PointRow]:
    """One row per point: its state (``point_state``), job, storage dir, status record and
    the error of an attempt that failed; a damaged status file makes the point ``unknown``
    and is named in ``damaged``. ``files``: ``point_files(manifest)`` when already read."""
    rows = []
    empty = PointStatus()
    for entry, (found, intent) in zip(manifest.points, point_files(manifest) if files is None else files):
        status = found.record or empty
        state = point_state(manifest, entry, status, intent, queue, accounting)
        if found.damaged:
            state = State.UNKNOWN
        latest = status.latest
        failed = latest is not None and state in (State.FAILED, State.TIMEOUT, State.PREEMPTED)
        queued = (queue or {}).get(entry.job_id or "")
        waits = state in (State.PENDING, State.REQUEUED) and queued is not None
        rows.append(PointRow(index=entry.index, state=state, job_id=entry.job_id, storage_dir=entry.storage_dir,
                             status=status, error=latest.error if failed and latest else None,
                             damaged=(found.damaged,) if found.damaged else (),
                             reason=str(getattr(queued, "reason", "") or "") if waits else ""))
    return rows


def sweep_states(sweep_dir: Path, manifest: Manifest, scheduler: tp.Optional[Asker] = None,
                 available: tp.Optional[bool] = None) -> tp.List[PointRow]:
    """Point states from the files, reconciled with one squeue call (and one sacct call
    when some point is neither queued nor finished on disk). ``scheduler``: who answers
    (default: the sweep's, ``schedulers.of``); ``available``: whether its controller
    answered, when the caller has just asked."""
    asker: Asker = scheduler if scheduler is not None else schedulers.of(manifest.executor)
    queue = None
    jobs = [e.job_id for e in manifest.points if e.job_id]
    if asker.slurm_available() if available is None else available:
        try:
            queue = asker.queue_states(jobs)
        except (SubmissionError, OSError):
            queue = None
    files = point_files(manifest, sweep_dir, queue)
    rows = point_states(manifest, queue, files=files)
    lost_attempts = any(a.state == State.LOST and a.job_id for r in rows for a in r.status.attempts)
    if queue is not None and (lost_attempts or any(r.state == State.LOST for r in rows)):
        # one sacct call answers both: how a vanished job ended, and why killed attempts died
        history = asker.accounting_history(jobs)
        accounting = {job: runs[-1][1] for job, runs in history.items() if runs}
        rows = killed_causes(point_states(manifest, queue, accounting, files), history)
    return rows


def killed_causes(rows: tp.Sequence[PointRow],
                  history: tp.Mapping[str, tp.Sequence[tp.Tuple[str, str]]]) -> tp.List[PointRow]:
    """Give attempts that were killed without a word (``lost`` in their status file) their
    cause from SLURM's accounting ``history`` (every run of each job): the run that started
    when the attempt did. In memory only: the job owns its status file."""
    def cause(attempt: Attempt) -> Attempt:
        started = timestamp(attempt.started)
        if attempt.state != State.LOST or not attempt.job_id or started is None:
            return attempt
        runs = [(abs(t - started), state) for t, state in
                ((timestamp(start), state) for start, state in history.get(attempt.job_id, ()))
                if t is not None]
        if runs:
            gap, state = min(runs)
            if gap <= 300 and state:
                return attempt.replace(cause=state.lower())
        return attempt

    return [r.replace(status=r.status.replace(attempts=tuple(cause(a) for a in r.status.attempts))) for r in rows]


def counts(rows: tp.Iterable[PointRow]) -> tp.Dict[State, int]:
    """Points by state, in ``ORDER``; states without points left out."""
    out = {s: 0 for s in ORDER}
    for row in rows:
        out[row.state] = out.get(row.state, 0) + 1
    return {k: v for k, v in out.items() if v}


def ended(rows: tp.Iterable[PointRow]) -> bool:
    return all(r.state in TERMINAL for r in rows)


def status_rows(manifest: Manifest, rows: tp.Sequence[PointRow], now: tp.Optional[float] = None) -> tp.List[PointRow]:
    """``point_states`` rows with the varied values, progress, last heartbeat and elapsed
    time filled in."""
    import time

    now = now or time.time()
    out = []
    labels: tp.Dict[int, str] = {}  # each code snapshot's label, worked out once
    for entry, row in zip(manifest.points, rows):
        attempts = row.status.attempts
        label = labels.get(entry.code_version)
        if label is None:
            label = labels[entry.code_version] = manifest.code_of(entry.code_version).label
        elapsed = 0.0
        stopped = row.state in TERMINAL  # the scheduler may have ended it without a word
        for a in attempts:
            start, end = timestamp(a.started), timestamp(a.ended)
            if end is None and a.state == State.RUNNING:
                end = timestamp(a.heartbeat) if stopped else now
            if start is not None:
                elapsed += max(0.0, (end or start) - start)
        progress = row.status.progress or {}
        heartbeat = None
        if attempts and attempts[-1].sacred_id:
            run = read_json(PointPaths(entry.path).run(attempts[-1].sacred_id, RUN))
            heartbeat = run.get("heartbeat") if isinstance(run, dict) else None
        out.append(row.replace(varied=entry.varied_values(manifest.varied), iteration=progress.get("iteration"),
                               epoch=progress.get("epoch"), heartbeat=heartbeat or row.status.updated,
                               ended=attempts[-1].ended if attempts else None, elapsed_s=round(elapsed, 1),
                               seed=entry.seed, code=label))
    return out


def why(row: PointRow) -> str:
    """A failed point's error (its first line), or why an ended point was not requeued."""
    if row.state in (State.COMPLETED, State.CANCELLED) or row.state not in TERMINAL:
        return ""
    latest = row.latest
    if latest is not None and latest.gave_up and row.state != State.FAILED:
        return latest.gave_up
    return (row.error or (latest.gave_up if latest is not None else None) or "").splitlines()[0] if (
        row.error or (latest is not None and latest.gave_up)) else ""


def failure_groups(rows: tp.Iterable[PointRow]) -> tp.List[tp.Tuple[str, tp.List[PointRow]]]:
    """The points that failed or were given up on, grouped by ``why``, the largest group
    first (``ptslurm failures`` and the report)."""
    groups: tp.Dict[str, tp.List[PointRow]] = {}
    for row in rows:
        said = why(row)
        if said:
            groups.setdefault(said, []).append(row)
    return sorted(groups.items(), key=lambda item: -len(item[1]))
