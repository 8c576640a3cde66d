"""The only adapter over submitit and the scheduler's commands: SLURM job arrays and a local
process pool that produce the same on-disk layout.

Every subprocess call to sbatch/squeue/scontrol goes through ``run_command`` so the number of
scheduler calls is known (``sbatch_calls``) and failures read the same everywhere.
"""
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import typing as tp
from pathlib import Path

from .errors import SubmissionError, SubmissionRejected, UsageError
from .spec import Resources
from . import storage

PING_TIMEOUT_S = 10
# sbatch's complaints about a full queue: not a bad request, the points wait for a later wave
SUBMIT_LIMIT_ERRORS = ("QOSMaxSubmitJobPerUserLimit", "AssocMaxSubmitJobLimit", "MaxSubmitJobsPerUser")


def run_command(args: tp.Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


def slurm_available() -> bool:
    """True when sbatch exists and a controller answers ``scontrol ping`` in time."""
    if shutil.which("sbatch") is None or shutil.which("scontrol") is None:
        return False
    conf = os.environ.get("SLURM_CONF")
    if conf and not os.path.isfile(conf):
        return False  # scontrol would retry for a minute before giving up
    try:
        out = run_command(["scontrol", "ping"], timeout=PING_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "UP" in out.stdout


def max_array_size() -> int:
    """The cluster's ``MaxArraySize`` (array indices must stay below it); 1001 if unknown."""
    try:
        out = run_command(["scontrol", "show", "config"], timeout=PING_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return 1001
    for line in out.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "MaxArraySize":
            try:
                return max(1, int(value.strip()))
            except ValueError:
                break
    return 1001


def mem_flag(mem_gb: tp.Optional[float]) -> tp.Optional[str]:
    """sbatch's --mem value for ``mem_gb`` (a bare number would mean megabytes)."""
    if mem_gb is None:
        return None
    return f"{int(mem_gb)}G" if float(mem_gb).is_integer() else f"{int(round(mem_gb * 1024))}M"


def chunks(indices: tp.Sequence[int], size: int) -> tp.List[tp.List[int]]:
    return [list(indices[i:i + size]) for i in range(0, len(indices), size)]


def first_error_line(text: str) -> str:
    """The scheduler's own complaint: the last line mentioning 'error', else the last line."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    return (errors or lines or ["(no output)"])[-1]


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
            params["gres"] = f"gpu:{r.gpus}"
        extra = dict(r.sbatch_args)
        if self.workdir is not None:
            extra.setdefault("chdir", str(self.workdir))
        if extra:
            params["additional_parameters"] = extra
        return params

    def batch_script(self, count: int) -> str:
        """The sbatch script of an array of ``count`` tasks (for --dry-run and --test-only)."""
        from submitit.slurm.slurm import _make_sbatch_string

        command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit",
                            shlex.quote(str(self.folder))])
        return _make_sbatch_string(command=command, folder=self.folder, map_count=count,
                                   **self.parameters())

    def validate(self, count: int) -> None:
        """Ask sbatch to check the request (``--test-only``) before anything exists."""
        workdir, self.workdir = self.workdir, None  # it does not exist yet
        try:
            script = self.batch_script(min(count, max_array_size()))
        finally:
            self.workdir = workdir
        with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as fh:
            fh.write(script)
        try:
            self.sbatch_calls += 1
            out = run_command(["sbatch", "--test-only", fh.name], timeout=120)
        except subprocess.TimeoutExpired:
            raise SubmissionError("sbatch --test-only did not answer within 120 s; "
                                  "is slurmctld up? (`scontrol ping`)") from None
        finally:
            os.unlink(fh.name)
        if out.returncode != 0 and not any(m in out.stderr for m in SUBMIT_LIMIT_ERRORS):
            raise SubmissionRejected(f"sbatch rejected the job: {first_error_line(out.stderr + out.stdout)}; "
                                  f"fix the resource options (--partition, --gpus, --time, ...)")

    def submit(self, indices: tp.Sequence[int], call: tp.Callable, args_for: tp.Callable[[int], tuple],
               on_array: tp.Callable[[tp.Dict[int, str]], None], marker: tp.Optional[str] = None) -> tp.Dict[int, str]:
        """Submit ``call(*args_for(i))`` for each index as arrays; ``on_array`` receives the
        job ids of each array as soon as it is queued. ``marker`` goes into each array's
        comment with the indices it holds (``marked_jobs`` finds them again). Returns
        index -> job id."""
        import submitit

        executor = submitit.SlurmExecutor(folder=self.folder, max_num_timeout=self.resources.max_requeues)
        params = self.parameters()
        executor.update_parameters(**params)
        job_ids: tp.Dict[int, str] = {}
        for chunk in chunks(list(indices), max_array_size()):
            if marker:
                extra = dict(params.get("additional_parameters") or {})
                extra["comment"] = f"{marker}:{ranges(chunk)}"
                executor.update_parameters(additional_parameters=extra)
            try:
                with executor.batch():
                    jobs = [executor.submit(call, *args_for(i)) for i in chunk]
            except Exception as exc:  # submitit raises its own errors with sbatch's output
                raise SubmissionError(f"sbatch rejected the job: {first_error_line(str(exc))}") from None
            finally:
                self.sbatch_calls += 1
            ids = {i: job.job_id for i, job in zip(chunk, jobs)}
            job_ids.update(ids)
            on_array(ids)
        return job_ids

    def submit_wave_job(self, after: tp.Sequence[str], marker: str) -> str:
        """A one-CPU job that submits the sweep's next wave once the jobs ``after`` (array ids)
        all ended; returns its job id."""
        r = self.resources
        self.folder.mkdir(parents=True, exist_ok=True)
        args = ["sbatch", "--parsable", f"--job-name={self.job_name}-waves", f"--comment={marker}:wave",
                "--cpus-per-task=1", "--mem=500M", "--time=10", "--kill-on-invalid-dep=yes",
                f"--output={self.folder / 'waves_%j.out'}", "--open-mode=append"]
        if after:
            args.append("--dependency=afterany:" + ":".join(after))
        args += [f"--{k}={v}" for k, v in (("partition", r.partition), ("account", r.account), ("qos", r.qos)) if v]
        args += ["--wrap", " ".join(shlex.quote(a) for a in (sys.executable, "-m", "ptslurm.waves",
                                                               str(self.sweep_dir)))]
        self.sbatch_calls += 1
        out = run_command(args, timeout=60)
        if out.returncode != 0:
            raise SubmissionError(f"sbatch of the next wave failed: {first_error_line(out.stderr + out.stdout)}")
        return out.stdout.strip().split(";")[0]

    @staticmethod
    def marked_jobs(marker: str) -> tp.Dict[int, str]:
        """Point index -> job id (``A_t``) of the queued jobs whose comment carries
        ``marker`` (one squeue call); {} when squeue does not answer."""
        try:
            out = run_command(["squeue", "-h", "-r", "-o", "%i|%k"], timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return {}
        return parse_marked(out.stdout, marker) if out.returncode == 0 else {}

    def ensure_pickles(self, jobs: tp.Dict[int, str], args_for: tp.Callable[[int], tuple]) -> None:
        """Write the submitit pickle of adopted array tasks whose submission was killed
        before submitit moved it into place (the task would wait for it, then fail)."""
        from submitit.core.utils import DelayedSubmission, JobPaths

        from .job import run_point

        for index, job in jobs.items():
            path = JobPaths(self.folder, job_id=job).submitted_pickle
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                DelayedSubmission(run_point, *args_for(index)).dump(path)

    @staticmethod
    def cancel(job_ids: tp.Iterable[str]) -> None:
        ids = sorted(set(job_ids))
        if ids:
            run_command(["scancel", *ids], timeout=60)

    @staticmethod
    def queue_states(job_ids: tp.Iterable[str]) -> tp.Dict[str, str]:
        """One ``squeue`` call: job id (``A_i`` for array tasks) -> SLURM state, for the
        jobs still known to the queue. Raises SubmissionError when squeue fails."""
        wanted = sorted({j.split("_")[0] for j in job_ids})
        if not wanted:
            return {}
        out = run_command(["squeue", "-h", "-r", "-o", "%i %T", "-j", ",".join(wanted)], timeout=60)
        if out.returncode != 0 and "Invalid job id" not in out.stderr:
            raise SubmissionError(f"squeue failed: {first_error_line(out.stderr)}")
        states = {}
        for line in out.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2:
                for one in expand_ids(parts[0]):
                    states[one] = parts[1]
        return states


def parse_scontrol(text: str) -> tp.Dict[str, str]:
    """The first record of ``scontrol show ... -o`` output (``Key=Value`` pairs) as a dict."""
    fields: tp.Dict[str, str] = {}
    first = text.strip().splitlines()[0] if text.strip() else ""
    for item in first.split():
        key, sep, value = item.partition("=")
        if sep:
            fields.setdefault(key, value)
    return fields


def job_info(job_id: str) -> tp.Dict[str, str]:
    """``scontrol show job -o`` as a dict ({} when SLURM does not answer)."""
    try:
        out = run_command(["scontrol", "show", "job", "-o", job_id], timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return parse_scontrol(out.stdout)


def partition_info(partition: tp.Optional[str]) -> tp.Dict[str, str]:
    """``scontrol show partition -o`` of ``partition`` (default: the cluster's default
    partition) as a dict; {} when SLURM does not answer."""
    try:
        out = run_command(["scontrol", "show", "partition", "-o"] + ([partition] if partition else []), timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if out.returncode != 0:
        return {}
    records = [parse_scontrol(line) for line in out.stdout.splitlines() if line.strip()]
    if partition:
        return records[0] if records else {}
    return next((r for r in records if r.get("Default") == "YES"), records[0] if records else {})


def slurm_minutes(text: tp.Optional[str]) -> tp.Optional[float]:
    """Minutes from SLURM's time format (``UNLIMITED``/``NONE``/``INFINITE`` -> None):
    ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``."""
    if not text or text.upper() in ("UNLIMITED", "NONE", "INFINITE", "N/A"):
        return None
    days, sep, rest = text.partition("-")
    if not sep:
        days, rest = "0", text
    parts = [int(p) for p in rest.split(":")]
    if sep:  # D-HH[:MM[:SS]]
        parts += [0] * (3 - len(parts))
        h, m, sec = parts
    elif len(parts) == 1:
        h, m, sec = 0, parts[0], 0
    elif len(parts) == 2:
        h, m, sec = 0, parts[0], parts[1]
    else:
        h, m, sec = parts
    return int(days) * 1440 + h * 60 + m + sec / 60


def requeue(job_id: str) -> None:
    """Put a job (an array task as ``A_i``) back in the queue."""
    out = run_command(["scontrol", "requeue", job_id], timeout=60)
    if out.returncode != 0:
        raise SubmissionError(f"scontrol requeue {job_id} failed: {first_error_line(out.stderr)}")


def ranges(indices: tp.Sequence[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``0-2,5,7-8`` (in order; the inverse of ``parse_ranges``)."""
    out, start, prev = [], None, None
    for i in indices:
        if start is not None and i == prev + 1:
            prev = i
            continue
        if start is not None:
            out.append(f"{start}-{prev}" if prev != start else str(start))
        start = prev = i
    if start is not None:
        out.append(f"{start}-{prev}" if prev != start else str(start))
    return ",".join(out)


def parse_ranges(text: str) -> tp.List[int]:
    out: tp.List[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        if lo.isdigit() and (not hi or hi.isdigit()):
            out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def parse_marked(text: str, marker: str) -> tp.Dict[int, str]:
    """From ``squeue -h -r -o '%i|%k'``: point index -> ``A_t`` for the array tasks whose
    comment is ``<marker>:<ranges>`` (task t holds the t-th index of the ranges)."""
    found: tp.Dict[int, str] = {}
    for line in text.splitlines():
        job, _, comment = line.strip().partition("|")
        if not comment.startswith(marker + ":") or "_" not in job:
            continue
        indices = parse_ranges(comment[len(marker) + 1:])
        array, _, task = job.partition("_")
        if task.isdigit() and int(task) < len(indices):
            found[indices[int(task)]] = job
    return found


def expand_ids(job_id: str) -> tp.List[str]:
    """``123_[0-2,5%4]`` -> 123_0, 123_1, 123_2, 123_5 (sacct/squeue show pending arrays so)."""
    main, sep, rest = job_id.partition("_[")
    if not sep:
        return [job_id]
    out = []
    for part in rest.rstrip("]").split("%")[0].split(","):
        lo, _, hi = part.partition("-")
        if lo.isdigit():
            out += [f"{main}_{i}" for i in range(int(lo), int(hi or lo) + 1)]
    return out


def parse_pipe_table(text: str, fields: tp.Sequence[str]) -> tp.List[tp.Dict[str, str]]:
    """``sacctmgr -n -P ... format=A,B,C`` -> one dict per line."""
    rows = []
    for line in text.splitlines():
        if line.strip():
            values = line.rstrip("\n").split("|")
            rows.append(dict(zip(fields, values + [""] * (len(fields) - len(values)))))
    return rows


def _int(text: str) -> tp.Optional[int]:
    try:
        value = int(text)
    except (TypeError, ValueError):
        return None
    return value if value >= 0 else None


def submit_limit(qos: tp.Optional[str] = None) -> tp.Optional[int]:
    """How many jobs (array tasks count one each) this user may have queued: the smallest
    of the association's MaxSubmitJobs and the QOS's MaxSubmitJobsPerUser (the given QOS,
    else the association's default). None when accounting does not say."""
    import getpass

    if shutil.which("sacctmgr") is None:
        return None
    user = getpass.getuser()
    try:
        assoc = run_command(["sacctmgr", "-n", "-P", "show", "assoc", "where", f"user={user}",
                             "format=User,Account,MaxSubmit,DefaultQOS"], timeout=30)
        qos_out = run_command(["sacctmgr", "-n", "-P", "show", "qos", "format=Name,MaxSubmitPU"], timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if assoc.returncode != 0 or qos_out.returncode != 0:
        return None
    assocs = parse_pipe_table(assoc.stdout, ["user", "account", "max_submit", "default_qos"])
    limits = [_int(a["max_submit"]) for a in assocs]
    chosen = qos or next((a["default_qos"] for a in assocs if a["default_qos"]), "normal")
    for q in parse_pipe_table(qos_out.stdout, ["name", "max_submit_pu"]):
        if q["name"] == chosen:
            limits.append(_int(q["max_submit_pu"]))
    known = [x for x in limits if x is not None]
    return min(known) if known else None


def queued_count() -> tp.Optional[int]:
    """This user's jobs in the queue (array tasks one each); None when squeue fails."""
    import getpass

    try:
        out = run_command(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i"], timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return len(out.stdout.split()) if out.returncode == 0 else None


def parse_history(text: str) -> tp.Dict[str, tp.List[tp.Tuple[str, str]]]:
    """``sacct -n -D -X -P -o JobID,State,Start`` -> job id -> [(start, STATE), ...], one
    entry per run of the job (``-D`` keeps the runs a requeue replaced)."""
    out: tp.Dict[str, tp.List[tp.Tuple[str, str]]] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 3 or not parts[0]:
            continue
        state = parts[1].split()[0] if parts[1] else ""
        for one in expand_ids(parts[0]):
            out.setdefault(one, []).append((parts[2], state))
    return out


def accounting_history(job_ids: tp.Iterable[str]) -> tp.Dict[str, tp.List[tp.Tuple[str, str]]]:
    """Every run of the jobs, from one ``sacct`` call ({} without accounting)."""
    wanted = sorted({j.split("_")[0] for j in job_ids})
    if not wanted or shutil.which("sacct") is None:
        return {}
    try:
        out = run_command(["sacct", "-n", "-D", "-X", "-P", "-o", "JobID,State,Start", "-j", ",".join(wanted)],
                          timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return parse_history(out.stdout) if out.returncode == 0 else {}


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
        running: tp.Dict[int, subprocess.Popen] = {}
        done: tp.Dict[int, int] = {}

        def interrupted(signum, frame):  # noqa: ARG001
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGTERM, interrupted)
        try:
            while pending or running:
                while pending and len(running) < self.jobs:
                    index = pending.pop(0)
                    with open(logs / f"{index}.log", "a") as log:
                        # its own process group: cancel stops the point and whatever it started
                        running[index] = subprocess.Popen(self.command(index), stdout=log, cwd=self.workdir,
                                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                          start_new_session=True)
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


def stop_local(attempts: tp.Sequence[dict], grace_s: float) -> None:
    """Stop running local attempts (recorded host and pid; each leads its process group)."""
    import socket

    here = socket.gethostname()
    _stop_groups([int(a["pid"]) for a in attempts if a.get("host") == here and a.get("pid")], grace_s)
