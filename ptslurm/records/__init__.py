"""The on-disk contract between the submit side, the job and the collector, typed.

Three kinds of file, each with one writer::

    <sweep dir>/manifest.json              Manifest      the command line (sweep, resubmit, waves)
    <storage dir>/ptslurm_status.json      PointStatus   the job (one Attempt per start)
    <storage dir>/ptslurm_intent.json      Intent        the command line (cancel, resubmit)

Records are frozen; a change is a new record (``dataclasses.replace``) written atomically by
its one writer. Keys a record does not know are kept in ``extra`` and written back, so a file
from a newer ptslurm survives a round trip through an older one.

Reading never raises on a damaged file: ``read`` gives the record, or ``None`` and the path
of a file that exists but holds no such record (truncated, not JSON, a list where a mapping
belongs). Callers name that path in a warning and show the point as ``unknown``.
"""
import dataclasses
import enum
import os
import typing as tp
from pathlib import Path

from .recordkit import (R, Record, _int, _mapping, _opt_int, _opt_mapping, _str, _strings, field,
                        gc_paused as gc_paused, read_json as read_json)
from .spec import Point, Resources, varied_values

# ----------------------------------------------------------------------------- on-disk names
# Every name ptslurm gives a file or folder, in one place (README, "Storage layout").
# under the storage root
SWEEPS = "sweeps"  # <root>/sweeps/<sweep name>/: the sweep dirs
# in a sweep dir
MANIFEST = "manifest.json"
CODE = "code"  # the code snapshot (code-<n> for later versions)
SLURM_FOLDER = "slurm"  # submitit's job files and the scheduler's logs
LOCAL_LOGS = "logs"  # a local point's output, <index>.log
LOCK = ".ptslurm.lock"  # the manifest's lock
COLLECT_CACHE = "collect_cache.json"  # collect's records keyed by their files' (mtime, size)
# in a storage dir
STATUS = "ptslurm_status.json"  # the job's record of its attempts
INTENT = "ptslurm_intent.json"  # what the command line asked (cancel, resubmit)
# in the sweep dir: an empty file per point whose storage dir holds a status or intent file,
# made before the first of them (``manifests.touch_point``), so that ``status`` of 10,000 queued
# points opens no file of theirs
TOUCHED = "touched"
SEARCH = "search.json"  # in the sweep dir: successive halving's decisions (``promote``)
LEASE = "ptslurm_lease.json"  # which attempt writes here now
CLAIM = ".ptslurm-claim"  # which sweep claimed the dir (to reclaim a killed submission's)
CONFIG = "config.json"  # the resolved config of the latest attempt
SACRED = "sacred"  # sacred's FileStorageObserver: sacred/<attempt>/
CHECKPOINTS = "checkpoints"  # ckpt_<iteration>.pth, ckpt_latest.pth, ckpt_best_loss.pth
WORK = "work"  # the point's working dir: the code snapshot's folders, its files linked in; relative writes land here
# in a sacred run dir, written by sacred
RUN = "run.json"
COUT = "cout.txt"
METRICS = "metrics.json"
MANIFEST_SCHEMA = 1  # a manifest of a newer schema is refused (see manifests.read_manifest)


#: an attempt whose heartbeat (every 30 s) is younger than this is alive, whatever the scheduler
#: says of its job (a packed point whose job's process was killed trains on): never shown
#: failed, its lease never taken over
LIVE_HEARTBEAT_S = 75.0

#: ptslurm's own files at the top of a storage dir (not the point's code's)
OWN_FILES = frozenset({STATUS, INTENT, LEASE, CONFIG, CLAIM})


class PointPaths(tp.NamedTuple):
    """The files of one storage dir, by role (as submitit's ``JobPaths`` for a job)."""

    storage_dir: Path

    @property
    def status(self) -> Path:  # the job's record of its attempts
        return self.storage_dir / STATUS

    @property
    def intent(self) -> Path:  # what the command line asked of the point
        return self.storage_dir / INTENT

    @property
    def lease(self) -> Path:  # which attempt writes here now
        return self.storage_dir / LEASE

    @property
    def config(self) -> Path:  # the latest attempt's resolved config
        return self.storage_dir / CONFIG

    @property
    def checkpoints(self) -> Path:  # the training's checkpoints
        return self.storage_dir / CHECKPOINTS

    @property
    def sacred(self) -> Path:  # sacred's observer: one folder per attempt
        return self.storage_dir / SACRED

    @property
    def work(self) -> Path:  # the working dir: relative writes land here
        return self.storage_dir / WORK

    def run(self, sacred_id: tp.Union[int, str], name: str = RUN) -> Path:
        """``sacred/<id>/<name>``: ``RUN``, ``COUT`` or ``METRICS`` of an attempt's sacred run."""
        return self.storage_dir / SACRED / str(sacred_id) / name



class Word(str, enum.Enum):
    """A word the files hold: equal to, and printed as, its value."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class Executor(Word):
    """Where a sweep's points run (``Manifest.executor``)."""

    SLURM = "slurm"
    LOCAL = "local"


class Cause(Word):
    """Why an attempt ended, as ptslurm decides it (``Attempt.cause``; an attempt killed
    without a word may instead carry SLURM's own word from sacct, lower-cased)."""

    TIMEOUT = "timeout"  # the stop signal before the time limit
    TERMINATED = "terminated"  # SIGTERM from elsewhere
    PREEMPTED = "preempted"
    REQUEUED = "requeued"  # scontrol requeue
    CANCELLED = "cancelled"
    FAILED = "failed"  # an exception
    INTERRUPTED = "interrupted"  # a stop request outside SLURM
    NO_SPACE = "no_space"  # the disk filled up
    LOST = "lost"  # killed without a word


#: causes by which the scheduler, not the code, ended an attempt
STOPS = frozenset({Cause.TIMEOUT, Cause.TERMINATED, Cause.PREEMPTED, Cause.LOST})


class Action(Word):
    """What an attempt's end asks of the scheduler (``Attempt.action``)."""

    REQUEUE = "requeue"


# ----------------------------------------------------------------------------- SLURM's job states
# squeue's states, one table: which mean the job waits to (re)start, and which mean its
# processes may still be there (a suspended job's are: it holds its point's lease)
SLURM_WAITING = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "SUSPENDED"})
SLURM_ON_NODE = frozenset({"RUNNING", "COMPLETING", "SUSPENDED"})
# scontrol's JobState of a job that SLURM is putting back in the queue (a requeue, not an end)
SLURM_REQUEUING = frozenset({"REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "PENDING"})
SLURM_PENDING = "PENDING"  # waiting in the queue (a first time, or again after a requeue)
SLURM_COMPLETING = "COMPLETING"  # the job's processes are being ended (scancel, the time limit)


class State(Word):
    """What a point (or one attempt of it) is doing. The values are what the files and
    ``--json`` outputs hold."""

    WAITING = "waiting"  # over the cluster's submit limit: a later wave submits it
    PENDING = "pending"
    RUNNING = "running"
    REQUEUED = "requeued"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    PREEMPTED = "preempted"
    INTERRUPTED = "interrupted"  # a local run stopped by a signal; nothing requeues it
    LOST = "lost"  # killed without a word (SIGKILL, node failure), or never started
    UNKNOWN = "unknown"  # a damaged file hides what the point did

    @classmethod
    def parse(cls, value: tp.Any, default: "State" = None) -> "State":  # type: ignore[assignment]
        """The State named ``value``; ``default`` (UNKNOWN) for anything else."""
        try:
            return cls(value)
        except ValueError:
            return default if default is not None else cls.UNKNOWN


class Wish(Word):
    """What the command line wants of a point (``Intent.wish``): that it runs, or that it is
    cancelled. A wish that stops a point has its state and its attempt's cause in ``WISHED``:
    a new one (pause) is a member and an entry there."""

    RUN = "run"
    CANCEL = "cancel"


#: a wish that stops a point -> the state the point shows, the cause its stopped attempt records
WISHED: tp.Mapping[Wish, tp.Tuple[State, Cause]] = {Wish.CANCEL: (State.CANCELLED, Cause.CANCELLED)}
#: a point in one of these has ended: waits end there, elapsed time stops
TERMINAL: tp.FrozenSet[State] = frozenset({State.COMPLETED, State.FAILED, State.CANCELLED, State.TIMEOUT,
                                           State.PREEMPTED, State.INTERRUPTED, State.LOST, State.UNKNOWN})
#: what ``resubmit --failed`` (and a local sweep's rerun) picks up
RETRYABLE: tp.FrozenSet[State] = frozenset({State.FAILED, State.TIMEOUT, State.PREEMPTED, State.INTERRUPTED,
                                            State.LOST})
#: a point in one of these may still run: no second run may share its storage dir
BUSY: tp.FrozenSet[State] = frozenset({State.PENDING, State.RUNNING, State.REQUEUED})
#: the order counts are shown in
ORDER: tp.Tuple[State, ...] = (State.WAITING, State.PENDING, State.RUNNING, State.REQUEUED, State.COMPLETED,
                               State.FAILED, State.CANCELLED, State.TIMEOUT, State.PREEMPTED, State.UNKNOWN,
                               State.INTERRUPTED, State.LOST)

@dataclasses.dataclass(frozen=True)
class Intent(Record):
    """What the command line asked of a point (``ptslurm_intent.json``; the job only reads
    it): the submission it belongs to (``resubmit`` counts up) and its ``wish``."""

    submission: int = field(0, load=_int)
    cancelled: bool = field(False, load=bool)
    time: tp.Optional[str] = field(None, load=_str)

    @property
    def wish(self) -> "Wish":
        return Wish.CANCEL if self.cancelled else Wish.RUN

    @property
    def stops(self) -> bool:
        """The wish stops the point: its job neither runs it nor goes on nor requeues."""
        return self.wish in WISHED


@dataclasses.dataclass(frozen=True)
class Attempt(Record):
    """One start of a point's job: where and when it ran, how it ended and why."""

    attempt: int = field(1, load=_int)
    state: State = field(State.RUNNING, load=State.parse)
    job_id: tp.Optional[str] = field(None, load=_str)
    submission: int = field(0, load=_int)
    host: tp.Optional[str] = field(None, load=_str)
    pid: tp.Optional[int] = field(None, load=_opt_int)
    started: tp.Optional[str] = field(None, load=_str)
    heartbeat: tp.Optional[str] = field(None, load=_str)
    restart_count: int = field(0, load=_int)
    progress_at_start: tp.Optional[tp.Dict[str, tp.Any]] = field(None, load=_opt_mapping)
    checkpoint_at_start: tp.Optional[tp.List[tp.Any]] = field(None)
    sacred_id: tp.Optional[tp.Any] = field(None, omit_none=True)
    ended: tp.Optional[str] = field(None, load=_str, omit_none=True)
    cause: tp.Optional[str] = field(None, load=_str, omit_none=True)
    action: tp.Optional[str] = field(None, load=_str, omit_none=True)
    error: tp.Optional[str] = field(None, load=_str, omit_none=True)
    fingerprint: tp.Optional[str] = field(None, load=_str, omit_none=True)
    traceback: tp.Optional[str] = field(None, load=_str, omit_none=True)
    result: tp.Any = field(None, omit_none=True)
    resumed_from: tp.Optional[tp.Dict[str, tp.Any]] = field(None, load=_opt_mapping, omit_none=True)
    ranks: tp.Optional[int] = field(None, load=_opt_int, omit_none=True)  # a distributed point's world size
    nodes: tp.Optional[int] = field(None, load=_opt_int, omit_none=True)
    unheeded: tp.Optional[bool] = field(None, load=bool, omit_none=True)  # ended by the watchdog
    packed: tp.Optional[int] = field(None, load=_opt_int, omit_none=True)  # points sharing its job (--points-per-job)
    # files the attempt's code wrote under the storage dir ([count, newest mtime_ns]) at its start
    footprint_at_start: tp.Optional[tp.List[tp.Any]] = field(None, omit_none=True)
    progressed: tp.Optional[bool] = field(None, load=bool, omit_none=True)  # set when it ended
    gave_up: tp.Optional[str] = field(None, load=_str, omit_none=True)  # why it was not requeued
    final: tp.Optional[bool] = field(None, load=bool, omit_none=True)  # recorded as ended: later updates are ignored
    # what it used (``usage.Sampler``): peak host memory, each visible GPU's mean use and peak memory
    usage: tp.Optional[tp.Dict[str, tp.Any]] = field(None, load=_opt_mapping, omit_none=True)


def _attempts(value: tp.Any) -> tp.Tuple[Attempt, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(Attempt.from_json(a) for a in value if isinstance(a, dict))


@dataclasses.dataclass(frozen=True)
class PointStatus(Record):
    """A point's ``ptslurm_status.json``, written only by its job: the latest state and one
    Attempt per start."""

    state: State = field(State.PENDING, load=State.parse)
    attempts: tp.Tuple[Attempt, ...] = field(factory=tuple, load=_attempts)
    submission: int = field(0, load=_int)
    attempt: tp.Optional[int] = field(None, load=_opt_int, omit_none=True)
    job_id: tp.Optional[str] = field(None, load=_str, omit_none=True)
    updated: tp.Optional[str] = field(None, load=_str, omit_none=True)
    progress: tp.Optional[tp.Dict[str, tp.Any]] = field(None, load=_opt_mapping, omit_none=True)
    code_dir: tp.Optional[str] = field(None, load=_str, omit_none=True)
    cancelled: tp.Optional[bool] = field(None, load=bool, omit_none=True)  # written before the intent file

    @property
    def latest(self) -> tp.Optional[Attempt]:
        return self.attempts[-1] if self.attempts else None

    def result(self) -> tp.Any:
        """The result of the latest attempt that completed (None before one did)."""
        return next((a.result for a in reversed(self.attempts) if a.state == State.COMPLETED), None)


def _dicts(value: tp.Any) -> tp.Tuple[tp.Dict[str, tp.Any], ...]:
    return tuple(dict(v) for v in value if isinstance(v, dict)) if isinstance(value, list) else ()


@dataclasses.dataclass(frozen=True)
class PointEntry(Record):
    """One point in the manifest: its config request, storage dir, seed and job."""

    index: int = field(0, load=_int)
    updates: tp.Dict[str, tp.Any] = field(factory=dict, load=_mapping)
    named_configs: tp.Tuple[str, ...] = field(factory=tuple, load=_strings)
    varied: tp.Tuple[str, ...] = field(factory=tuple, load=_strings)
    storage_dir: str = field("", load=str)
    job_id: tp.Optional[str] = field(None, load=_str)
    seed: tp.Optional[int] = field(None, load=_opt_int)
    seed_source: str = field("ptslurm", load=str)
    job_history: tp.Tuple[str, ...] = field(factory=tuple, load=_strings)
    code_version: int = field(1, load=_int)  # which snapshot of the sweep the point runs
    group: int = field(0, load=_int)  # which of the manifest's resource groups the point asks for
    # `extend` and successive halving: each budget the point was asked to train to, in order
    # ({"value", "submission", "time", "by"}); empty for a point never extended
    budgets: tp.Tuple[tp.Dict[str, tp.Any], ...] = field(factory=tuple, load=_dicts, omit_none=True)

    @property
    def path(self) -> Path:
        return Path(self.storage_dir)

    def to_point(self) -> Point:
        return Point(index=self.index, updates=dict(self.updates), named_configs=self.named_configs,
                     varied=self.varied)

    def varied_values(self, keys: tp.Iterable[str]) -> tp.Dict[str, tp.Any]:
        """The values of the sweep's varied ``keys`` for this point (``spec.varied_values``)."""
        return varied_values(self.updates, self.named_configs, keys)

    def label(self, keys: tp.Iterable[str]) -> str:
        """``lr=0.1 batch_size=16``: the point's varied values (``point 3`` when none vary)."""
        return " ".join(f"{k}={v}" for k, v in self.varied_values(keys).items()) or f"point {self.index}"


class CodeVersion(tp.NamedTuple):
    """One code snapshot of a sweep: ``dir`` (in the sweep dir), its content hash, the
    snapshot's copy of the experiment file, the job's working dir, the live folder it was
    taken from, when."""

    version: int
    dir: str
    sha256: tp.Optional[str]
    snapshot: str
    workdir: tp.Optional[str]
    source_root: tp.Optional[str]
    taken: tp.Optional[str]

    @property
    def label(self) -> str:
        return f"v{self.version} ({(self.sha256 or '?')[:8]})"


@dataclasses.dataclass(frozen=True)
class ExperimentInfo(Record):
    """Where the experiment came from and where its snapshot is."""

    name: str = field("", load=str)
    file: str = field("", load=str)
    snapshot: str = field("", load=str)
    module: str = field("", load=str)
    source_root: tp.Optional[str] = field(None, load=_str)
    workdir: tp.Optional[str] = field(None, load=_str)


def _points(value: tp.Any) -> tp.Tuple[PointEntry, ...]:
    return tuple(PointEntry.from_json(p) for p in value if isinstance(p, dict)) if isinstance(value, list) else ()


def _resource_groups(value: tp.Any) -> tp.Tuple[Resources, ...]:
    return tuple(Resources.tolerant(v) for v in value) if isinstance(value, list) else ()


def _dump_groups(groups: tp.Tuple[Resources, ...]) -> tp.List[tp.Dict[str, tp.Any]]:
    return [g.to_json() for g in groups]


@dataclasses.dataclass(frozen=True)
class Manifest(Record):
    """A sweep's ``manifest.json``, written only by the command line: what was asked for,
    the code snapshot, and one PointEntry per point."""

    schema: int = field(MANIFEST_SCHEMA, load=_int)
    name: str = field("", load=str)
    created: str = field("", load=str)
    state: str = field("submitting", load=str)  # submitting, submitted, not_submitted
    executor: str = field("local", load=str)
    spec_hash: str = field("", load=str)
    command: tp.Tuple[str, ...] = field(factory=tuple, load=_strings)
    experiment: ExperimentInfo = field(factory=ExperimentInfo, load=ExperimentInfo.from_json)
    code: tp.Dict[str, tp.Any] = field(factory=dict, load=_mapping)
    spec: tp.Dict[str, tp.Any] = field(factory=dict, load=_mapping)
    root: str = field("", load=str)
    storage_key: tp.Optional[str] = field(None, load=_str)
    resources: Resources = field(factory=Resources, load=Resources.tolerant, dump=Resources.to_json)
    # a sweep file's resources per point: one Resources per distinct request (PointEntry.group);
    # empty: every point asks for ``resources``
    groups: tp.Tuple[Resources, ...] = field(factory=tuple, load=_resource_groups, dump=_dump_groups, omit_none=True)
    varied: tp.Tuple[str, ...] = field(factory=tuple, load=_strings)
    versions: tp.Dict[str, tp.Any] = field(factory=dict, load=_mapping)
    git: tp.Dict[str, tp.Any] = field(factory=dict, load=_mapping)
    points: tp.Tuple[PointEntry, ...] = field(factory=tuple, load=_points)
    # the sweep keeps its ``TOUCHED`` notes (sweeps made before them: every point's files are read)
    touched: bool = field(False, load=lambda v: v is True)
    runner: tp.Optional[tp.Dict[str, tp.Any]] = field(None, load=_opt_mapping, omit_none=True)
    waves: tp.Optional[tp.Dict[str, tp.Any]] = field(None, load=_opt_mapping, omit_none=True)
    sbatch_calls: tp.Optional[int] = field(None, load=_opt_int, omit_none=True)
    error: tp.Optional[str] = field(None, load=_str, omit_none=True)
    note: tp.Optional[str] = field(None, load=_str, omit_none=True)  # `sweep --note`, shown by `list`
    notify: tp.Optional[str] = field(None, load=_str, omit_none=True)  # `sweep --notify`: run once at the end
    # snapshots taken after the first (``--refresh-code``): "2" -> {"dir", "sha256", "bytes",
    # "snapshot", "workdir", "source_root", "taken"}; version 1 is ``code``/``experiment``
    code_versions: tp.Dict[str, tp.Any] = field(factory=dict, load=_mapping, omit_none=True)
    # the budget key (`extend`, successive halving) and the sweep file's `halving:` section
    budget_key: tp.Optional[str] = field(None, load=_str, omit_none=True)
    search: tp.Optional[tp.Dict[str, tp.Any]] = field(None, load=_opt_mapping, omit_none=True)
    optuna: tp.Optional[tp.Dict[str, tp.Any]] = field(None, load=_opt_mapping, omit_none=True)  # its `optuna:`

    def code_of(self, version: int = 1) -> "CodeVersion":
        """Where snapshot ``version`` lies and its hash (version 1: the sweep's first)."""
        extra = self.code_versions.get(str(version)) if version != 1 else None
        if isinstance(extra, dict):
            return CodeVersion(version, str(extra.get("dir", f"code-{version}")), extra.get("sha256"),
                               str(extra.get("snapshot", "")), extra.get("workdir"), extra.get("source_root"),
                               extra.get("taken"))
        info = self.experiment
        return CodeVersion(1, "code", self.code.get("sha256"), info.snapshot, info.workdir, info.source_root,
                           self.created)

    @property
    def latest_code(self) -> int:
        return max([1] + [int(k) for k in self.code_versions if str(k).isdigit()])

    def resources_of(self, index: int) -> Resources:
        """What point ``index`` asks the scheduler for (its group's resources)."""
        group = self.points[index].group if 0 <= index < len(self.points) else 0
        return self.groups[group] if 0 <= group < len(self.groups) else self.resources

    def point(self, index: int) -> PointEntry:
        """The entry of point ``index``; UsageError when the sweep has no such point."""
        if not 0 <= index < len(self.points):
            from ..errors import UsageError

            raise UsageError(f"point {index} is out of range: sweep {self.name!r} has points "
                             f"0-{len(self.points) - 1}")
        return self.points[index]

    def with_jobs(self, ids: tp.Mapping[int, tp.Optional[str]]) -> "Manifest":
        """The manifest with these points' job ids set."""
        return self.replace(points=tuple(p.replace(job_id=ids[p.index]) if p.index in ids else p
                                         for p in self.points))

    def with_points(self, change: tp.Callable[[PointEntry], PointEntry],
                    indices: tp.Optional[tp.Iterable[int]] = None) -> "Manifest":
        chosen = None if indices is None else set(indices)
        return self.replace(points=tuple(change(p) if chosen is None or p.index in chosen else p
                                         for p in self.points))


# ----------------------------------------------------------------------------- tolerant reading


@dataclasses.dataclass(frozen=True)
class Read(tp.Generic[R]):
    """What ``read`` found: the record (None when the file is missing or damaged) and, for
    a damaged file, its path."""

    record: tp.Optional[R]
    damaged: tp.Optional[str] = None


def read(path: tp.Union[str, Path], kind: tp.Type[R]) -> "Read[R]":
    """Read a record of ``kind`` from ``path`` without raising: a missing file gives
    ``Read(None)``, a damaged one ``Read(None, damaged=path)``."""
    data = read_json(path)
    if data is None:
        return Read(None, str(path) if os.path.exists(path) else None)
    try:
        return Read(kind.from_json(data))
    except (ValueError, TypeError):
        return Read(None, str(path))


def read_status(storage_dir: tp.Union[str, Path]) -> PointStatus:
    """A point's status record; an empty one when it is missing or damaged."""
    return read(os.path.join(storage_dir, STATUS), PointStatus).record or PointStatus()


def read_intent(storage_dir: tp.Union[str, Path]) -> Intent:
    """A point's intent record; the default (submission 0, not cancelled) when missing, or
    when another user wrote it (only the sweep's owner may cancel or resubmit its points)."""
    path = os.path.join(storage_dir, INTENT)  # a string: status reads thousands
    try:
        if os.stat(path).st_uid != os.geteuid():
            return Intent()
    except OSError:
        return Intent()
    return read(path, Intent).record or Intent()
