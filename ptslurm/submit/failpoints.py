"""Crash tests: named points of the crash-safe protocols where ``PTSLURM_FAILPOINT=<name>``
ends the process as SIGKILL would, so a test can kill it exactly there and check that the
same command run again finishes the work once.

``created`` (``sweep``): a local sweep's dir and manifest made, no point started yet;
``recorded``, ``extended``, ``queued``, ``acted`` (``promote``): a search decision written and
not acted on, its points' new budget saved and not queued or run, their jobs queued and not
recorded, marked done with its local points not run yet; ``asked`` (``optuna_search``): a
trial asked of Optuna, not yet given to a point.
"""
import os
import signal


def failpoint(name: str) -> None:
    if os.environ.get("PTSLURM_FAILPOINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
