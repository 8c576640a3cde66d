"""Backends that run a sweep's points: SLURM job arrays (through submitit, see
``submitit_adapter``), a local process pool, and a fake scheduler in memory (for tests: the
submission protocol runs on it as on SLURM, in milliseconds). The programs they start are
started by ``commands``.

A scheduler backend (``Scheduler``) is the one seam between the submission protocol and the
cluster: it submits arrays and the wave job, cancels, and answers the few questions the
protocol asks (the submit limit, how many jobs are queued, which jobs carry a sweep's
marker, which of some jobs are still queued). The callable its jobs run is handed in, so the
backends never import the job.
"""
import os
import sys
import time
import typing as tp
from pathlib import Path

from . import commands, slurmtext, submitit_adapter
from .. import programs, records, schedulers
from ..records import storage
from .commands import first_error_line
from ..errors import StorageError, SubmissionError, SubmissionRejected, UsageError
from ..records.spec import Resources


def mem_flag(mem_gb: tp.Optional[float]) -> tp.Optional[str]:
    """sbatch's --mem value for ``mem_gb`` (a bare number would mean megabytes)."""
    if mem_gb is None:
        return None
    return f"{int(mem_gb)}G" if float(mem_gb).is_integer() else f"{int(round(mem_gb * 1024))}M"


T = tp.TypeVar("T")
#: what an array task's callable is called with, for the points it runs
ArgsFor = tp.Callable[[tp.Sequence[int]], tp.Tuple[tp.Any, ...]]


def chunks(items: tp.Sequence[T], size: int) -> tp.List[tp.List[T]]:
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


class SlurmBackend(schedulers.Slurm):
    """Submits points as job arrays through submitit, one ``sbatch`` per array; arrays are
    split to respect ``MaxArraySize``. Python runs under ``srun`` (submitit's default) so
    that ``--signal`` reaches it; logs are opened in append mode across attempts. Every
    other question and order: ``schedulers.Slurm``."""

    def __init__(self, sweep_dir: Path, resources: Resources, job_name: str, workdir: tp.Optional[Path] = None):
        self.sweep_dir = Path(sweep_dir)
        self.folder = self.sweep_dir / records.SLURM_FOLDER
        self.resources = resources
        self.job_name = job_name
        self.workdir = workdir  # the job's working dir (--chdir): the snapshot's experiment folder
        self.sbatch_calls = 0

    def parameters(self) -> tp.Dict[str, tp.Any]:
        """submitit SlurmExecutor parameters for ``self.resources``."""
        r = self.resources
        params: tp.Dict[str, tp.Any] = {
            "job_name": self.job_name,
            "signal_delay_s": r.signal_delay_s,
            "stderr_to_stdout": True,
            # None leaves --time out: the partition's default applies (submitit would say 5)
            "time": r.timeout_min,
        }
        optional = {"partition": r.partition, "cpus_per_task": r.cpus, "mem": mem_flag(r.mem_gb),
                    "account": r.account, "qos": r.qos,
                    "constraint": r.constraint, "array_parallelism": r.array_parallelism}
        params.update({k: v for k, v in optional.items() if v is not None})
        params.update({k: list(v) for k, v in (("setup", r.setup), ("srun_args", r.srun_args)) if v})
        if r.gpus:
            params["gres"] = f"gpu:{r.gpus}"  # per node
        if r.nodes > 1:
            params["nodes"] = r.nodes
        if r.world_size > 1:
            # one srun step runs every rank. A rank that dies breaks the others' next
            # collective: rank 0 then records the failure and requeues the point, which
            # resumes from its last checkpoint as a whole
            params["ntasks_per_node"] = r.tasks
        extra = dict(r.sbatch_args)
        if self.workdir is not None:
            # the job starts in its log folder, not in the snapshot: nothing of the snapshot is
            # importable before the job has checked it (it then works in the snapshot's folder)
            extra.setdefault("chdir", str(self.folder))
        if extra:
            params["additional_parameters"] = extra
        return params

    def batch_script(self, count: int) -> str:
        """The sbatch script of an array of ``count`` tasks (for --dry-run and --test-only)."""
        return submitit_adapter.batch_script(self.folder, count, self.parameters())

    def validate(self, count: int) -> None:
        """Ask sbatch to check the request (``--test-only``) before anything exists."""
        workdir, self.workdir = self.workdir, None  # it does not exist yet
        try:
            script = self.batch_script(min(count, commands.max_array_size()))
        finally:
            self.workdir = workdir
        self.sbatch_calls += 1
        out = commands.sbatch_test_only(script)
        if out.returncode != 0 and commands.CONTROLLER_FULL in out.stderr + out.stdout:
            raise SubmissionRejected(f"the SLURM controller takes no more jobs now (sbatch: "
                                     f"{first_error_line(out.stderr + out.stdout)}: it holds as many jobs as its "
                                     f"MaxJobCount allows, or is too busy); nothing was submitted: run the command "
                                     f"again once jobs have left the queue, or sweep fewer points at once")
        if out.returncode != 0 and not any(m in out.stderr for m in commands.SUBMIT_LIMIT_ERRORS):
            asked = "; ".join(self.resources.requested()) or "the cluster's defaults"
            limits = commands.node_limits(self.resources.partition)
            raise SubmissionRejected(f"sbatch rejected the job: {first_error_line(out.stderr + out.stdout)}; "
                                     f"requested: {asked}" + (f"; {limits}" if limits else "")
                                     + "; fix the resource options (--partition, --gpus, --cpus, --mem, --time, "
                                       "or the profile)")

    def submit(self, units: tp.Sequence[tp.Sequence[int]], target: tp.Callable[..., tp.Any], args_for: ArgsFor,
               on_array: tp.Callable[[tp.Dict[int, str]], None], marker: tp.Optional[str] = None) -> tp.Dict[int, str]:
        """Submit ``target(*args_for(unit))`` for each unit (the points one array task runs:
        one, or several packed) as arrays; ``on_array`` receives the job ids of each array's
        points as soon as it is queued. ``marker`` goes into each array's comment with the
        indices it holds (``marked_jobs`` finds them again). Returns index -> job id."""
        storage.make_dirs(self.folder)
        submitter = submitit_adapter.ArraySubmitter(self.folder, self.parameters())
        job_ids: tp.Dict[int, str] = {}
        for chunk in chunks(list(units), commands.max_array_size()):
            comment = commands.marker_comment(marker, chunk) if marker else None
            try:
                jobs = submitter.submit(target, [args_for(u) for u in chunk], comment=comment)
            except OSError as exc:
                import errno

                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise StorageError(f"the disk holding {str(self.folder)!r} is full (writing the job files, "
                                       f"before sbatch); free space or choose another --root") from None
                raise SubmissionError(f"sbatch rejected the job: {first_error_line(str(exc))}") from None
            except Exception as exc:  # submitit raises its own errors with sbatch's output
                raise SubmissionError(f"sbatch rejected the job: {first_error_line(str(exc))}") from None
            finally:
                self.sbatch_calls += 1
                storage.no_group_write(self.folder)  # the pickles jobs load: nobody else may change them
            ids = {i: job for unit, job in zip(chunk, jobs) for i in unit}
            job_ids.update(ids)
            on_array(ids)
        return job_ids

    def submit_wave_job(self, after: tp.Sequence[str], marker: str, what: str = "waves") -> str:
        """A one-CPU job running ``python -m ptslurm.submit.<what> SWEEP_DIR`` once the arrays ``after``
        ended: the next wave (run again if killed: it adopts what it queued) or decision."""
        r = self.resources
        self.folder.mkdir(parents=True, exist_ok=True)
        options = [f"--job-name={self.job_name}-{what}", f"--comment={marker}:{what}", "--cpus-per-task=1",
                   "--mem=500M", "--time=10", "--kill-on-invalid-dep=yes",
                   f"--output={self.folder / (what + '_%j.out')}", "--open-mode=append"]
        if after:
            options.append("--dependency=afterany:" + ":".join(after))
        options += [f"--{k}={v}" for k, v in (("partition", r.partition), ("account", r.account), ("qos", r.qos)) if v]
        command = [sys.executable, "-m", f"ptslurm.submit.{what}", str(self.sweep_dir)]
        if what == "waves":
            command = ["/bin/sh", "-c", 'for n in 1 2 3; do "$@" && exit 0; done; exit 1', "sh", *command]
        self.sbatch_calls += 1
        try:
            return commands.sbatch_wrap(options, command)
        except SubmissionError as exc:
            raise SubmissionError(f"the next {'wave' if what == 'waves' else 'decision'}: {exc}") from None

    def ensure_pickles(self, jobs: tp.Mapping[str, tp.Sequence[int]], target: tp.Callable[..., tp.Any],
                       args_for: ArgsFor) -> None:
        """Write the submitit pickle of adopted array tasks (job id -> the points it runs)
        whose submission was killed before submitit moved it into place (the task would
        wait for it, then fail)."""
        for job, unit in jobs.items():
            submitit_adapter.write_pickle(self.folder, job, target, args_for(unit))

    def log_path(self, job_id: str, rank: int = 0) -> Path:
        return submitit_adapter.log_path(self.folder, job_id, rank)

    # the questions the submission protocol asks the scheduler
    def submit_limit(self) -> tp.Optional[int]:
        """How many jobs the user may have queued (the QOS's or association's limit), or None."""
        return commands.submit_limit(self.resources.qos)

    def queued_count(self) -> tp.Optional[int]:
        """How many of the user's jobs are queued or running now (None: the scheduler did not say)."""
        return commands.queued_count()

    def marked_jobs(self, marker: str) -> tp.Dict[int, str]:
        """index -> job id of the queued array tasks whose comment carries ``marker``."""
        return commands.marked_jobs(marker)


class LocalBackend(schedulers.Local):
    """Runs points as local processes, ``jobs`` at a time, with the same on-disk layout as
    SLURM; each point's output is appended to ``<sweep>/logs/<index>.log``. Every question
    and order: ``schedulers.Local``."""

    def __init__(self, sweep_dir: Path, jobs: int = 1, workdir: tp.Optional[Path] = None):
        if jobs < 1:
            raise UsageError(f"-j/--jobs must be at least 1, got {jobs}")
        self.sweep_dir = Path(sweep_dir)
        self.jobs = jobs
        self.workdir = workdir  # the points' working dir: the snapshot's experiment folder
        self.sbatch_calls = 0

    def command(self, index: tp.Union[int, str, tp.Sequence[int]]) -> tp.List[str]:
        """One point's process, or (several indices) a packed job's (``pack.run_pack``)."""
        what = index if isinstance(index, (int, str)) else ",".join(map(str, index))
        return [sys.executable, "-m", "ptslurm.job", str(self.sweep_dir), str(what)]

    def run(self, units: tp.Sequence[tp.Union[int, tp.Sequence[int]]],
            on_change: tp.Callable[[tp.Dict[int, int]], None] = lambda d: None,
            poll_s: float = 0.2) -> tp.Dict[int, int]:
        """Run the points (an index, or the indices of points packed into one job: one
        process group, see ``pack``); return index -> exit code. Ctrl-C or SIGTERM stops the
        running points (SIGTERM to their process groups, SIGKILL after a grace period) and
        starts no more; the points keep their checkpoints for ``ptslurm resubmit``."""
        import signal

        logs = self.sweep_dir / records.LOCAL_LOGS
        logs.mkdir(exist_ok=True)
        pending = [(u,) if isinstance(u, int) else tuple(u) for u in units]
        running: tp.Dict[tp.Tuple[int, ...], tp.Any] = {}
        done: tp.Dict[int, int] = {}

        def interrupted(signum: int, frame: tp.Any) -> None:  # noqa: ARG001
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGTERM, interrupted)
        try:
            while pending or running:
                while pending and len(running) < self.jobs:
                    unit = pending.pop(0)
                    name = f"{unit[0]}.log" if len(unit) == 1 else f"job-{slurmtext.ranges(unit)}.log"
                    # Ctrl-C or SIGTERM waits until the point is on record here: one that came
                    # between its start and the record would leave it running, orphaned
                    came: tp.List[int] = []
                    before = {sig: signal.signal(sig, lambda signum, frame: came.append(signum))
                              for sig in (signal.SIGINT, signal.SIGTERM)}
                    try:
                        with open(logs / name, "a") as log:
                            # started outside the snapshot: the job enters it once it checked it
                            running[unit] = programs.start_point(self.command(unit[0] if len(unit) == 1 else unit),
                                                                 log, logs)
                    finally:
                        for sig, handler in before.items():
                            signal.signal(sig, handler)
                    if came:
                        raise KeyboardInterrupt
                finished = [u for u, p in running.items() if p.poll() is not None]
                for unit in finished:
                    code = running.pop(unit).returncode
                    done.update({i: code for i in unit})
                if finished:
                    on_change(done)
                else:
                    time.sleep(poll_s)
        except BaseException:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            schedulers.stop_groups([p.pid for p in running.values()], grace_s=30)
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
        return done


def runner_record() -> tp.Dict[str, tp.Any]:
    """Who runs a local sweep's points (``status`` tells a dead runner's never-started
    points from pending ones)."""
    import socket

    return {"host": socket.gethostname(), "pid": os.getpid()}


class Scheduler(schedulers.Scheduler, tp.Protocol):
    """A scheduler that also submits a sweep's points (SlurmBackend, FakeBackend): what the
    submission protocol needs, besides every question and order of ``schedulers.Scheduler``."""

    sweep_dir: Path
    resources: Resources
    sbatch_calls: int

    def validate(self, count: int) -> None: ...

    def submit(self, units: tp.Sequence[tp.Sequence[int]], target: tp.Callable[..., tp.Any], args_for: ArgsFor,
               on_array: tp.Callable[[tp.Dict[int, str]], None],
               marker: tp.Optional[str] = None) -> tp.Dict[int, str]: ...

    def submit_wave_job(self, after: tp.Sequence[str], marker: str, what: str = "waves") -> str: ...

    def ensure_pickles(self, jobs: tp.Mapping[str, tp.Sequence[int]], target: tp.Callable[..., tp.Any],
                       args_for: ArgsFor) -> None: ...

    def log_path(self, job_id: str, rank: int = 0) -> Path: ...

    def submit_limit(self) -> tp.Optional[int]: ...

    def queued_count(self) -> tp.Optional[int]: ...

    def marked_jobs(self, marker: str) -> tp.Dict[int, str]: ...


#: makes a sweep's scheduler backend: (sweep_dir, resources, job name, workdir) -> backend
BackendFactory = tp.Callable[[Path, Resources, str, tp.Optional[Path]], Scheduler]


class FakeCluster:
    """A scheduler in memory, for tests: a queue of jobs (state, comment, the call each runs),
    a submit limit, every sbatch counted, and hooks where a real submission breaks:
    ``before_sbatch(n)`` runs before the n-th sbatch (raise to refuse it, or to die before
    it), ``after_sbatch(n)`` after the n-th queued its jobs and before their ids are handed
    back (raise KeyboardInterrupt: a submission killed right after its sbatch). Jobs end only
    when the test ends them (``end``). ``backend`` is a ``BackendFactory``."""

    QUEUED = ("PENDING", "RUNNING")

    def __init__(self, limit: tp.Optional[int] = None, max_array_size: int = 1000):
        self.limit = limit
        self.max_array_size = max_array_size
        self.jobs: tp.Dict[str, tp.Dict[str, tp.Any]] = {}  # job id -> state, comment, call, sweep
        self.sbatch_calls = 0
        self.scancel_calls = 0
        self.validated: tp.List[tp.Tuple[Resources, int]] = []  # each pre-flight: resources, array size
        self.partition: tp.Dict[str, str] = {}  # what scontrol show partition says
        self.nodes: tp.List[tp.Tuple[int, int, str]] = []  # (CPUs, memory in MB, GRES) of each node
        self.before_sbatch: tp.Optional[tp.Callable[[int], None]] = None
        self.after_sbatch: tp.Optional[tp.Callable[[int], None]] = None
        self._next_id = 100

    def backend(self, sweep_dir: Path, resources: Resources, job_name: str,
                workdir: tp.Optional[Path] = None) -> "FakeBackend":
        return FakeBackend(self, sweep_dir, resources, job_name, workdir)

    def sbatch(self, tasks: tp.Sequence[tp.Dict[str, tp.Any]]) -> tp.List[str]:
        """Queue one sbatch's jobs (an array of ``tasks``, or one job); their ids."""
        self.sbatch_calls += 1
        if self.before_sbatch is not None:
            self.before_sbatch(self.sbatch_calls)
        if self.limit is not None and len(self.queued()) + len(tasks) > self.limit:
            raise SubmissionError("sbatch rejected the job: Job violates accounting/QOS policy "
                                  "(job submit limit, user's size and/or time limits)")
        array, self._next_id = str(self._next_id), self._next_id + 1
        ids = [f"{array}_{t}" if len(tasks) > 1 or task.get("array") else array for t, task in enumerate(tasks)]
        for job, task in zip(ids, tasks):
            self.jobs[job] = dict(task, state="PENDING")
        if self.after_sbatch is not None:
            self.after_sbatch(self.sbatch_calls)
        return ids

    def queued(self) -> tp.List[str]:
        return [j for j, rec in self.jobs.items() if rec["state"] in self.QUEUED]

    def end(self, job_ids: tp.Iterable[str], state: str = "COMPLETED") -> None:
        for job in job_ids:  # an unknown id is ignored, as scancel's "Invalid job id"
            if job in self.jobs and self.jobs[job]["state"] in self.QUEUED:
                self.jobs[job]["state"] = state

    def point_jobs(self, sweep_dir: Path) -> tp.Dict[int, tp.List[str]]:
        """index -> every job ever submitted for that point of ``sweep_dir`` (the accounting)."""
        out: tp.Dict[int, tp.List[str]] = {}
        for job, rec in self.jobs.items():
            if rec.get("sweep") == str(sweep_dir):
                for index in rec.get("indices", ()):
                    out.setdefault(index, []).append(job)
        return out


class FakeBackend:
    """A sweep's backend on a ``FakeCluster``: the Scheduler interface, nothing leaves memory
    but the log folder."""

    name = "fake"
    keeps_queue = True

    def __init__(self, cluster: FakeCluster, sweep_dir: Path, resources: Resources, job_name: str,
                 workdir: tp.Optional[Path] = None):
        self.cluster = cluster
        self.sweep_dir = Path(sweep_dir)
        self.resources = resources
        self.job_name = job_name
        self.workdir = workdir
        self.sbatch_calls = 0

    def validate(self, count: int) -> None:
        self.sbatch_calls += 1
        self.cluster.validated.append((self.resources, count))

    def submit(self, units: tp.Sequence[tp.Sequence[int]], target: tp.Callable[..., tp.Any], args_for: ArgsFor,
               on_array: tp.Callable[[tp.Dict[int, str]], None],
               marker: tp.Optional[str] = None) -> tp.Dict[int, str]:
        job_ids: tp.Dict[int, str] = {}
        for chunk in chunks(list(units), self.cluster.max_array_size):
            comment = commands.marker_comment(marker, chunk) if marker else None
            self.sbatch_calls += 1
            ids = self.cluster.sbatch([{"comment": comment, "call": (target, args_for(u)), "indices": list(u),
                                        "array": True, "sweep": str(self.sweep_dir), "resources": self.resources}
                                       for u in chunk])
            array = {i: job for unit, job in zip(chunk, ids) for i in unit}
            job_ids.update(array)
            on_array(array)
        return job_ids

    def submit_wave_job(self, after: tp.Sequence[str], marker: str, what: str = "waves") -> str:
        self.sbatch_calls += 1
        return self.cluster.sbatch([{"comment": f"{marker}:{what}", "after": list(after), "wave": what == "waves",
                                     "promote": what == "promote", "sweep": str(self.sweep_dir)}])[0]

    def ensure_pickles(self, jobs: tp.Mapping[str, tp.Sequence[int]], target: tp.Callable[..., tp.Any],
                       args_for: ArgsFor) -> None:
        for job, unit in jobs.items():
            self.cluster.jobs[job]["call"] = (target, args_for(unit))

    def log_path(self, job_id: str, rank: int = 0) -> Path:
        return self.sweep_dir / records.SLURM_FOLDER / f"{job_id}_{rank}_log.out"

    def submit_limit(self) -> tp.Optional[int]:
        return self.cluster.limit

    def queued_count(self) -> tp.Optional[int]:
        return len(self.cluster.queued())

    def marked_jobs(self, marker: str) -> tp.Dict[int, str]:
        # what squeue -r -o '%i|%k' prints for the queued jobs, read by the real parser
        lines = [f"{job}|{self.cluster.jobs[job].get('comment') or ''}" for job in self.cluster.queued()]
        return commands.parse_marked("\n".join(lines), marker)

    def queue_states(self, job_ids: tp.Iterable[str]) -> tp.Dict[str, str]:
        wanted = set(job_ids)
        return {j: self.cluster.jobs[j]["state"] for j in self.cluster.queued() if j in wanted}

    def cancel(self, job_ids: tp.Iterable[str]) -> None:
        self.cluster.scancel_calls += 1
        self.cluster.end(job_ids, "CANCELLED")

    def stop(self, job_ids: tp.Iterable[str], attempts: tp.Sequence[tp.Any], grace_s: float) -> None:
        jobs = list(job_ids)
        if jobs:
            self.cancel(jobs)

    def hold(self, job_ids: tp.Sequence[str], release: bool = False) -> None:
        for job in job_ids:
            self.cluster.jobs[job]["held"] = not release

    def requeue(self, job_id: str) -> None:
        """As ``scontrol requeue``: the job queued again, its restart count one up; refused
        (SubmissionError) for a job the queue no longer holds."""
        rec = self.cluster.jobs.get(job_id)
        if rec is None or rec["state"] not in self.cluster.QUEUED:
            raise SubmissionError(f"scontrol requeue {job_id} failed: Job has already finished")
        rec.update(state="PENDING", restarts=rec.get("restarts", 0) + 1)

    def job_info(self, job_id: str) -> tp.Dict[str, str]:
        """What ``scontrol show job`` says of a job, in its words: its state and restart count,
        and what ``FakeCluster.jobs[job]["scontrol"]`` adds (a preemption time, the end)."""
        rec = self.cluster.jobs.get(job_id)
        if rec is None:
            return {}
        info = {"JobId": job_id, "JobState": rec["state"], "Restarts": str(rec.get("restarts", 0)),
                "PreemptTime": "None", "EndTime": "Unknown", **rec.get("scontrol", {})}
        return {k: v for k, v in info.items() if v is not None}  # None: a field the controller leaves out

    def partition_info(self, partition: tp.Optional[str]) -> tp.Dict[str, str]:
        return dict(self.cluster.partition)

    def nodes(self, partition: tp.Optional[str]) -> tp.List[tp.Tuple[int, int, str]]:
        return list(self.cluster.nodes)

    def prefetch_submit_limit(self) -> None:
        pass

    # the read side's questions (``state.Asker``)
    def slurm_available(self) -> bool:
        return True

    def accounting_history(self, job_ids: tp.Iterable[str]) -> tp.Dict[str, tp.List[tp.Tuple[str, str]]]:
        arrays = {j.split("_")[0] for j in job_ids}
        return {j: [("", rec["state"])] for j, rec in self.cluster.jobs.items()
                if j.split("_")[0] in arrays and rec["state"] not in self.cluster.QUEUED}
