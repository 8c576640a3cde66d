"""ptslurm: sacred experiment sweeps on SLURM, one storage dir per point.

The public API; importing it is cheap (no torch, no sacred).
"""
__version__ = "0.1.0"

from .errors import PtslurmError  # noqa: E402

__all__ = ["__version__", "PtslurmError", "Interrupted", "get_storage_dir", "get_new_storage_dir", "should_stop",
           "report_progress", "active_run", "distributed", "init_process_group",
           "Configurable", "Model", "Trainer", "Adam", "SGD", "Batches", "dump_config", "collect", "to_frame",
           "Client", "Sweep"]

_LAZY = {"Interrupted": "interrupt", "get_storage_dir": "runtime", "should_stop": "runtime", "dump_config": "runtime",
         "report_progress": "runtime", "active_run": "runtime", "distributed": "runtime",
         "init_process_group": "runtime",
         "get_new_storage_dir": "claims", "Configurable": "configurable", "Model": "trainer", "Trainer": "trainer",
         "Adam": "trainer", "SGD": "trainer", "Batches": "batches", "collect": "results", "to_frame": "results",
         "Client": "api", "Sweep": "api"}


import typing as _tp  # noqa: E402

if _tp.TYPE_CHECKING:  # what type checkers see of the lazy names below (nothing is imported at run time)
    from .api import Client, Sweep
    from .configurable import Configurable
    from .interrupt import Interrupted
    from .results import collect, to_frame
    from .runtime import (active_run, distributed, dump_config, get_storage_dir, init_process_group,
                          report_progress, should_stop)
    from .claims import get_new_storage_dir
    from .batches import Batches
    from .trainer import SGD, Adam, Model, Trainer


def __getattr__(name):
    """Names are imported on first use, so ``import ptslurm`` (and ``ptslurm --help``) stays
    light: no torch, no sacred, not even the job runtime."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'ptslurm' has no attribute {name!r}")
