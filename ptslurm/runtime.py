"""What code running inside a ptslurm job may ask (like submitit's ``JobEnvironment``): the
point's storage dir, the job id, the sacred run being executed, whether the scheduler asked
the job to stop, and a way to report progress. Light: no torch, no sacred, no job machinery;
``ptslurm.job`` fills it in when an attempt starts and empties it when it ends.
"""
import datetime
import os
import typing as tp
from pathlib import Path

from . import interrupt

ENV_STORAGE_DIR = "PTSLURM_STORAGE_DIR"
ENV_SWEEP_DIR = "PTSLURM_SWEEP_DIR"
ENV_POINT = "PTSLURM_POINT"


class _Reporter(tp.Protocol):
    def report(self, progress: tp.Dict[str, tp.Any], resumed: bool) -> None: ...


_run: tp.Any = None
_reporter: tp.Optional[_Reporter] = None


def activate(run: tp.Any = None, reporter: tp.Optional[_Reporter] = None) -> None:
    """Called by the job: the sacred run now executing and who records progress (None, None
    when the attempt ends)."""
    global _run, _reporter
    _run, _reporter = run, reporter


def active_run() -> tp.Any:
    """The sacred Run this job is executing (None outside a ptslurm job)."""
    return _run


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


def on_slurm() -> bool:
    """Whether this process is a ptslurm job that SLURM runs (submitit's executor is slurm)."""
    return bool(os.environ.get("SLURM_JOB_ID")) and os.environ.get("SUBMITIT_EXECUTOR") == "slurm"


def now() -> str:
    """The time as the records hold it: ISO 8601, UTC, seconds."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def report_progress(iteration: int, epoch: tp.Optional[int] = None, resumed: bool = False) -> None:
    """Record training progress for ``ptslurm status`` (cheap; call at checkpoints);
    ``resumed`` marks the point where this attempt continued from a checkpoint. Does nothing
    outside a ptslurm job."""
    if _reporter is not None:
        _reporter.report({"iteration": iteration, "epoch": epoch, "time": now()}, resumed)


def should_stop() -> bool:
    """True once SLURM asked this job to stop (time limit, preemption, requeue): save a
    checkpoint and return or raise ``ptslurm.Interrupted`` soon. For loops without ptslurm's
    Trainer."""
    return interrupt.should_stop()


def dump_config(config: tp.Mapping[str, tp.Any], path: tp.Union[str, Path]) -> None:
    """Write a (possibly read-only) sacred config as JSON, atomically. Copies first: sacred
    hands captured functions a read-only config, which padertorch's dump would modify."""
    from . import storage

    storage.atomic_write_json(Path(path), storage.jsonable(config))
