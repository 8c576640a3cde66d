"""Several points in one job (``--points-per-job N``): the job's process starts each point as
a process of its own (``python -m ptslurm.job SWEEP INDEX``, the path a local point
takes), each with its own storage dir, lease, sacred run, attempt records and log, and shares
the allocation between them:

- GPUs round-robin: point k of the job sees the (k mod G)-th of the job's GPUs as its only
  ``CUDA_VISIBLE_DEVICES`` (several points per GPU when N exceeds G);
- CPUs split evenly: ``OMP_NUM_THREADS`` (and MKL's) is the job's CPUs divided by N (at least 1),
  and each point is pinned to its own slice of the CPUs the job may use, when it may use at
  least N and exactly as many as SLURM allocated (else threads only);
- memory is shared (one allocation).

A stop (time limit, preemption, ``scontrol requeue``) reaches every point's process (SLURM
signals the job step's processes); each stops at its own step boundary or by the watchdog and
records its attempt without requeueing; when the last point has ended, the job is requeued
once if any point asked for it. On the next start only the points that have not ended run
(those that completed, failed or were cancelled stay so). A cancel of one point
(``ptslurm cancel --points``) is seen here: that point's process gets SIGTERM (SIGKILL after a
grace period) and its siblings go on.
"""
import os
import sys
import time
import typing as tp
from pathlib import Path

from . import interrupt
from .. import programs, records, schedulers
from ..schedulers import slurmtext
from ..records import manifests, storage
from ..records import Manifest, PointEntry, State, read_intent, read_status
from .runtime import job_id, on_slurm

ENV_PACK = "PTSLURM_PACK"  # set in a packed point's process: "<job id>:<points in the job>"
ENV_PACK_PARENT = "PTSLURM_PACK_PARENT"  # the pid of the job's process that started the point
CANCEL_GRACE_S = 15.0
START_GRACE_S = 60.0  # a cancelled point that has not recorded its start by then is stopped anyway
POLL_S = 0.5


class Share(tp.NamedTuple):
    """What one point of a job gets of the allocation."""

    gpu: tp.Optional[str]  # its CUDA_VISIBLE_DEVICES (None: the job has no GPU)
    threads: int  # OMP_NUM_THREADS / MKL_NUM_THREADS
    cpus: tp.Tuple[int, ...]  # CPUs it is pinned to (empty: not pinned)


def share(n: int, gpus: tp.Sequence[str], cpus: tp.Sequence[int], allocated: tp.Optional[int]) -> tp.List[Share]:
    """How ``n`` points share a job's ``gpus`` (ids as CUDA_VISIBLE_DEVICES lists them), the
    ``cpus`` it may run on and the number of CPUs SLURM ``allocated`` (None: all of ``cpus``)."""
    total = allocated if allocated is not None else len(cpus)
    threads = max(1, total // n) if total else 1
    pin = len(cpus) >= n and (allocated is None or allocated == len(cpus))
    out = []
    for k in range(n):
        mine = tuple(cpus[k * len(cpus) // n:(k + 1) * len(cpus) // n]) if pin else ()
        out.append(Share(gpus[k % len(gpus)] if gpus else None, threads, mine))
    return out


def allocation() -> tp.Tuple[tp.List[str], tp.List[int], tp.Optional[int]]:
    """This job's GPUs, the CPUs it may run on, and how many CPUs SLURM allocated (None
    outside SLURM)."""
    gpus = [g.strip() for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = list(range(os.cpu_count() or 1))
    allocated = None
    for name in ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"):
        if os.environ.get(name, "").isdigit() and on_slurm():
            allocated = int(os.environ[name])
            break
    return gpus, cpus, allocated


def ended(entry: PointEntry) -> bool:
    """Whether a point of a (re)started job has nothing left to run in this submission: it
    completed, failed, was cancelled or given up on. A point stopped for a requeue, or whose
    attempt was killed without a word, runs again (resuming from its checkpoint)."""
    intent = read_intent(entry.path)
    latest = read_status(entry.path).latest
    if latest is None or latest.submission < intent.submission:
        return False
    return latest.state not in (State.REQUEUED, State.RUNNING)


def wants_requeue(entry: PointEntry, job: str) -> bool:
    """Whether the point's attempt in this job ended asking for the job to be requeued."""
    latest = read_status(entry.path).latest
    return latest is not None and latest.job_id == job and latest.action == records.Action.REQUEUE


def unrecorded(entry: PointEntry, pid: tp.Optional[int]) -> bool:
    """Whether the point's process ``pid`` left no recorded end (it died first)."""
    latest = read_status(entry.path).latest
    return latest is None or latest.pid != pid or latest.state == State.RUNNING


def requeued_by_slurm(entry: PointEntry, job: str) -> bool:
    """Whether the point's attempt in this job stopped for ``scontrol requeue`` (SLURM puts
    the job back by itself)."""
    latest = read_status(entry.path).latest
    return (latest is not None and latest.job_id == job and latest.state == State.REQUEUED
            and latest.cause == records.Cause.REQUEUED)


def run_pack(sweep_dir: tp.Union[str, Path], indices: tp.Sequence[int]) -> tp.Dict[int, int]:
    """Run the points ``indices`` of the sweep side by side in this job (see the module
    docstring); return index -> exit status of each point's process."""
    sweep_dir = Path(sweep_dir)
    interrupt.install()  # a stop reaches every point's process; this one only waits for them
    manifest = manifests.read_manifest(sweep_dir)
    job = job_id()
    entries = [manifest.point(i) for i in indices]
    todo = [e for e in entries if not ended(e)]
    skipped = [e.index for e in entries if e not in todo]
    if skipped:
        print(f"ptslurm: job {job}: point(s) {slurmtext.ranges(skipped)} ended before; not run again", flush=True)
    logs = sweep_dir / records.LOCAL_LOGS
    storage.make_dirs(logs)
    gpus, cpus, allocated = allocation()
    running: tp.Dict[int, tp.Any] = {}
    for entry, part in zip(todo, share(len(todo), gpus, cpus, allocated)):
        env = dict(os.environ, OMP_NUM_THREADS=str(part.threads), MKL_NUM_THREADS=str(part.threads))
        env[ENV_PACK] = f"{job}:{len(entries)}"
        env[ENV_PACK_PARENT] = str(os.getpid())
        if part.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = part.gpu
        print(f"ptslurm: job {job} runs point {entry.index} ({len(entries)} points share the job): "
              f"CUDA_VISIBLE_DEVICES={part.gpu if part.gpu is not None else '-'}, {part.threads} thread(s)"
              + (f", CPUs {','.join(map(str, part.cpus))}" if part.cpus else "")
              + f"; its output: {logs / f'{entry.index}.log'}", flush=True)
        with open(logs / f"{entry.index}.log", "a") as log:
            running[entry.index] = programs.start_packed(
                [sys.executable, "-m", "ptslurm.job", str(sweep_dir), str(entry.index)], log, env, part.cpus)
    pids = {index: proc.pid for index, proc in running.items()}
    codes = _wait(manifest, running)
    for index, code in sorted(codes.items()):
        if code < 0 and read_status(manifest.point(index).path).state == State.RUNNING:
            print(f"ptslurm: job {job}: point {index}'s process was killed by signal {-code} without recording its "
                  f"end (out of memory?); it shows as lost and resumes from its checkpoint when the job runs again "
                  f"or with `ptslurm resubmit --points {index}`", file=sys.stderr, flush=True)
    # a stop reached this job: a point whose process died before it could record the stop
    # resumes too
    stopped = interrupt.received() is not None
    again = [e.index for e in todo if wants_requeue(e, job) or (stopped and unrecorded(e, pids.get(e.index)))]
    by_slurm = [e.index for e in todo if requeued_by_slurm(e, job)]
    if by_slurm and not again and on_slurm():
        print(f"ptslurm: job {job}: SLURM requeues it (scontrol requeue); point(s) {slurmtext.ranges(by_slurm)} "
              f"resume then (its other points stay as they ended)", flush=True)
    if again and on_slurm():
        print(f"ptslurm: job {job}: point(s) {slurmtext.ranges(again)} stopped to resume later: requeueing the "
              f"job once (its other points stay as they ended)", flush=True)
        try:
            schedulers.in_job().requeue(job)
        except Exception as exc:  # noqa: BLE001 - the points' records say they want to resume
            print(f"ptslurm: warning: {exc}; `ptslurm resubmit` resumes them", file=sys.stderr, flush=True)
    return codes


def _wait(manifest: Manifest, running: tp.Dict[int, tp.Any]) -> tp.Dict[int, int]:
    """Wait for every point's process; a point cancelled meanwhile gets SIGTERM, SIGKILL
    ``CANCEL_GRACE_S`` later, while the others go on. A point whose attempt is not on record
    yet is left to read the cancel itself as it starts (a signal before its handler is in
    place would end it without a record), unless it takes over ``START_GRACE_S``."""
    import signal

    codes: tp.Dict[int, int] = {}
    # a point cancelled while queued records that itself when it starts
    stopping: tp.Dict[int, float] = {i: float("inf") for i in running if read_intent(manifest.point(i).path).stops}
    seen: tp.Dict[int, float] = {}  # when the cancel of a point was first seen
    while running:
        for index, proc in list(running.items()):
            code = proc.poll()
            if code is not None:
                codes[index] = code
                del running[index]
                continue
            if index not in stopping and read_intent(manifest.point(index).path).stops:
                seen.setdefault(index, time.time())
                latest = read_status(manifest.point(index).path).latest
                if (latest is not None and latest.pid == proc.pid) or time.time() - seen[index] > START_GRACE_S:
                    print(f"ptslurm: point {index} was cancelled: stopping it (its siblings go on)", flush=True)
                    stopping[index] = time.time()
                    proc.send_signal(signal.SIGTERM)
            elif index in stopping and time.time() - stopping[index] > CANCEL_GRACE_S:
                proc.kill()
        if running:
            time.sleep(POLL_S)
    return codes


def parse_indices(text: str) -> tp.List[int]:
    """``3`` or ``0,1,2`` (the local backend's command line) -> indices."""
    return [int(part) for part in text.split(",") if part.strip()]
