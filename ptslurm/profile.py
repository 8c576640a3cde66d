"""Cluster profiles: per-user defaults for resources and options, in YAML, written by
``ptslurm init`` from templates/. Looked up in order: ``--profile FILE``, ``$PTSLURM_PROFILE``,
``./ptslurm.yaml``, ``~/.config/ptslurm/profile.yaml``. Command-line options win."""
import os
import typing as tp
from pathlib import Path

from .errors import StorageError, UsageError

PROFILE_NAME = "ptslurm.yaml"
USER_PROFILE = "~/.config/ptslurm/profile.yaml"
TOP_KEYS = ("executor", "root", "storage_key", "jobs", "resources")
RESOURCE_KEYS = ("partition", "gpus", "cpus", "nodes", "tasks_per_node", "mem_gb", "time", "account", "qos", "constraint",
                 "array_parallelism", "signal_delay_s", "max_requeues", "sbatch_args")


def find(explicit: tp.Optional[str] = None) -> tp.Optional[Path]:
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise UsageError(f"profile {explicit!r} does not exist; create one with `ptslurm init`")
        return path
    for candidate in (os.environ.get("PTSLURM_PROFILE"), PROFILE_NAME, USER_PROFILE):
        if candidate and Path(candidate).expanduser().is_file():
            return Path(candidate).expanduser()
    return None


def load(path: tp.Optional[Path]) -> dict:
    """The profile as a dict (``{}`` without one). Raises UsageError for unknown keys."""
    if path is None:
        return {}
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"profile {str(path)!r} is not readable YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UsageError(f"profile {str(path)!r}: expected a mapping of {', '.join(TOP_KEYS)}")
    for key in data:
        if key not in TOP_KEYS:
            raise UsageError(f"profile {str(path)!r}: unknown key {key!r} (valid: {', '.join(TOP_KEYS)})")
    res = data.get("resources") or {}
    if not isinstance(res, dict):
        raise UsageError(f"profile {str(path)!r}: resources must be a mapping")
    for key in res:
        if key not in RESOURCE_KEYS:
            raise UsageError(f"profile {str(path)!r}: unknown resource {key!r} (valid: {', '.join(RESOURCE_KEYS)})")
    data["resources"] = res
    return data


def parse_time(value: tp.Any) -> tp.Optional[int]:
    """Minutes from ``90``, ``"90"``, ``"1:30:00"``, ``"2-00:00:00"`` or ``"45:00"`` (MM:SS)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        minutes = value
    else:
        text = str(value).strip()
        if text.startswith("-"):
            raise UsageError(f"bad time {value!r}: must be positive")
        try:
            day_text, _, rest = text.rpartition("-") if "-" in text else ("0", "", text)
            parts = [int(p) for p in rest.split(":")]
            days = int(day_text or 0)
        except ValueError:
            raise UsageError(f"bad time {value!r}: use minutes (90), H:MM:SS (1:30:00) or D-HH:MM:SS") from None
        if len(parts) == 1:
            minutes = parts[0]
        elif len(parts) == 2:
            minutes = parts[0] + (1 if parts[1] else 0)
        elif len(parts) == 3:
            minutes = parts[0] * 60 + parts[1] + (1 if parts[2] else 0)
        else:
            raise UsageError(f"bad time {value!r}: use minutes (90), H:MM:SS (1:30:00) or D-HH:MM:SS")
        minutes += days * 24 * 60
    if minutes <= 0:
        raise UsageError(f"bad time {value!r}: must be positive")
    return minutes


def template(name: str) -> bytes:
    """A file of ``templates/`` (package data of ``ptslurm.templates``)."""
    from importlib import resources

    try:
        return resources.files("ptslurm.templates").joinpath(name).read_bytes()
    except (ModuleNotFoundError, FileNotFoundError):
        raise StorageError(f"ptslurm's template {name!r} is missing from this installation; "
                           f"reinstall ptslurm") from None


def init(directory: Path, force: bool = False) -> tp.List[Path]:
    """Write ``ptslurm.yaml`` and ``experiment.py`` from templates/ into ``directory``.
    Refuses to overwrite unless ``force``; writes nothing when any target exists."""
    pairs = [("profile.yaml", directory / PROFILE_NAME), ("experiment.py", directory / "experiment.py")]
    existing = [str(dst) for _, dst in pairs if dst.exists()]
    if existing and not force:
        raise UsageError(f"{existing[0]!r} already exists; pass --force to overwrite")
    if not directory.is_dir():
        raise UsageError(f"{str(directory)!r} is not a directory")
    for name, dst in pairs:
        dst.write_bytes(template(name))
    return [d for _, d in pairs]
