"""ptslurm: sacred experiment sweeps on SLURM, one storage dir per point.

The public API; importing it is cheap (no torch, no sacred).
"""
__version__ = "0.1.0"

from .errors import PtslurmError  # noqa: E402

__all__ = ["__version__", "PtslurmError", "Interrupted", "get_storage_dir", "get_new_storage_dir", "should_stop",
           "report_progress", "active_run", "distributed", "init_process_group",
           "Configurable", "Model", "Trainer", "Adam", "SGD", "Batches", "dump_config", "collect", "to_frame",
           "Client", "Sweep"]

_LAZY = {"Interrupted": "job.interrupt", "get_storage_dir": "job.runtime", "should_stop": "job.runtime",
         "dump_config": "job.runtime", "report_progress": "job.runtime", "active_run": "job.runtime",
         "distributed": "job.runtime", "init_process_group": "job.runtime",
         "get_new_storage_dir": "records.claims", "Configurable": "train.configurable", "Model": "train.trainer",
         "Trainer": "train.trainer", "Adam": "train.trainer", "SGD": "train.trainer", "Batches": "train.batches",
         "collect": "read.results", "to_frame": "read.results",
         "Client": "api", "Sweep": "api"}


import typing as _tp  # noqa: E402

if _tp.TYPE_CHECKING:  # what type checkers see of the lazy names below (nothing is imported at run time)
    from .api import Client, Sweep
    from .train.configurable import Configurable
    from .job.interrupt import Interrupted
    from .read.results import collect, to_frame
    from .job.runtime import (active_run, distributed, dump_config, get_storage_dir, init_process_group,
                              report_progress, should_stop)
    from .records.claims import get_new_storage_dir
    from .train.batches import Batches
    from .train.trainer import SGD, Adam, Model, Trainer


def __getattr__(name):
    """Names are imported on first use, so ``import ptslurm`` (and ``ptslurm --help``) stays
    light: no torch, no sacred, not even the job runtime."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'ptslurm' has no attribute {name!r}")
