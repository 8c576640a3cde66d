"""The one module that starts other programs, whichever asks: a program run to its end with
its output as text (the scheduler's commands go through ``commands``), git, the Python
processes of the pre-flight and of the end-of-sweep hooks, the processes of local and packed
points, ``nvidia-smi`` and the user's ``--notify`` command. Every call has a timeout or is a
process its caller watches.
"""
import os
import shutil
import subprocess
import sys
import typing as tp
from pathlib import Path

TimeoutExpired = subprocess.TimeoutExpired
Popen = subprocess.Popen
CompletedProcess = subprocess.CompletedProcess


def run_command(args: tp.Sequence[str], timeout: float = 60, **kwargs: tp.Any) -> "subprocess.CompletedProcess[str]":
    """Run a program to its end; its output as text."""
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, **kwargs)


def start_reading(args: tp.Sequence[str]) -> "subprocess.Popen[str]":
    """Start a program whose output (text) its caller reads later with ``communicate``."""
    return subprocess.Popen(list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def answer(args: tp.Sequence[str], timeout: float) -> tp.Optional["subprocess.CompletedProcess[str]"]:
    """``run_command``, or None when the program is missing or did not answer in time."""
    try:
        return run_command(args, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None


def has_nvidia_smi() -> bool:
    return shutil.which("nvidia-smi") is not None


def gpu_query() -> tp.Optional[str]:
    """``nvidia-smi``'s index, utilisation and memory of each GPU it sees (CSV, no units), or
    None when it does not answer."""
    out = answer(["nvidia-smi", "--query-gpu=index,utilization.gpu,memory.used,memory.total",
                   "--format=csv,noheader,nounits"], 20)
    return out.stdout if out is not None and out.returncode == 0 else None


def git_state(folder: Path) -> tp.Dict[str, tp.Any]:
    """Commit, dirty state and remote of the repository holding ``folder``: ``{"commit":
    None, "reason": ...}`` when it is no repository or has no commits yet."""
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")

    def git(*args: str) -> "subprocess.CompletedProcess[str]":
        return run_command(["git", "-C", str(folder), *args], timeout=30, env=env)

    try:
        top = git("rev-parse", "--show-toplevel")
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None, "reason": "git is not available"}
    if top.returncode != 0:
        return {"commit": None, "dirty": None, "reason": "not in a git repository"}
    head = git("rev-parse", "--verify", "-q", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
    url = git("config", "--get", "remote.origin.url").stdout.strip() or top.stdout.strip()
    if head.returncode != 0:
        return {"commit": None, "dirty": dirty, "url": url, "reason": "the repository has no commits yet"}
    return {"commit": head.stdout.strip(), "dirty": dirty, "url": url}


def python_module(module: str, args: tp.Sequence[str], cwd: Path, timeout: float,
                  env: tp.Optional[tp.Mapping[str, str]] = None) -> "subprocess.CompletedProcess[str]":
    """``python -m MODULE ARGS`` with this interpreter, in ``cwd``, to its end (stdin closed).
    Raises subprocess.TimeoutExpired (``TimeoutExpired``) after ``timeout``."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=dict(env or os.environ),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


def start_point(command: tp.Sequence[str], log: tp.IO[str], cwd: tp.Optional[Path]) -> "subprocess.Popen[bytes]":
    """Start a local point: output appended to ``log``, stdin closed, in its own session and
    process group (cancel stops the point and whatever it started)."""
    return subprocess.Popen(list(command), stdout=log, cwd=cwd, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)


def start_packed(command: tp.Sequence[str], log: tp.IO[str], env: tp.Mapping[str, str],
                 cpus: tp.Sequence[int] = ()) -> "subprocess.Popen[bytes]":
    """Start a point of a packed job: output appended to ``log``, stdin closed, in the job's
    process group (the scheduler's signals reach it), pinned to ``cpus`` when given; SIGTERM
    when the job's process dies, however (``PR_SET_PDEATHSIG``: without cgroups it would train
    on unseen): it stops as at any stop, its attempt recorded."""
    import ctypes
    import signal

    parent, prctl = os.getpid(), getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)

    def prepare() -> None:
        if prctl is not None:  # Linux
            prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
            if os.getppid() != parent:  # the job's process died before that took effect
                os._exit(143)
        if cpus:
            os.sched_setaffinity(0, set(cpus))

    return subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=dict(env), preexec_fn=prepare)


def run_notify(command: str, env: tp.Mapping[str, str], timeout: float = 120) -> "subprocess.CompletedProcess[str]":
    """A sweep's ``--notify`` command, through the shell (the user wrote it for one), stdin
    closed. Raises OSError or subprocess.TimeoutExpired."""
    return subprocess.run(command, shell=True, env=dict(env), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout)
