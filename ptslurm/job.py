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

    def __init__(self, storage_dir: Path):
        self.path = storage_dir / storage.STATUS
        try:
            self.data = storage.read_json(self.path)
        except (OSError, ValueError):
            self.data = {"attempts": []}
        self.data.setdefault("attempts", [])

    def start(self, **fields) -> dict:
        for old in self.data["attempts"]:
            if old.get("state") == "running":  # killed without a word: SIGKILL, node failure
                old.update(state="lost", ended=None)
        entry = {"attempt": len(self.data["attempts"]) + 1, "state": "running", "job_id": job_id(),
                 "submission": self.data.get("submission", 0),
                 "host": socket.gethostname(), "pid": os.getpid(), "started": _now(),
                 "restart_count": int(os.environ.get("SLURM_RESTART_COUNT", 0) or 0), **fields}
        self.data["attempts"].append(entry)
        self._save(entry)
        return entry

    def update(self, **fields) -> None:
        entry = self.data["attempts"][-1]
        entry.update(fields)
        self._save(entry)

    def count(self, cause: str) -> int:
        """Earlier attempts of this submission (``ptslurm resubmit`` starts a new one; this
        attempt excluded) that ended for ``cause``."""
        current = self.data.get("submission", 0)
        return sum(1 for a in self.data["attempts"][:-1]
                   if a.get("cause") == cause and a.get("submission", 0) == current)

    def _save(self, entry: dict) -> None:
        self.data.update(state=entry["state"], attempt=entry["attempt"], job_id=entry["job_id"],
                         updated=_now())
        storage.atomic_write_json(self.path, self.data)


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
    run's result. On a stop request or an error the attempt is recorded with its cause and,
    on SLURM, the job is requeued within the caps (``max_requeues`` per cause); then the
    exception propagates."""
    global _active_run, _active_record
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
    record = AttemptRecord(storage_dir)
    record.data["code_dir"] = str(Path(manifest["experiment"]["snapshot"]).parent)
    record.start()
    _active_record = record
    try:
        enter_snapshot(manifest, sweep_dir, index)
        run = _create_run(manifest, entry, storage_dir)
        _active_run = run
        route_logging()
        result = run()
        record.update(sacred_id=run._id, state="completed", ended=_now(), result=_jsonable(result))
        return result
    except BaseException as exc:
        sacred_id = getattr(_active_run, "_id", None)
        state, cause, action = decide(exc, record, manifest.get("resources", {}).get("max_requeues", 3))
        record.update(state=state, cause=cause, sacred_id=sacred_id, ended=_now(),
                      error=f"{type(exc).__name__}: {exc}", action=action,
                      traceback="".join(traceback.format_exception(exc)))
        if action == "requeue":
            from .executor import requeue

            requeue(job_id())
        raise
    finally:
        _active_run = _active_record = None


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


def classify(exc: BaseException) -> str:
    """Why the attempt ended, from SLURM's own record of the job (not from elapsed time):
    ``preempted`` (PreemptTime is set), ``requeued`` (someone ran scontrol requeue: the
    restart count moved on), ``cancelled``, ``timeout`` (the --signal before the time limit),
    ``terminated`` (SIGTERM from elsewhere), ``failed`` (an exception), ``interrupted``
    (a stop request outside SLURM)."""
    stopped = interrupt.should_stop() or isinstance(exc, KeyboardInterrupt)
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
    if info.get("JobState") == "CANCELLED":
        return "cancelled"
    if interrupt.received() == signal.SIGUSR2:
        return "timeout"
    return "terminated"


def decide(exc: BaseException, record: AttemptRecord, max_requeues: int) -> tp.Tuple[str, str, tp.Optional[str]]:
    """``(state, cause, action)`` for an attempt that ended with ``exc``; action is
    ``requeue`` (we ask SLURM) or None."""
    from .errors import SnapshotError

    if isinstance(exc, SnapshotError):  # running it again cannot help
        return "failed", "failed", None
    cause = classify(exc)
    if not on_slurm():  # nothing to requeue: "failed" or "interrupted" is final
        return cause, cause, None
    if cause == "cancelled":
        return "cancelled", cause, None
    if cause == "requeued":
        return "requeued", cause, None  # SLURM puts it back itself
    over_cap = record.count(cause) >= max_requeues
    # a job that ends by itself during a preemption's grace time is not requeued by SLURM
    # (it ends FAILED): requeue it like a timeout
    final = {"timeout": "timeout", "terminated": "timeout", "failed": "failed", "preempted": "preempted"}[cause]
    return (final, cause, None) if over_cap else ("requeued", cause, "requeue")


def _create_run(manifest: dict, entry: dict, storage_dir: Path):
    from sacred.observers import FileStorageObserver

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
    run.observers = [FileStorageObserver(str(storage_dir / storage.SACRED))] + others
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


