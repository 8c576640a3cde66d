"""ptslurm: sacred experiment sweeps on SLURM, one storage dir per point.

The public API; importing it is cheap (no torch, no sacred).
"""
__version__ = "0.1.0"

from .errors import PtslurmError  # noqa: E402
from .job import get_storage_dir  # noqa: E402
from .storage import get_new_storage_dir  # noqa: E402

__all__ = ["__version__", "PtslurmError", "get_storage_dir", "get_new_storage_dir"]
