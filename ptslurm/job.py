"""What runs inside a job, under SLURM or locally: load the point from the sweep's manifest,
import the experiment from the code snapshot and run it with sacred, one attempt per start.

Resume state lives on disk, not in a pickle: every start reads the manifest and the storage
dir afresh, so a requeue, a node failure or a resubmission all take the same path.
"""
import copy
import datetime
import os
import socket
import sys
import traceback
import typing as tp
from pathlib import Path

from . import storage

ENV_STORAGE_DIR = "PTSLURM_STORAGE_DIR"
ENV_SWEEP_DIR = "PTSLURM_SWEEP_DIR"
ENV_POINT = "PTSLURM_POINT"


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
        entry = {"attempt": len(self.data["attempts"]) + 1, "state": "running", "job_id": job_id(),
                 "host": socket.gethostname(), "pid": os.getpid(), "started": _now(),
                 "restart_count": int(os.environ.get("SLURM_RESTART_COUNT", 0) or 0), **fields}
        self.data["attempts"].append(entry)
        self._save(entry)
        return entry

    def update(self, **fields) -> None:
        entry = self.data["attempts"][-1]
        entry.update(fields)
        self._save(entry)

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


def run_point(sweep_dir: tp.Union[str, Path], index: int) -> tp.Any:
    """Run one attempt of point ``index`` of the sweep in ``sweep_dir``; return the sacred
    run's result. Exceptions of the experiment are recorded, then re-raised."""
    sweep_dir = Path(sweep_dir)
    manifest = storage.read_manifest(sweep_dir)
    entry = manifest["points"][index]
    storage_dir = Path(entry["storage_dir"])
    storage_dir.mkdir(parents=True, exist_ok=True)
    os.environ[ENV_STORAGE_DIR] = str(storage_dir)
    os.environ[ENV_SWEEP_DIR] = str(sweep_dir)
    os.environ[ENV_POINT] = str(index)
    record = AttemptRecord(storage_dir)
    record.start()
    try:
        run = _create_run(manifest, entry, storage_dir)
        record.update(sacred_id=None)
        result = run()
        record.update(sacred_id=run._id, state="completed", ended=_now())
        return result
    except BaseException as exc:
        state = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        record.update(state=state, ended=_now(), error=f"{type(exc).__name__}: {exc}",
                      traceback="".join(traceback.format_exception(exc)))
        raise


def _create_run(manifest: dict, entry: dict, storage_dir: Path):
    from sacred.observers import FileStorageObserver

    from . import experiment

    snapshot = Path(manifest["experiment"]["snapshot"])
    _, ex = experiment.load(snapshot, module_name=manifest["experiment"]["module"])
    # the snapshot is not the repository; the submission's git state is recorded below
    ex.save_git_info = False
    updates = dict(entry["updates"])
    if manifest.get("storage_key"):
        updates[manifest["storage_key"]] = str(storage_dir)
    # config scopes shaped like the seed's allocate a dir under $STORAGE_ROOT while the config
    # is built: let them do it in a throw-away place; the storage dir comes from ptslurm
    with experiment.sandbox(ex, quiet=False):
        run = ex._create_run(config_updates=updates, named_configs=list(entry["named_configs"]))
    sacred_dir = os.path.realpath(storage_dir / storage.SACRED)
    # a script that adds its own FileStorageObserver on the same folder would record each
    # attempt twice: keep ours only
    run.observers = [o for o in run.observers if not (
        isinstance(o, FileStorageObserver) and os.path.realpath(o.basedir) == sacred_dir)]
    run.observers.append(FileStorageObserver(str(storage_dir / storage.SACRED)))
    git = manifest.get("git") or {}
    if git.get("commit"):
        run.experiment_info["repositories"] = [
            {"url": git.get("url"), "commit": git["commit"], "dirty": git.get("dirty")}]
    run.info["ptslurm"] = {"sweep": manifest["name"], "point": entry["index"], "job_id": job_id(),
                           "git": git}
    storage.atomic_write_json(storage_dir / storage.CONFIG, plain(run.config))
    return run


def main(argv: tp.Optional[tp.List[str]] = None) -> int:
    """``python -m ptslurm.job SWEEP_DIR INDEX``: the local backend's entry point."""
    argv = sys.argv[1:] if argv is None else argv
    import warnings

    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    if len(argv) != 2:
        print("usage: python -m ptslurm.job SWEEP_DIR INDEX", file=sys.stderr)
        return 2
    try:
        run_point(argv[0], int(argv[1]))
    except Exception:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
