"""The first code a SLURM job runs: ``python -u -m ptslurm.job.start -u -m submitit.core._submit
FOLDER`` (submitit's command, behind ptslurm's). ptslurm's stop handler goes in before anything
else is imported, so a stop signal that arrives while Python, submitit and the job's pickle
load (SLURM may signal a short job early) is recorded, not fatal (USR2's default action ends
the process); then submitit's runner takes over, and the attempt installs the handler again
after submitit's own and arms the watchdog for a stop that came meanwhile."""
import sys

from . import interrupt

interrupt.install()

from ..schedulers.submitit_adapter import run_submitted  # noqa: E402 - after the handler, on purpose

if __name__ == "__main__":
    run_submitted(sys.argv[1:])
