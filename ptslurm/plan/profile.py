"""Cluster profiles: per-user defaults for resources and options, in YAML, written by
``ptslurm init`` from templates/. Looked up in order: ``--profile FILE``, ``$PTSLURM_PROFILE``,
``./ptslurm.yaml``, ``~/.config/ptslurm/profile.yaml``. Command-line options win."""
import os
import typing as tp
from pathlib import Path

from ..errors import StorageError, UsageError

PROFILE_NAME = "ptslurm.yaml"
USER_PROFILE = "~/.config/ptslurm/profile.yaml"
TOP_KEYS = ("executor", "root", "storage_key", "jobs", "resources")
RESOURCE_KEYS = ("partition", "gpus", "cpus", "nodes", "tasks_per_node", "mem_gb", "time", "account", "qos", "constraint",
                 "array_parallelism", "signal_delay_s", "max_requeues", "max_attempts", "points_per_job", "sbatch_args",
                 "setup", "srun_args")


def find(explicit: tp.Optional[str] = None) -> tp.Optional[Path]:
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise UsageError(f"profile {explicit!r} does not exist; create one with `ptslurm init`")
        return path
    for candidate in (os.environ.get("PTSLURM_PROFILE"), PROFILE_NAME, USER_PROFILE):
        if candidate and Path(candidate).expanduser().is_file():
            if candidate == PROFILE_NAME:
                _require_trusted(Path(candidate))
            return Path(candidate).expanduser()
    return None


def _require_trusted(path: Path) -> None:
    """A profile picked up from the folder a command runs in (a shared /tmp-style folder, a
    colleague's project) decides what the jobs run: only one that is the user's own and
    that nobody else may write is taken without being named."""
    import stat

    st = path.stat()
    if st.st_uid != os.geteuid():
        from ..records.locks import user_name

        raise UsageError(f"profile {str(path.resolve())!r} in this folder belongs to {user_name(st.st_uid)}: "
                         f"ptslurm does not take another user's settings unasked; read it and pass --profile "
                         f"{PROFILE_NAME} to use it, "
                         f"or run from another folder")
    if st.st_mode & stat.S_IWOTH:  # (group-writable is umask 002's normal: the group may edit the code too)
        raise UsageError(f"profile {str(path.resolve())!r} in this folder may be written by anyone: "
                         f"`chmod o-w {PROFILE_NAME}`, or pass --profile {PROFILE_NAME} to use it as it is")


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
    for key, kinds in TYPES.items():
        where, value = (res, res.get(key)) if key in RESOURCE_KEYS else (data, data.get(key))
        if value is not None and (not isinstance(value, kinds) or isinstance(value, bool) and bool not in kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise UsageError(f"profile {str(path)!r}: {key} must be {names}, got {value!r}")
    data["resources"] = res
    return data


# what each profile value must be (anything else is one line naming it, not a traceback later)
TYPES: tp.Dict[str, tp.Tuple[type, ...]] = {
    "executor": (str,), "root": (str,), "storage_key": (str,), "jobs": (int,), "partition": (str,),
    "gpus": (int,), "cpus": (int,), "nodes": (int,), "tasks_per_node": (int,), "mem_gb": (int, float),
    "time": (int, str), "account": (str,), "qos": (str,), "constraint": (str,), "array_parallelism": (int,),
    "signal_delay_s": (int,), "max_requeues": (int,), "max_attempts": (int,), "points_per_job": (int,),
    "sbatch_args": (dict,), "setup": (list, str), "srun_args": (list, str)}


def describe(path: Path, data: dict) -> str:
    """The sweep's first line when a profile applies: which file, and what it sets."""
    def shown(value: tp.Any) -> str:  # a newline in a value is shown, not printed
        text = str(value)
        return repr(text) if any(ord(c) < 32 or ord(c) == 127 for c in text) else text

    set_ = [f"{k}={shown(v)}" for k, v in data.items() if k != "resources" and v is not None]
    set_ += [f"{k}={shown(v)}" for k, v in (data.get("resources") or {}).items() if v not in (None, {}, [])]
    return (f"profile {path}: {', '.join(set_) or 'sets nothing'} (command-line options win; "
            f"--profile FILE for another)")


TIME_FORMS = "minutes (90), M:S, H:M:S (1:30:00), D-H, D-H:M or D-H:M:S (0-08:00 is 8 hours)"


def parse_time(value: tp.Any) -> tp.Optional[int]:
    """Minutes (seconds rounded up, as SLURM does) from an int or any form ``sbatch --time``
    takes: ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``. One parser for the CLI,
    profiles and sweep files: ``slurmtext.slurm_minutes``."""
    import math

    from ..schedulers.slurmtext import slurm_minutes

    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise UsageError(f"bad time {value!r}: use {TIME_FORMS}")
    text = str(value).strip()
    if text.startswith("-"):
        raise UsageError(f"bad time {value!r}: must be positive")
    try:
        minutes = slurm_minutes(text)
    except ValueError:
        minutes = None
    if minutes is None or not text or text.upper() in ("UNLIMITED", "INFINITE"):
        raise UsageError(f"bad time {value!r}: use {TIME_FORMS}")
    if minutes <= 0:
        raise UsageError(f"bad time {value!r}: must be positive")
    return math.ceil(minutes)


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
        data = template(name)
        if name == "profile.yaml":
            data = fit_to_cluster(data.decode()).encode()
        dst.write_bytes(data)
    return [d for _, d in pairs]


def fit_to_cluster(text: str) -> str:
    """The profile template with ``cpus`` and ``mem_gb`` lowered to what the smallest node of
    the default partition has, when a SLURM controller answers here (a 2-CPU node would
    reject every job of a 4-CPU default)."""
    from .. import schedulers

    if schedulers.here()[0] != "up":
        return text
    found = schedulers.slurm().nodes(None)
    if not found:
        return text
    cpus, mem_mb = min(c for c, _, _ in found), min(m for _, m, _ in found)
    mem_gb = max(1, int(mem_mb * 0.9 / 1024))
    lines = []
    for line in text.splitlines(keepends=True):
        key = line.strip().split(":", 1)[0]
        if key == "cpus" and cpus < 4:
            line = f"  cpus: {cpus}             # per task (--cpus-per-task); this cluster's smallest node has {cpus}\n"
        elif key == "mem_gb" and mem_gb < 16:
            line = f"  mem_gb: {mem_gb}           # the smallest node has {mem_mb} MB\n"
        lines.append(line)
    return "".join(lines)
