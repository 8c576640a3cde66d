"""Backends that run a sweep's points: SLURM job arrays (through submitit, see
``submitit_adapter``) and a local process pool, producing the same on-disk layout. The
programs they start are started by ``commands``.
"""
import os
import sys
import time
import typing as tp
from pathlib import Path

from . import commands, storage, submitit_adapter
from .commands import first_error_line
from .errors import StorageError, SubmissionError, SubmissionRejected, UsageError
from .spec import Resources


def mem_flag(mem_gb: tp.Optional[float]) -> tp.Optional[str]:
    """sbatch's --mem value for ``mem_gb`` (a bare number would mean megabytes)."""
    if mem_gb is None:
        return None
    return f"{int(mem_gb)}G" if float(mem_gb).is_integer() else f"{int(round(mem_gb * 1024))}M"


def chunks(indices: tp.Sequence[int], size: int) -> tp.List[tp.List[int]]:
    return [list(indices[i:i + size]) for i in range(0, len(indices), size)]


class SlurmBackend:
    """Submits points as job arrays through submitit, one ``sbatch`` per array; arrays are
    split to respect ``MaxArraySize``. Python runs under ``srun`` (submitit's default) so
    that ``--signal`` reaches it; logs are opened in append mode across attempts."""

    name = "slurm"

    def __init__(self, sweep_dir: Path, resources: Resources, job_name: str, workdir: tp.Optional[Path] = None):
        self.sweep_dir = Path(sweep_dir)
        self.folder = self.sweep_dir / storage.SLURM_FOLDER
        self.resources = resources
        self.job_name = job_name
        self.workdir = workdir  # the job's working dir (--chdir): the snapshot's experiment folder
        self.sbatch_calls = 0

    def parameters(self) -> dict:
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
        if out.returncode != 0 and not any(m in out.stderr for m in commands.SUBMIT_LIMIT_ERRORS):
            asked = "; ".join(self.resources.requested()) or "the cluster's defaults"
            limits = commands.node_limits(self.resources.partition)
            raise SubmissionRejected(f"sbatch rejected the job: {first_error_line(out.stderr + out.stdout)}; "
                                     f"requested: {asked}" + (f"; {limits}" if limits else "")
                                     + "; fix the resource options (--partition, --gpus, --cpus, --mem, --time, "
                                       "or the profile)")

    def submit(self, indices: tp.Sequence[int], args_for: tp.Callable[[int], tuple],
               on_array: tp.Callable[[tp.Dict[int, str]], None], marker: tp.Optional[str] = None) -> tp.Dict[int, str]:
        """Submit ``job.run_point(*args_for(i))`` for each index as arrays; ``on_array``
        receives the job ids of each array as soon as it is queued. ``marker`` goes into
        each array's comment with the indices it holds (``commands.marked_jobs`` finds them
        again). Returns index -> job id."""
        from .job import run_point

        storage.make_dirs(self.folder)
        submitter = submitit_adapter.ArraySubmitter(self.folder, self.parameters())
        job_ids: tp.Dict[int, str] = {}
        for chunk in chunks(list(indices), commands.max_array_size()):
            comment = f"{marker}:{commands.ranges(chunk)}" if marker else None
            try:
                jobs = submitter.submit(run_point, [args_for(i) for i in chunk], comment=comment)
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
            ids = dict(zip(chunk, jobs))
            job_ids.update(ids)
            on_array(ids)
        return job_ids

    def submit_wave_job(self, after: tp.Sequence[str], marker: str) -> str:
        """A one-CPU job that submits the sweep's next wave once the jobs ``after`` (array ids)
        all ended; returns its job id."""
        r = self.resources
        self.folder.mkdir(parents=True, exist_ok=True)
        options = [f"--job-name={self.job_name}-waves", f"--comment={marker}:wave", "--cpus-per-task=1",
                   "--mem=500M", "--time=10", "--kill-on-invalid-dep=yes",
                   f"--output={self.folder / 'waves_%j.out'}", "--open-mode=append"]
        if after:
            options.append("--dependency=afterany:" + ":".join(after))
        options += [f"--{k}={v}" for k, v in (("partition", r.partition), ("account", r.account), ("qos", r.qos))
                    if v]
        self.sbatch_calls += 1
        try:
            return commands.sbatch_wrap(options, [sys.executable, "-m", "ptslurm.waves", str(self.sweep_dir)])
        except SubmissionError as exc:
            raise SubmissionError(f"the next wave: {exc}") from None

    def ensure_pickles(self, jobs: tp.Mapping[int, str], args_for: tp.Callable[[int], tuple]) -> None:
        """Write the submitit pickle of adopted array tasks whose submission was killed
        before submitit moved it into place (the task would wait for it, then fail)."""
        from .job import run_point

        for index, job in jobs.items():
            submitit_adapter.write_pickle(self.folder, job, run_point, args_for(index))

    def log_path(self, job_id: str, rank: int = 0) -> Path:
        return submitit_adapter.log_path(self.folder, job_id, rank)


class LocalBackend:
    """Runs points as local processes, ``jobs`` at a time, with the same on-disk layout as
    SLURM; each point's output is appended to ``<sweep>/logs/<index>.log``."""

    name = "local"

    def __init__(self, sweep_dir: Path, jobs: int = 1, workdir: tp.Optional[Path] = None):
        if jobs < 1:
            raise UsageError(f"-j/--jobs must be at least 1, got {jobs}")
        self.sweep_dir = Path(sweep_dir)
        self.jobs = jobs
        self.workdir = workdir  # the points' working dir: the snapshot's experiment folder
        self.sbatch_calls = 0

    def command(self, index: tp.Union[int, str]) -> tp.List[str]:
        return [sys.executable, "-m", "ptslurm.jobmain", str(self.sweep_dir), str(index)]

    def run(self, indices: tp.Sequence[int], on_change: tp.Callable[[tp.Dict[int, int]], None] = lambda d: None,
            poll_s: float = 0.2) -> tp.Dict[int, int]:
        """Run the points; return index -> exit code. Ctrl-C or SIGTERM stops the running
        points (SIGTERM to their process groups, SIGKILL after a grace period) and starts
        no more; the points keep their checkpoints for ``ptslurm resubmit``."""
        import signal

        logs = self.sweep_dir / storage.LOCAL_LOGS
        logs.mkdir(exist_ok=True)
        pending = list(indices)
        running: tp.Dict[int, tp.Any] = {}
        done: tp.Dict[int, int] = {}

        def interrupted(signum: int, frame: tp.Any) -> None:  # noqa: ARG001
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGTERM, interrupted)
        try:
            while pending or running:
                while pending and len(running) < self.jobs:
                    index = pending.pop(0)
                    with open(logs / f"{index}.log", "a") as log:
                        # started outside the snapshot: the job enters it once it checked it
                        running[index] = commands.start_point(self.command(index), log, logs)
                finished = [i for i, p in running.items() if p.poll() is not None]
                for i in finished:
                    done[i] = running.pop(i).returncode
                if finished:
                    on_change(done)
                else:
                    time.sleep(poll_s)
        except BaseException:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            _stop_groups([p.pid for p in running.values()], grace_s=30)
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
        return done


def runner_record() -> dict:
    """Who runs a local sweep's points (``status`` tells a dead runner's never-started
    points from pending ones)."""
    import socket

    return {"host": socket.gethostname(), "pid": os.getpid()}


def _stop_groups(pids: tp.Sequence[int], grace_s: float) -> None:
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
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            try:
                os.killpg(pid, 0)
            except (ProcessLookupError, PermissionError):
                return False
        try:  # a zombie leader whose group is otherwise empty is gone for our purpose
            return not open(f"/proc/{pid}/stat").read().split(") ")[-1].startswith("Z")
        except OSError:
            return True

    for pid in pids:
        signal_(pid, signal.SIGTERM)
    deadline = time.time() + grace_s
    while time.time() < deadline and any(alive(p) for p in pids):
        time.sleep(0.2)
    for pid in pids:
        if alive(pid):
            signal_(pid, signal.SIGKILL)


def stop_local(attempts: tp.Sequence[tp.Any], grace_s: float) -> None:
    """Stop running local attempts (``records.Attempt``: host and pid; each leads its
    process group)."""
    import socket

    here = socket.gethostname()
    _stop_groups([int(a.pid) for a in attempts if a.host == here and a.pid], grace_s)
