"""``python -m ptslurm.job SWEEP_DIR INDEX``: how the local backend starts a point. A module
of its own, so that ``ptslurm.job.point`` is imported once, under its own name (running it with
``-m`` would make a second copy as ``__main__``, whose active run the Trainer cannot see)."""
import sys

from ptslurm.job import interrupt

interrupt.install()  # first: a stop while the rest loads is recorded, not fatal (a packed point's too)

from ptslurm.job.point import main  # noqa: E402 - after the handler, on purpose

if __name__ == "__main__":
    sys.exit(main())
