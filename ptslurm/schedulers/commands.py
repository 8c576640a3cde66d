"""The scheduler's commands (sbatch, squeue, sacct, scontrol, sacctmgr, scancel), run through
``programs``; only the scheduler backends (``schedulers``, ``backends``) call them. Output is
read by pure parsers (``parse_*``, tested on literal outputs of SLURM 22.05 and of the
formats newer versions document), so a change of format shows in one place.

Every call has a timeout; a scheduler that does not answer reads as "unknown" ({} or None)
where the caller can go on without it, and as SubmissionError where it cannot.
"""
import getpass
import os
import shutil
import sys
import typing as tp
from pathlib import Path

from ..errors import SubmissionError
from ..programs import CompletedProcess, Popen, TimeoutExpired, answer as _answer, run_command, start_reading
from .slurmtext import (Queued, _int, expand_ids, first_error_line, marker_comment, parse_history, parse_marked,
                        parse_pipe_table, parse_queue, parse_ranges, parse_scontrol, ranges, slurm_minutes)

PING_TIMEOUT_S = 10
# sbatch's complaints about a full queue: not a bad request, the points wait for a later wave
SUBMIT_LIMIT_ERRORS = ("QOSMaxSubmitJobPerUserLimit", "AssocMaxSubmitJobLimit", "MaxSubmitJobsPerUser")
#: sbatch's EAGAIN: the controller holds as many jobs as its MaxJobCount allows (slurmctld logs
#: "job_allocate: MaxJobCount limit from slurm.conf reached"), or is too busy to take one
CONTROLLER_FULL = "Resource temporarily unavailable"


def slurm_available() -> bool:
    """True when sbatch exists and a controller answers ``scontrol ping`` in time."""
    if shutil.which("sbatch") is None or shutil.which("scontrol") is None:
        return False
    conf = os.environ.get("SLURM_CONF")
    if conf and not os.path.isfile(conf):
        return False  # scontrol would retry for a minute before giving up
    out = _answer(["scontrol", "ping"], PING_TIMEOUT_S)
    return out is not None and out.returncode == 0 and "UP" in out.stdout


SLURM_CONF_PATHS = ("/etc/slurm/slurm.conf", "/etc/slurm-llnl/slurm.conf", "/run/slurm/conf/slurm.conf")


#: what SLURM's client commands say on a machine with no configuration at all (no slurm.conf,
#: no $SLURM_CONF, no configless DNS record): SLURM's packages, but no cluster
NOT_CONFIGURED = ("Could not establish a configuration source", "Unable to process configuration file")


def not_configured(said: str) -> bool:
    """Whether a SLURM client's output says that no cluster is configured here (not that a
    configured controller is down)."""
    return any(m in said for m in NOT_CONFIGURED)


def slurm_here() -> tp.Tuple[str, str]:
    """``("none", "")`` on a machine without SLURM's commands, or with no cluster configured
    (``$SLURM_CONF`` names a file that does not exist, or the commands find no
    configuration at all: ``not_configured``), ``("up", "")`` when a
    controller answers ``scontrol ping``, else ``("down", what ping or slurm.conf says of
    the controller)``."""
    if shutil.which("sbatch") is None or shutil.which("scontrol") is None:
        return "none", ""
    conf = os.environ.get("SLURM_CONF")
    if conf and not os.path.isfile(conf):
        return "none", ""
    out = _answer(["scontrol", "ping"], PING_TIMEOUT_S)
    if out is not None and out.returncode == 0 and "UP" in out.stdout:
        return "up", ""
    if out is not None and not_configured(out.stdout + out.stderr):
        return "none", ""
    said = next((ln.strip() for ln in (out.stdout + "\n" + out.stderr).splitlines() if ln.strip()), "") \
        if out is not None else ""
    if not said:
        said = f"did not answer `scontrol ping` within {PING_TIMEOUT_S} s"
    hosts = _conf_controllers(conf)
    if hosts:
        said = f"{', '.join(hosts)}: {said}"
    return "down", said[:300]


def _conf_controllers(conf: tp.Optional[str]) -> tp.List[str]:
    """The ``SlurmctldHost``/``ControlMachine`` entries of slurm.conf (none when unreadable)."""
    for path in ([conf] if conf else list(SLURM_CONF_PATHS)):
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            continue
        hosts = []
        for line in text.splitlines():
            key, sep, value = line.split("#", 1)[0].partition("=")
            if sep and key.strip().lower() in ("slurmctldhost", "controlmachine"):
                hosts.append(value.strip())
        return hosts
    return []


def nodes(partition: tp.Optional[str]) -> tp.List[tp.Tuple[int, int, str]]:
    """``(CPUs, memory MB, gres)`` of each node of ``partition`` (default: the cluster's
    default partition), from sinfo; [] when SLURM does not answer."""
    args = ["sinfo", "-h", "-N", "-o", "%c|%m|%G"]
    name = partition or partition_info(None).get("PartitionName")
    out = _answer(args + (["-p", name] if name else []), 30)
    if out is None or out.returncode != 0:
        return []
    found = []
    for line in out.stdout.splitlines():
        cpus, _, rest = line.strip().partition("|")
        mem, _, gres = rest.partition("|")
        try:
            found.append((int(cpus.rstrip("+")), int(mem.rstrip("+")), gres.strip()))
        except ValueError:
            continue
    return found


def node_limits(partition: tp.Optional[str]) -> tp.Optional[str]:
    """``the largest node of partition 'debug' has 2 CPUs and 3000 MB, gres gpu:2`` plus the
    partition's own caps; None when SLURM does not answer."""
    found = nodes(partition)
    if not found:
        return None
    cpus, mem, gres = max(found)
    info = partition_info(partition)
    name = info.get("PartitionName", partition or "default")
    text = f"the largest node of partition {name!r} has {cpus} CPUs and {mem} MB"
    if gres and gres != "(null)":
        text += f", gres {gres}"
    caps = [f"{k} {info[k]}" for k in ("MaxTime", "MaxNodes", "MaxCPUsPerNode", "MaxMemPerNode")
            if info.get(k) not in (None, "", "UNLIMITED")]
    return text + (f"; partition limits: {', '.join(caps)}" if caps else "")


def max_array_size() -> int:
    """The cluster's ``MaxArraySize`` (array indices must stay below it); 1001 if unknown."""
    out = _answer(["scontrol", "show", "config"], PING_TIMEOUT_S)
    for line in (out.stdout if out is not None else "").splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "MaxArraySize":
            try:
                return max(1, int(value.strip()))
            except ValueError:
                break
    return 1001


def job_info(job_id: str) -> tp.Dict[str, str]:
    """``scontrol show job -o`` as a dict ({} when SLURM does not answer)."""
    out = _answer(["scontrol", "show", "job", "-o", job_id], 30)
    return parse_scontrol(out.stdout) if out is not None else {}


def partition_info(partition: tp.Optional[str]) -> tp.Dict[str, str]:
    """``scontrol show partition -o`` of ``partition`` (default: the cluster's default
    partition) as a dict; {} when SLURM does not answer."""
    out = _answer(["scontrol", "show", "partition", "-o"] + ([partition] if partition else []), 30)
    if out is None or out.returncode != 0:
        return {}
    records = [parse_scontrol(line) for line in out.stdout.splitlines() if line.strip()]
    if partition:
        return records[0] if records else {}
    return next((r for r in records if r.get("Default") == "YES"), records[0] if records else {})


def requeue(job_id: str) -> None:
    """Put a job (an array task as ``A_i``) back in the queue."""
    out = run_command(["scontrol", "requeue", job_id], timeout=60)
    if out.returncode != 0:
        raise SubmissionError(f"scontrol requeue {job_id} failed: {first_error_line(out.stderr)}")


#: the accounting queries of ``submit_limit`` started ahead (``prefetch_submit_limit``)
_PREFETCHED: tp.List["Popen[str]"] = []


def _limit_queries() -> tp.List["Popen[str]"]:
    """Both of ``submit_limit``'s ``sacctmgr`` queries, started at once (they read only)."""
    user = getpass.getuser()
    asked = [["sacctmgr", "-n", "-P", "show", "assoc", "where", f"user={user}", "format=User,Account,MaxSubmit,DefaultQOS"],
             ["sacctmgr", "-n", "-P", "show", "qos", "format=Name,MaxSubmitPU"]]
    started: tp.List["Popen[str]"] = []
    try:
        for args in asked:
            started.append(start_reading(args))
    except OSError:
        _reap(started)
        return []
    return started


def _reap(procs: tp.List["Popen[str]"]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def prefetch_submit_limit() -> None:
    """Start ``submit_limit``'s accounting queries in the background (slurmdbd answers in a
    few tenths of a second), so that ``submit_limit`` later finds the answer waiting; left
    unread, they are ended when the process exits."""
    import atexit

    if _PREFETCHED or shutil.which("sacctmgr") is None:
        return
    _PREFETCHED.extend(_limit_queries())
    atexit.register(_reap, _PREFETCHED)


def submit_limit(qos: tp.Optional[str] = None) -> tp.Optional[int]:
    """How many jobs (array tasks count one each) this user may have queued: the smallest
    of the association's MaxSubmitJobs and the QOS's MaxSubmitJobsPerUser (the given QOS,
    else the association's default). None when accounting does not say."""
    if shutil.which("sacctmgr") is None:
        return None
    procs = list(_PREFETCHED) or _limit_queries()
    _PREFETCHED.clear()
    answers: tp.List[tp.Optional[str]] = []
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=30)
        except TimeoutExpired:
            _reap(procs)
            return None
        answers.append(out if proc.returncode == 0 else None)
    assoc, qos_out = answers if len(answers) == 2 else (None, None)
    if assoc is None or qos_out is None:
        return None
    assocs = parse_pipe_table(assoc, ["user", "account", "max_submit", "default_qos"])
    limits = [_int(a["max_submit"]) for a in assocs]
    chosen = qos or next((a["default_qos"] for a in assocs if a["default_qos"]), "normal")
    for q in parse_pipe_table(qos_out, ["name", "max_submit_pu"]):
        if q["name"] == chosen:
            limits.append(_int(q["max_submit_pu"]))
    known = [x for x in limits if x is not None]
    return min(known) if known else None


def queued_count() -> tp.Optional[int]:
    """This user's jobs in the queue (array tasks one each); None when squeue fails."""
    out = _answer(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i"], 60)
    return len(out.stdout.split()) if out is not None and out.returncode == 0 else None


def accounting_history(job_ids: tp.Iterable[str]) -> tp.Dict[str, tp.List[tp.Tuple[str, str]]]:
    """Every run of the jobs, from one ``sacct`` call ({} without accounting)."""
    wanted = sorted({j.split("_")[0] for j in job_ids})
    if not wanted or shutil.which("sacct") is None:
        return {}
    out = _answer(["sacct", "-n", "-D", "-X", "-P", "-o", "JobID,State,Start", "-j", ",".join(wanted)], 60)
    return parse_history(out.stdout) if out is not None and out.returncode == 0 else {}


def marked_jobs(marker: str) -> tp.Dict[int, str]:
    """Point index -> job id (``A_t``) of the queued jobs whose comment carries
    ``marker`` (one squeue call); {} when squeue does not answer."""
    out = _answer(["squeue", "-h", "-r", "-o", "%i|%k"], 60)
    return parse_marked(out.stdout, marker) if out is not None and out.returncode == 0 else {}

def cancel(job_ids: tp.Iterable[str]) -> None:
    """One ``scancel`` for these jobs. Raises SubmissionError when scancel fails or does not
    answer (a controller outage): the caller must not report the jobs stopped."""
    ids = sorted(set(job_ids))
    if not ids:
        return
    try:
        out = run_command(["scancel", *ids], timeout=60)
    except (OSError, TimeoutExpired) as exc:
        raise SubmissionError(f"scancel did not answer ({exc})") from None
    if out.returncode != 0:
        said = first_error_line(out.stderr + out.stdout)
        if not all("already completing or completed" in ln or "Invalid job id" in ln
                   for ln in (out.stderr + out.stdout).strip().splitlines() if ln.strip()):
            raise SubmissionError(f"scancel failed: {said}")

def queue_states(job_ids: tp.Iterable[str]) -> tp.Dict[str, str]:
    """One ``squeue`` call: job id (``A_i`` for array tasks) -> SLURM state, for the
    jobs still known to the queue. Raises SubmissionError when squeue fails."""
    wanted = sorted({j.split("_")[0] for j in job_ids})
    if not wanted:
        return {}
    try:
        out = run_command(["squeue", "-h", "-r", "-o", "%i %T %r", "-j", ",".join(wanted)], timeout=60)
    except (OSError, TimeoutExpired) as exc:
        raise SubmissionError(f"squeue did not answer: {exc}") from None
    if out.returncode != 0 and "Invalid job id" not in out.stderr:
        raise SubmissionError(f"squeue failed: {first_error_line(out.stderr)}")
    return parse_queue(out.stdout)


def hold(job_ids: tp.Sequence[str], release: bool = False) -> None:
    """``scontrol hold`` (``release``: ``scontrol release``) of these jobs, one call.
    Raises SubmissionError naming scontrol's words."""
    if not job_ids:
        return
    verb = "release" if release else "hold"
    out = run_command(["scontrol", verb, ",".join(job_ids)], timeout=60)
    if out.returncode != 0:
        raise SubmissionError(f"scontrol {verb} failed: {first_error_line(out.stderr)}")


def sbatch_test_only(script: str) -> "CompletedProcess[str]":
    """``sbatch --test-only`` of a batch script: whether the scheduler would take it."""
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as fh:
        fh.write(script)
    try:
        return run_command(["sbatch", "--test-only", fh.name], timeout=120)
    except TimeoutExpired:
        raise SubmissionError("sbatch --test-only did not answer within 120 s; "
                              "is slurmctld up? (`scontrol ping`)") from None
    finally:
        os.unlink(fh.name)


def sbatch_wrap(options: tp.Sequence[str], command: tp.Sequence[str]) -> str:
    """``sbatch --parsable OPTIONS --wrap COMMAND``; the job id."""
    import shlex

    out = run_command(["sbatch", "--parsable", *options, "--wrap", " ".join(shlex.quote(c) for c in command)],
                      timeout=60)
    if out.returncode != 0:
        raise SubmissionError(f"sbatch failed: {first_error_line(out.stderr + out.stdout)}")
    return out.stdout.strip().split(";")[0]


