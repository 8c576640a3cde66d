"""Stop requests: a signal handler that only sets a flag, the question user code asks, and a
watchdog for code that never asks.

SLURM sends the job's ``--signal`` (USR2, which NCCL leaves alone, unlike USR1) before a time
limit and at the start of a preemption grace period, and SIGTERM on ``scontrol requeue``,
``scancel`` and at the end. The training loop checks ``should_stop()`` at each step boundary,
checkpoints and raises ``Interrupted``; sacred records that attempt as INTERRUPTED.

Code that does not ask (padertorch's Trainer, Lightning, a plain loop saving its own
checkpoints) would run on until SIGKILL. So the handler also arms a watchdog: when nobody
asked ``should_stop()`` within ``UNHEEDED_AFTER_S`` of the first signal (right away, 2 s,
for code that never asked at all), the job's ``on_unheeded`` callback records the attempt,
requeues it and ends the process; the next attempt resumes from the code's own checkpoint.
"""
import os
import signal
import threading
import typing as tp

STOP_SIGNALS = (signal.SIGUSR2, signal.SIGTERM)
NEVER_ASKED_S = 2.0  # code that never called should_stop(): it will not start now
UNHEEDED_AFTER_S = float(os.environ.get("PTSLURM_UNHEEDED_AFTER_S", "30"))
_received: tp.List[int] = []
_state: tp.Dict[str, tp.Any] = {"asked": False, "asked_after_signal": False, "watchdog": None, "finishing": False}
# the real os._exit, whatever patches it later (the experiment's import guard patches it while
# the main thread imports; the watchdog must still be able to end the process then)
_exit = os._exit
_on_unheeded: tp.List[tp.Callable[[], None]] = []


class Interrupted(KeyboardInterrupt):
    """Raised after a stop request has been honoured (checkpoint written). sacred treats it
    like Ctrl-C and marks the run INTERRUPTED, not FAILED."""

    STATUS = "INTERRUPTED"


def _flag(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    _received.append(signum)
    if _on_unheeded and _state["watchdog"] is None:
        _arm()


def _arm() -> None:
    delay = UNHEEDED_AFTER_S if _state["asked"] else NEVER_ASKED_S
    timer = threading.Timer(delay, _check_heeded)
    timer.daemon = True
    _state["watchdog"] = timer
    timer.start()


def _check_heeded() -> None:
    if _state["asked_after_signal"] or _state["finishing"]:
        return
    for callback in _on_unheeded:
        callback()


def on_unheeded(callback: tp.Optional[tp.Callable[[], None]]) -> None:
    """Register what to do when a stop request goes unheeded (None: nothing). A stop that
    arrived before (while the attempt was starting) arms the watchdog now."""
    _on_unheeded.clear()
    if callback is not None:
        _on_unheeded.append(callback)
        if _received and _state["watchdog"] is None:
            _arm()


def install() -> None:
    """Replace the handlers of USR2 and TERM (also submitit's) by one that sets a flag, and
    give SIGCONT (sent with every stop) back its default: submitit logs "Bypassing signal
    SIGCONT" for it, three times a stop."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _flag)
    signal.signal(signal.SIGCONT, signal.SIG_DFL)


def should_stop() -> bool:
    """True once SLURM (or anyone) asked this job to stop: checkpoint and return soon."""
    _state["asked"] = True
    if _received:
        _state["asked_after_signal"] = True
        return True
    return False


def heeded() -> bool:
    """Whether the running code was told to stop: ``should_stop()`` returned True to it."""
    return bool(_state["asked_after_signal"])


def finishing() -> None:
    """The code's main function has returned: the watchdog no longer ends the process (the
    run only records its end now)."""
    _state["finishing"] = True


def never_asked() -> bool:
    """Whether the running code never called ``should_stop()``."""
    return not _state["asked"]


def signals_received() -> int:
    """How many stop signals arrived so far."""
    return len(_received)


def received() -> tp.Optional[int]:
    """The first stop signal received, or None."""
    return _received[0] if _received else None


def request_stop(signum: int = signal.SIGUSR2) -> None:
    """Ask the running loop to stop as if ``signum`` had arrived (for tests and user code)."""
    _received.append(signum)


def reset() -> None:
    _received.clear()
    timer = _state["watchdog"]
    if isinstance(timer, threading.Timer):
        timer.cancel()
    _state.update(asked=False, asked_after_signal=False, watchdog=None, finishing=False)


def end_process(status: int = 143) -> None:
    """End this process now, as an unhandled SIGTERM would (exit status 143; 0 for a stop
    that went as planned: the job is requeued, srun need not report an error), from any
    thread (the watchdog's: signal handlers can only be changed in the main thread). The
    attempt is recorded before this; nothing of the running code's state is kept but its
    checkpoints."""
    _exit(status)
