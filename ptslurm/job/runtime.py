"""What code running inside a ptslurm job may ask (like submitit's ``JobEnvironment``): the
point's storage dir, the job id, the sacred run being executed, whether the scheduler asked
the job to stop, and a way to report progress. Light: no torch, no sacred, no job machinery;
``ptslurm.job.point`` fills it in when an attempt starts and empties it when it ends.
"""
import os
import typing as tp
from pathlib import Path

from . import interrupt
from ..records.recordkit import now

ENV_STORAGE_DIR = "PTSLURM_STORAGE_DIR"
ENV_SWEEP_DIR = "PTSLURM_SWEEP_DIR"
ENV_POINT = "PTSLURM_POINT"


class _Reporter(tp.Protocol):
    def report(self, progress: tp.Dict[str, tp.Any], resumed: bool) -> None: ...


_run: tp.Any = None
_reporter: tp.Optional[_Reporter] = None
_progress: tp.Dict[str, tp.Any] = {}  # the latest report_progress of this attempt


def activate(run: tp.Any = None, reporter: tp.Optional[_Reporter] = None) -> None:
    """Called by the job: the sacred run now executing and who records progress (None, None
    when the attempt ends)."""
    global _run, _reporter
    if reporter is not _reporter:
        _progress.clear()
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


def report_progress(iteration: int, epoch: tp.Optional[int] = None, resumed: bool = False,
                    total: tp.Optional[tp.Mapping[str, int]] = None) -> None:
    """Record training progress for ``ptslurm status`` (cheap; call at checkpoints or
    summaries); ``resumed`` marks the point where this attempt continued from a checkpoint;
    ``total`` (``{"iteration": 10000}`` or ``{"epoch": 50}``) lets status show how far along
    it is and when it will end. Does nothing outside a ptslurm job."""
    if _reporter is not None:
        progress: tp.Dict[str, tp.Any] = {"iteration": iteration, "epoch": epoch, "time": now()}
        if total:
            progress["total"] = dict(total)
        _progress.clear()
        _progress.update(progress)
        _reporter.report(progress, resumed)


def budget_done() -> bool:
    """Whether this attempt's latest ``report_progress`` reached its ``total`` (an iteration
    or epoch count at or beyond it): the code finished its training."""
    total = _progress.get("total") or {}
    return any(isinstance(_progress.get(unit), int) and isinstance(limit, int) and _progress[unit] >= limit
               for unit, limit in total.items())


def should_stop() -> bool:
    """True once SLURM asked this job to stop (time limit, preemption, requeue): save a
    checkpoint and return (or raise ``ptslurm.Interrupted``) soon. For loops without
    ptslurm's Trainer. Once it was True, a main function that returns ends a stopped
    attempt, to be resumed, not a completed one, unless the code reported the end of its
    budget (``report_progress(n, total={"iteration": n})``) before returning."""
    return interrupt.should_stop()


def dump_config(config: tp.Mapping[str, tp.Any], path: tp.Union[str, Path]) -> None:
    """Write a (possibly read-only) sacred config as JSON, atomically. Copies first: sacred
    hands captured functions a read-only config, which padertorch's dump would modify."""
    from ..records import storage, writes

    writes.atomic_write_json(Path(path), writes.jsonable(config), mode=storage.result_mode())


# ----------------------------------------------------------------------------- ranks


class Distributed(tp.NamedTuple):
    """Where this process stands in a point that spans several ranks (one srun task each).
    A point of one rank has ``world_size`` 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    node: int = 0
    nodes: int = 1
    master_addr: str = "127.0.0.1"
    master_port: int = 29500

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes checkpoints, the status file and the sacred run."""
        return self.rank == 0


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: ``gpu[07-09,12],cpu1`` -> ``gpu07``."""
    head = nodelist.split(",")[0] if "[" not in nodelist.split(",")[0] else nodelist
    name, bracket, rest = head.partition("[")
    if not bracket:
        return name.strip()
    first = rest.split(",")[0].split("-")[0].rstrip("]")
    return f"{name}{first}"


def port_for(job_id: str) -> int:
    """A rendezvous port derived from the job id (unique per array task), in 20000-39999, so
    that the points of a sweep that share a node do not collide."""
    digits = "".join(c for c in str(job_id) if c.isdigit()) or "0"
    return 20000 + int(digits) % 20000


def distributed(environ: tp.Optional[tp.Mapping[str, str]] = None) -> Distributed:
    """This process's rank, world size, local rank, node and rendezvous address, from
    SLURM's environment (``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``,
    ``SLURM_NODEID``, ``SLURM_JOB_NUM_NODES``, the node list and the job id). Outside SLURM,
    or for a one-task job, a single rank. For code that does not use ptslurm's Trainer::

        d = ptslurm.distributed()
        if d.world_size > 1:
            ptslurm.init_process_group()
    """
    env = os.environ if environ is None else environ
    world = int(env.get("SLURM_NTASKS") or env.get("SLURM_NPROCS") or 1)
    if world <= 1 or "SLURM_PROCID" not in env:
        return Distributed()
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST") or ""
    return Distributed(rank=int(env["SLURM_PROCID"]), world_size=world, local_rank=int(env.get("SLURM_LOCALID", 0)),
                       node=int(env.get("SLURM_NODEID", 0)), nodes=int(env.get("SLURM_JOB_NUM_NODES")
                                                                       or env.get("SLURM_NNODES") or 1),
                       master_addr=first_host(nodelist) if nodelist else "127.0.0.1",
                       master_port=port_for(env.get("SLURM_JOB_ID", "0")))


def pin_gpu(d: Distributed) -> None:
    """Give each rank of a node its own GPU: SLURM shows every task all of the node's GPUs;
    rank ``local_rank`` keeps the ``local_rank``-th of ``CUDA_VISIBLE_DEVICES`` (as ``cuda:0``).
    Call before torch initialises CUDA; nothing happens for one rank or without GPUs."""
    visible = [v for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if d.world_size > 1 and len(visible) > 1 and d.local_rank < len(visible):
        os.environ["CUDA_VISIBLE_DEVICES"] = visible[d.local_rank]


def init_process_group(backend: tp.Optional[str] = None, timeout_s: float = 300) -> Distributed:
    """Join this point's ranks in ``torch.distributed`` (NCCL on GPUs, gloo on CPUs), with the
    variables torch's ``env://`` expects; nothing to do for one rank or when done already."""
    d = distributed()
    if d.world_size <= 1:
        return d
    import datetime as _datetime

    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return d
    os.environ.update(RANK=str(d.rank), WORLD_SIZE=str(d.world_size), LOCAL_RANK=str(d.local_rank),
                      MASTER_ADDR=d.master_addr, MASTER_PORT=str(d.master_port))
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(0)  # pin_gpu left this rank one GPU
    dist.init_process_group(backend, init_method="env://", rank=d.rank, world_size=d.world_size,
                            timeout=_datetime.timedelta(seconds=timeout_s))
    return d
