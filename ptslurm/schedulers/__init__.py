"""Who runs a sweep's jobs, behind one interface for every question and order outside the
submission itself (``backends`` submits): is the controller there, which jobs are queued and
how, how did they end, cancel, hold, release, requeue, what does the scheduler say of the
job we run in. ``Slurm`` answers with SLURM's commands (``commands``); ``Local`` is this
machine's own processes, a scheduler without a queue (nothing waits, is held or requeued;
a stop is a signal to the point's process group); the fake in ``backends`` answers from
memory, so the rules that ask run in the fast tier.

Code outside the backends takes a scheduler from ``of(executor)`` (a sweep's) or ``in_job()``
(the job's own) and asks it; it never asks which one it is.
"""
import contextlib
import os
import time
import typing as tp

from . import commands
from ..errors import UsageError


class Scheduler(tp.Protocol):
    """Every question and order to a scheduler but submitting (``backends.Submitter``)."""

    name: str
    #: jobs wait in a queue the scheduler keeps, and it requeues them (SLURM, the fake);
    #: False: the points are processes of the machine that runs the sweep
    keeps_queue: bool

    def slurm_available(self) -> bool: ...

    def queue_states(self, job_ids: tp.Iterable[str]) -> tp.Dict[str, str]: ...

    def accounting_history(self, job_ids: tp.Iterable[str]) -> tp.Dict[str, tp.List[tp.Tuple[str, str]]]: ...

    def cancel(self, job_ids: tp.Iterable[str]) -> None: ...

    def stop(self, job_ids: tp.Iterable[str], attempts: tp.Sequence[tp.Any], grace_s: float) -> None: ...

    def hold(self, job_ids: tp.Sequence[str], release: bool = False) -> None: ...

    def requeue(self, job_id: str) -> None: ...

    def job_info(self, job_id: str) -> tp.Dict[str, str]: ...

    def partition_info(self, partition: tp.Optional[str]) -> tp.Dict[str, str]: ...

    def nodes(self, partition: tp.Optional[str]) -> tp.List[tp.Tuple[int, int, str]]: ...

    def prefetch_submit_limit(self) -> None: ...


class Slurm:
    """SLURM, through its commands."""

    name = "slurm"
    keeps_queue = True

    def slurm_available(self) -> bool:
        return commands.slurm_available()

    def queue_states(self, job_ids: tp.Iterable[str]) -> tp.Dict[str, str]:
        return commands.queue_states(list(job_ids))

    def accounting_history(self, job_ids: tp.Iterable[str]) -> tp.Dict[str, tp.List[tp.Tuple[str, str]]]:
        return commands.accounting_history(job_ids)

    def cancel(self, job_ids: tp.Iterable[str]) -> None:
        commands.cancel(job_ids)

    def stop(self, job_ids: tp.Iterable[str], attempts: tp.Sequence[tp.Any], grace_s: float) -> None:
        """scancel (none without jobs): SLURM signals the jobs' processes, then kills them
        after its KillWait."""
        self.cancel(job_ids)

    def hold(self, job_ids: tp.Sequence[str], release: bool = False) -> None:
        commands.hold(job_ids, release=release)

    def requeue(self, job_id: str) -> None:
        commands.requeue(job_id)

    def job_info(self, job_id: str) -> tp.Dict[str, str]:
        return commands.job_info(job_id)

    def partition_info(self, partition: tp.Optional[str]) -> tp.Dict[str, str]:
        """``scontrol show partition``'s fields ({} when it does not say)."""
        return commands.partition_info(partition)

    def nodes(self, partition: tp.Optional[str]) -> tp.List[tp.Tuple[int, int, str]]:
        """(CPUs, memory in MB, GRES) of each node of ``partition`` (None: the default one)."""
        return commands.nodes(partition)

    def prefetch_submit_limit(self) -> None:
        """Start asking the accounting for the submit limit, to be read by the submission."""
        commands.prefetch_submit_limit()


class Local:
    """This machine's processes: no controller to ask, no queue; a stop signals the running
    attempts' process groups."""

    name = "local"
    keeps_queue = False

    def slurm_available(self) -> bool:
        return False

    def queue_states(self, job_ids: tp.Iterable[str]) -> tp.Dict[str, str]:
        return {}

    def accounting_history(self, job_ids: tp.Iterable[str]) -> tp.Dict[str, tp.List[tp.Tuple[str, str]]]:
        return {}

    def cancel(self, job_ids: tp.Iterable[str]) -> None:
        pass  # no job outlives its process here: ``stop`` ends the processes

    def stop(self, job_ids: tp.Iterable[str], attempts: tp.Sequence[tp.Any], grace_s: float) -> None:
        stop_local([a for a in attempts if a is not None], grace_s)

    def hold(self, job_ids: tp.Sequence[str], release: bool = False) -> None:
        raise UsageError("the sweep runs locally: hold and release are SLURM's; `ptslurm cancel` stops points")

    def requeue(self, job_id: str) -> None:
        raise UsageError("a local point is not requeued: `ptslurm resubmit` runs it again")

    def job_info(self, job_id: str) -> tp.Dict[str, str]:
        return {}

    def partition_info(self, partition: tp.Optional[str]) -> tp.Dict[str, str]:
        return {}

    def nodes(self, partition: tp.Optional[str]) -> tp.List[tp.Tuple[int, int, str]]:
        return []

    def prefetch_submit_limit(self) -> None:
        pass


LOCAL = Local()
_SLURM: tp.List[Scheduler] = [Slurm()]  # the last one answers for SLURM (``standing_in``)


def slurm() -> Scheduler:
    """SLURM's scheduler (or what stands in for it: ``standing_in``)."""
    return _SLURM[-1]


def of(executor: str) -> Scheduler:
    """The scheduler of a sweep whose manifest says ``executor`` ("slurm" or "local")."""
    return slurm() if executor == "slurm" else LOCAL  # (records.Executor is a str)


def in_job() -> Scheduler:
    """The scheduler this process runs under: SLURM inside a SLURM job, else this machine."""
    return slurm() if os.environ.get("SLURM_JOB_ID") else LOCAL


def here() -> tp.Tuple[str, str]:
    """Whether SLURM is here: ``("none", "")`` (no SLURM, or no cluster configured), ``("up",
    "")`` or ``("down", what scontrol or slurm.conf says)``: ``commands.slurm_here``."""
    return commands.slurm_here()


def choose(requested: str, dry_run: bool = False) -> str:
    """The scheduler a new sweep runs on, ``slurm`` or ``local``, for ``--executor
    REQUESTED`` (auto: SLURM when its controller answers here); a dry run may show a SLURM
    batch script on a machine without a controller (a laptop)."""
    if requested not in ("auto", "slurm", "local"):
        raise UsageError(f"unknown executor {requested!r}; use slurm, local or auto")
    if requested == "auto":
        state, said = here()
        if state == "down":
            raise UsageError(f"SLURM's commands are installed but its controller does not answer ({said}); "
                             f"nothing was created: retry when slurmctld is back, or run on this machine with "
                             f"--executor local")
        return "slurm" if state == "up" else "local"
    if requested == "slurm" and not dry_run and not slurm().slurm_available():
        raise UsageError("--executor slurm: no SLURM controller answers `scontrol ping`; "
                         "run on a login node or use --executor local")
    return requested


@contextlib.contextmanager
def standing_in(scheduler: Scheduler) -> tp.Iterator[Scheduler]:
    """Within the block ``scheduler`` (a fake's) answers every question and order meant for
    SLURM: the job side's rules (requeue, how a stop came, the lease) run against it."""
    _SLURM.append(scheduler)
    try:
        yield scheduler
    finally:
        _SLURM.pop()


def stop_groups(pids: tp.Sequence[int], grace_s: float) -> None:
    """SIGTERM the process groups led by ``pids``, SIGKILL those still there after ``grace_s``."""
    import signal

    def signal_(pid: int, sig: int) -> None:
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:  # not a group leader (`ptslurm run` in a shell): the process
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        except PermissionError:
            pass

    def alive(pid: int) -> bool:
        """A process of the group ``pid`` leads still runs (a zombie, ended and not reaped,
        does not): a worker that ignored SIGTERM keeps the group alive after its leader
        ended. ``pid`` leading no group (`ptslurm run` in a shell): the process itself."""
        try:
            os.killpg(pid, 0)
            group = True
        except ProcessLookupError:
            group = False
        except PermissionError:
            return False
        try:
            entries = os.listdir("/proc")
        except OSError:  # no /proc: what the signal said
            return group or _exists(pid)
        for entry in entries:
            if not entry.isdigit() or (not group and int(entry) != pid):
                continue
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    state, _, pgrp = fh.read().rpartition(") ")[2].split()[:3]
            except (OSError, ValueError):
                continue
            if state != "Z" and (int(pgrp) == pid or not group):
                return True
        return False

    for pid in pids:
        signal_(pid, signal.SIGTERM)
    deadline = time.time() + grace_s
    while time.time() < deadline and any(alive(p) for p in pids):
        time.sleep(0.2)
    for pid in pids:
        if alive(pid):
            signal_(pid, signal.SIGKILL)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def stop_local(attempts: tp.Sequence[tp.Any], grace_s: float) -> None:
    """Stop running local attempts (``records.Attempt``: host and pid; each leads its
    process group)."""
    import socket

    here = socket.gethostname()
    stop_groups([int(a.pid) for a in attempts if a.host == here and a.pid], grace_s)
