"""What runs inside a job, under SLURM or locally: load the point from the sweep's manifest,
import the experiment from the code snapshot and run it with sacred, one attempt per start.

Resume state lives on disk, not in a pickle: every start reads the manifest and the storage
dir afresh, so a requeue, a node failure or a resubmission all take the same path.
"""
import copy
import datetime
import os
import signal
import socket
import sys
import threading
import traceback
import typing as tp
from pathlib import Path

from . import interrupt, storage

ENV_STORAGE_DIR = "PTSLURM_STORAGE_DIR"
ENV_SWEEP_DIR = "PTSLURM_SWEEP_DIR"
ENV_POINT = "PTSLURM_POINT"


_active_run = None
_active_record = None


def active_run():
    """The sacred Run this job is executing (None outside a ptslurm job)."""
    return _active_run


def get_storage_dir() -> tp.Optional[Path]:
    """The storage dir of the point this process runs (``$PTSLURM_STORAGE_DIR``), or None
    outside a ptslurm job."""
    value = os.environ.get(ENV_STORAGE_DIR)
    return Path(value) if value else None


def job_id() -> str:
    """``<array job>_<task>`` for an array task, the job id for a plain SLURM job,
    ``local-<pid>`` outside SLURM."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and task:
        return f"{array_job}_{task}"
    return os.environ.get("SLURM_JOB_ID") or f"local-{os.getpid()}"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class AttemptRecord:
    """The point's ``ptslurm_status.json``: latest state plus one entry per attempt,
    rewritten atomically at each change (one writer per point at a time)."""

    def __init__(self, storage_dir: Path, submission: int = 0):
        self.path = storage_dir / storage.STATUS
        self.storage_dir = storage_dir
        self._lock = threading.RLock()  # the heartbeat and the watchdog write from threads
        try:
            self.data = storage.read_json(self.path)
            if not isinstance(self.data, dict):
                raise ValueError("not a status record")
        except (OSError, ValueError):
            self.data = {"attempts": []}
        self.data.setdefault("attempts", [])
        self.data["submission"] = submission  # the command line's intent decides it

    def start(self, **fields) -> dict:
        with self._lock:
            for old in self.data["attempts"]:
                if old.get("state") == "running":  # killed without a word: SIGKILL, node failure
                    old.update(state="lost", ended=old.get("heartbeat"))
            entry = {"attempt": len(self.data["attempts"]) + 1, "state": "running", "job_id": job_id(),
                     "submission": self.data.get("submission", 0),
                     "host": socket.gethostname(), "pid": os.getpid(), "started": _now(), "heartbeat": _now(),
                     "restart_count": int(os.environ.get("SLURM_RESTART_COUNT", 0) or 0),
                     "progress_at_start": self.data.get("progress"),
                     "checkpoint_at_start": latest_checkpoint(self.storage_dir), **fields}
            self.data["attempts"].append(entry)
            self._save(entry)
            return entry

    def update(self, **fields) -> None:
        with self._lock:
            entry = self.data["attempts"][-1]
            if entry.get("final"):
                return  # already recorded as ended (the watchdog got there first)
            entry.update(fields)
            self._save(entry)

    def beat(self) -> None:
        self.update(heartbeat=_now())

    def count(self, cause: str) -> int:
        """Earlier attempts of this submission (``ptslurm resubmit`` starts a new one; this
        attempt excluded) that ended for ``cause``."""
        current = self.data.get("submission", 0)
        return sum(1 for a in self.data["attempts"][:-1]
                   if a.get("cause") == cause and a.get("submission", 0) == current)

    def made_progress(self) -> bool:
        """Whether this attempt got anywhere: reported progress or wrote a checkpoint."""
        entry = self.data["attempts"][-1]
        return (self.data.get("progress") != entry.get("progress_at_start")
                or latest_checkpoint(self.storage_dir) != entry.get("checkpoint_at_start"))

    def previous_failure(self) -> tp.Optional[dict]:
        """The attempt before this one when it failed in the same submission."""
        attempts = self.data["attempts"]
        if len(attempts) < 2:
            return None
        prev = attempts[-2]
        same = prev.get("submission", 0) == self.data.get("submission", 0)
        return prev if same and prev.get("cause") == "failed" else None

    RESERVE = ".ptslurm-reserve"  # space kept back so that a full disk can still be recorded
    RESERVE_BYTES = 256 * 1024

    def reserve(self) -> None:
        """Hold some disk space in the storage dir (given back to record the end of an
        attempt that filled the disk)."""
        try:
            with open(self.storage_dir / self.RESERVE, "wb") as fh:
                fh.write(b"\0" * self.RESERVE_BYTES)
        except OSError:
            pass

    def _save(self, entry: dict) -> None:
        import errno

        self.data.update(state=entry["state"], attempt=entry["attempt"], job_id=entry["job_id"],
                         updated=_now())
        try:
            storage.atomic_write_json(self.path, self.data)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            try:  # the disk is full: give back the reserve and write once more
                os.unlink(self.storage_dir / self.RESERVE)
            except OSError:
                raise exc from None
            storage.atomic_write_json(self.path, self.data)


def latest_checkpoint(storage_dir: Path) -> tp.Optional[tp.List]:
    """``[name, mtime_ns]`` of the newest file under ``<storage_dir>/checkpoints`` (any code's
    own checkpoints count), None when there is none."""
    best = None
    try:
        for entry in os.scandir(Path(storage_dir) / storage.CHECKPOINTS):
            if entry.is_file():
                stamp = entry.stat().st_mtime_ns
                if best is None or stamp > best[1]:
                    best = [entry.name, stamp]
    except OSError:
        return None
    return best


def fingerprint(exc: BaseException) -> str:
    """What identifies a failure across attempts: the exception type and message and the
    frames it passed (file name and line), not addresses or times."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = ";".join(f"{os.path.basename(f.filename)}:{f.lineno}" for f in frames)
    return f"{type(exc).__name__}: {str(exc)[:500]} @ {where}"


def _disk_full(exc: BaseException) -> bool:
    import errno

    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def read_intent(storage_dir: Path) -> dict:
    """What the command line asked of this point (``ptslurm_intent.json``, written only by
    the command line): ``submission`` number and ``cancelled``."""
    try:
        data = storage.read_json(Path(storage_dir) / storage.INTENT)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def plain(value: tp.Any) -> tp.Any:
    """A mutable, JSON-friendly deep copy of a (read-only) sacred config."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return copy.copy(value)


def dump_config(config: tp.Mapping, path: tp.Union[str, Path]) -> None:
    """Write a (possibly read-only) sacred config as JSON, atomically. Copies first: sacred
    hands captured functions a read-only config, which padertorch's dump would modify."""
    storage.atomic_write_json(Path(path), plain(config))


def run_point(sweep_dir: tp.Union[str, Path], index: int) -> tp.Any:
    """Run one attempt of point ``index`` of the sweep in ``sweep_dir``; return the sacred
    run's result. The attempt holds the storage dir's lease while it runs. On a stop request
    or an error the attempt is recorded with its cause and, on SLURM, the job is requeued
    within the retry policy; then the exception propagates. A point whose cancel intent is
    set does not run. Raises LeaseHeld when another live attempt holds the storage dir."""
    global _active_run, _active_record
    from . import lease as leases

    sweep_dir = Path(sweep_dir)
    manifest = storage.read_manifest(sweep_dir)
    entry = manifest["points"][index]
    storage_dir = Path(entry["storage_dir"])
    storage_dir.mkdir(parents=True, exist_ok=True)
    os.environ[ENV_STORAGE_DIR] = str(storage_dir)
    os.environ[ENV_SWEEP_DIR] = str(sweep_dir)
    os.environ[ENV_POINT] = str(index)
    interrupt.reset()
    interrupt.install()  # a flag only; replaces submitit's checkpoint-in-the-handler
    held = leases.acquire(storage_dir, job_id())
    try:
        intent = read_intent(storage_dir)
        record = AttemptRecord(storage_dir, submission=int(intent.get("submission", 0) or 0))
        record.data["code_dir"] = str(Path(manifest["experiment"]["snapshot"]).parent)
        record.reserve()
        record.start()
        held.callbacks.append(record.beat)
        if intent.get("cancelled"):  # cancelled while queued, or requeued after a cancel
            record.update(state="cancelled", cause="cancelled", ended=_now(), final=True)
            return None
        _active_record = record
        max_requeues = manifest.get("resources", {}).get("max_requeues", 3)
        interrupt.on_unheeded(lambda: _unheeded(record, max_requeues, held))
        return _attempt(manifest, entry, sweep_dir, index, storage_dir, record, max_requeues)
    finally:
        interrupt.on_unheeded(None)
        try:
            os.unlink(storage_dir / AttemptRecord.RESERVE)
        except OSError:
            pass
        held.release()
        _active_run = _active_record = None


def _attempt(manifest, entry, sweep_dir, index, storage_dir, record, max_requeues):
    global _active_run
    try:
        enter_snapshot(manifest, sweep_dir, index)
        run = _create_run(manifest, entry, storage_dir, record)
        _active_run = run
        route_logging()
        result = run()
        record.update(sacred_id=run._id, state="completed", ended=_now(), result=_jsonable(result), final=True)
        return result
    except BaseException as exc:
        sacred_id = getattr(_active_run, "_id", None)
        state, cause, action = decide(exc, record, max_requeues)
        record.update(state=state, cause=cause, sacred_id=sacred_id, ended=_now(),
                      error=f"{type(exc).__name__}: {exc}", action=action, fingerprint=fingerprint(exc),
                      traceback="".join(traceback.format_exception(exc)), final=True)
        if action == "requeue":
            from .executor import requeue

            requeue(job_id())
        raise


def _unheeded(record: "AttemptRecord", max_requeues: int, held) -> None:
    """The watchdog's action for code that did not ask ``should_stop()``: record the
    attempt, requeue it within the caps and end the process; the next attempt resumes from
    the code's own latest checkpoint."""
    exc = interrupt.Interrupted("stop request not heeded")
    state, cause, action = decide(exc, record, max_requeues)
    record.update(state=state, cause=cause, ended=_now(), action=action, unheeded=True, final=True,
                  error=f"stop request ({cause}) not heeded by the running code: the process was ended; "
                        f"the next attempt resumes from the code's own latest checkpoint")
    if action == "requeue":
        from .executor import requeue

        try:
            requeue(job_id())
        except Exception:  # noqa: BLE001 - recorded; the scheduler ends the job anyway
            pass
    held.release()
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
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                name = streams.get(id(handler.stream))
                if name:
                    handler.setStream(_CurrentStream(name))


def enter_snapshot(manifest: dict, sweep_dir: Path, index: int) -> None:
    """Check that the code snapshot is what was submitted, then work in it: its copy of the
    experiment's folder is the working directory and nothing of the user's live tree is
    importable. Raises SnapshotError (never retried) when a file changed."""
    from . import snapshot

    info = manifest["experiment"]
    code = sweep_dir / storage.CODE
    expected = (manifest.get("code") or {}).get("sha256")
    if expected:
        snapshot.verify(code, expected, f"to run the new code: `ptslurm resubmit {sweep_dir} "
                                        f"--points {index} --refresh-code`")
    if info.get("workdir"):
        os.chdir(info["workdir"])
    if info.get("source_root"):
        snapshot.isolate(Path(info["source_root"]), code)


def _jsonable(value: tp.Any) -> tp.Any:
    import json

    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


def report_progress(iteration: int, epoch: tp.Optional[int] = None, resumed: bool = False) -> None:
    """Record training progress for ``ptslurm status`` (cheap; call at checkpoints);
    ``resumed`` marks the point where this attempt continued from a checkpoint."""
    if _active_record is not None:
        progress = {"iteration": iteration, "epoch": epoch, "time": _now()}
        _active_record.data["progress"] = progress
        if resumed:
            _active_record.update(resumed_from=progress)
        else:
            _active_record.update()


def on_slurm() -> bool:
    return bool(os.environ.get("SLURM_JOB_ID")) and os.environ.get("SUBMITIT_EXECUTOR") == "slurm"


def classify(exc: BaseException, storage_dir: tp.Optional[Path] = None) -> str:
    """Why the attempt ended, from the command line's intent and SLURM's own record of the
    job (not from elapsed time): ``cancelled`` (``ptslurm cancel``, or scancel: SIGTERM first
    and the job CANCELLED or COMPLETING), ``preempted`` (PreemptTime is set), ``requeued``
    (someone ran scontrol requeue: the restart count moved on), ``timeout`` (the --signal
    before the time limit), ``terminated`` (SIGTERM from elsewhere), ``failed`` (an
    exception), ``interrupted`` (a stop request outside SLURM)."""
    stopped = interrupt.received() is not None or isinstance(exc, KeyboardInterrupt)
    if stopped and storage_dir is not None and read_intent(storage_dir).get("cancelled"):
        return "cancelled"
    if not on_slurm():
        return "interrupted" if stopped else "failed"
    if not stopped:
        return "failed"
    from .executor import job_info

    info = job_info(os.environ["SLURM_JOB_ID"])
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


def decide(exc: BaseException, record: AttemptRecord, max_requeues: int) -> tp.Tuple[str, str, tp.Optional[str]]:
    """``(state, cause, action)`` for an attempt that ended with ``exc``; action is
    ``requeue`` (we ask SLURM) or None.

    Retry policy: stops (time limit, preemption) are requeued up to ``max_requeues`` each.
    A failure is requeued only when the attempt made progress (reported progress or a new
    checkpoint) or failed differently from the attempt before it; the same failure without
    progress (a bug, a missing module) ends the point as failed at once."""
    from .errors import SnapshotError

    if isinstance(exc, SnapshotError):  # running it again cannot help
        return "failed", "failed", None
    if _disk_full(exc):  # neither can running it again on a full disk: a person must make room
        return "failed", "no_space", None
    cause = classify(exc, getattr(record, "storage_dir", None))
    if cause == "cancelled":
        return "cancelled", cause, None
    if not on_slurm():  # nothing to requeue: "failed" or "interrupted" is final
        return cause, cause, None
    if cause == "requeued":
        return "requeued", cause, None  # SLURM puts it back itself
    if cause == "failed":
        previous = record.previous_failure()
        differs = previous is not None and previous.get("fingerprint") != fingerprint(exc)
        if not (record.made_progress() or differs):
            return "failed", cause, None
    over_cap = record.count(cause) >= max_requeues
    # a job that ends by itself during a preemption's grace time is not requeued by SLURM
    # (it ends FAILED): requeue it like a timeout
    final = {"timeout": "timeout", "terminated": "timeout", "failed": "failed", "preempted": "preempted"}[cause]
    return (final, cause, None) if over_cap else ("requeued", cause, "requeue")


def _create_run(manifest: dict, entry: dict, storage_dir: Path, record: tp.Optional[AttemptRecord] = None):
    from sacred.observers import FileStorageObserver

    class AttemptObserver(FileStorageObserver):
        """Records the run id in the attempt the moment sacred starts the run, so that a
        killed attempt keeps its metrics and logs."""

        def started_event(self, *args, **kwargs):
            run_id = super().started_event(*args, **kwargs)
            if record is not None:
                record.update(sacred_id=run_id)
            return run_id

    from . import experiment

    snapshot = Path(manifest["experiment"]["snapshot"])
    _, ex = experiment.load(snapshot, module_name=manifest["experiment"]["module"])
    # the snapshot is not the repository; the submission's git state is recorded below
    ex.save_git_info = False
    updates = dict(entry["updates"])
    if entry.get("seed") is not None and entry.get("seed_source", "ptslurm") == "ptslurm":
        updates.setdefault("seed", entry["seed"])
    if manifest.get("storage_key"):
        updates[manifest["storage_key"]] = str(storage_dir)
    # config scopes shaped like the seed's allocate a dir under $STORAGE_ROOT while the config
    # is built: let them do it in a throw-away place; the storage dir comes from ptslurm
    with experiment.sandbox(ex, quiet=False):
        run = ex._create_run(config_updates=updates, named_configs=list(entry["named_configs"]))
    sacred_dir = os.path.realpath(storage_dir / storage.SACRED)
    # a script that adds its own FileStorageObserver on the same folder would record each
    # attempt twice: keep ours only
    # ours goes first: the first observer decides the run id, so attempt n is sacred/<n>
    # whatever other observers the experiment adds (they get the same id)
    others = [o for o in run.observers
              if not (isinstance(o, FileStorageObserver) and os.path.realpath(o.basedir) == sacred_dir)]
    for observer in others:
        _own_ids(observer)
    run.observers = [AttemptObserver(str(storage_dir / storage.SACRED))] + others
    git = manifest.get("git") or {}
    if git.get("commit"):
        run.experiment_info["repositories"] = [
            {"url": git.get("url"), "commit": git["commit"], "dirty": git.get("dirty")}]
    # sacred's default "fd" capture goes through a tee process whose last lines can miss
    # cout.txt when the run ends; "sys" capture is exact for Python output, and the job's
    # whole stdout/stderr is in the scheduler's log anyway
    run.capture_mode = os.environ.get("PTSLURM_CAPTURE_MODE", "sys")
    run.info["ptslurm"] = {"sweep": manifest["name"], "point": entry["index"], "job_id": job_id(),
                           "git": git}
    dump_config(run.config, storage_dir / storage.CONFIG)
    return run


def _own_ids(observer) -> None:
    """sacred hands every later observer the id the first one chose; another observer's
    folder (shared by all points of a sweep) may hold that id already. Let it choose its
    own instead; ours has decided the run's id."""
    started = getattr(observer, "started_event", None)
    if started is None:
        return

    def started_event(*args, **kwargs):
        kwargs["_id"] = None
        return started(*args, **kwargs)

    observer.started_event = started_event


def should_stop() -> bool:
    """True once SLURM asked this job to stop (time limit, preemption, requeue): save a
    checkpoint and return or raise ``ptslurm.Interrupted`` soon. For loops without ptslurm's
    Trainer."""
    return interrupt.should_stop()


def main(argv: tp.Optional[tp.List[str]] = None) -> int:
    """``python -m ptslurm.jobmain SWEEP_DIR INDEX``: the local backend's entry point."""
    argv = sys.argv[1:] if argv is None else argv
    import warnings

    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    if len(argv) != 2:
        print("usage: python -m ptslurm.jobmain SWEEP_DIR INDEX", file=sys.stderr)
        return 2
    try:
        run_point(argv[0], int(argv[1]))
    except Exception:
        traceback.print_exc()
        return 1
    return 0


