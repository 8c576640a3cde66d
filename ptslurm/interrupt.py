"""Stop requests: a signal handler that only sets a flag, and the question user code asks.

SLURM sends the job's ``--signal`` (USR2, which NCCL leaves alone, unlike USR1) before a time
limit and at the start of a preemption grace period, and SIGTERM on ``scontrol requeue`` and
at the end. The training loop checks ``should_stop()`` at each step boundary, checkpoints
and raises ``Interrupted``; sacred records that attempt as INTERRUPTED.
"""
import signal
import typing as tp

STOP_SIGNALS = (signal.SIGUSR2, signal.SIGTERM)
_received: tp.List[int] = []


class Interrupted(KeyboardInterrupt):
    """Raised after a stop request has been honoured (checkpoint written). sacred treats it
    like Ctrl-C and marks the run INTERRUPTED, not FAILED."""

    STATUS = "INTERRUPTED"


def _flag(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    _received.append(signum)


def install() -> None:
    """Replace the handlers of USR2 and TERM (also submitit's) by one that sets a flag."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _flag)


def should_stop() -> bool:
    """True once SLURM (or anyone) asked this job to stop: checkpoint and return soon."""
    return bool(_received)


def received() -> tp.Optional[int]:
    """The first stop signal received, or None."""
    return _received[0] if _received else None


def request_stop(signum: int = signal.SIGUSR2) -> None:
    """Ask the running loop to stop as if ``signum`` had arrived (for tests and user code)."""
    _received.append(signum)


def reset() -> None:
    _received.clear()
