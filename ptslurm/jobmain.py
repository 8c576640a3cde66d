"""``python -m ptslurm.jobmain SWEEP_DIR INDEX``: how the local backend starts a point. A module
of its own, so that ``ptslurm.job`` is imported once, under its own name (running it with
``-m`` would make a second copy as ``__main__``, whose active run the Trainer cannot see)."""
import sys

from ptslurm.job import main

if __name__ == "__main__":
    sys.exit(main())
