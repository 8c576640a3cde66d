"""What a command line asks for, from its options and the profile: the resources of a sweep
(command-line options over the profile's), the resource changes of a resubmission, and the
one-line texts (notes, notify commands). Plain functions over parsed arguments."""
import typing as tp

from .argvalues import UNSET
from ..errors import UsageError


#: the resource options whose value is a Resources field of the same name (``--time`` is
#: ``timeout_min``, ``--sbatch``, ``--setup``, ``--srun-arg`` are lists)
SCALAR_OPTIONS = ("partition", "gpus", "cpus", "nodes", "tasks_per_node", "mem_gb", "account", "qos", "constraint",
                  "array_parallelism", "signal_delay_s", "max_requeues", "max_attempts", "points_per_job")


def sbatch_options(items: tp.Iterable[str]) -> tp.Dict[str, tp.Any]:
    """``--sbatch KEY=VALUE`` (or ``--sbatch FLAG``) options as sbatch_args."""
    out: tp.Dict[str, tp.Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key.strip().lstrip("-"):
            raise UsageError(f"--sbatch {item!r}: expected KEY=VALUE or a FLAG, e.g. --sbatch mail-type=END")
        out[key.strip().lstrip("-")] = value if sep else True  # `--sbatch exclusive`: a flag
    return out


def resources(args: tp.Any, prof: dict, prof_path: tp.Any = None) -> tp.Any:
    """The Resources a sweep command asks for: the profile's, the command line's over them."""
    from ..plan.profile import parse_time
    from ..records.spec import Resources

    res = dict(prof.get("resources") or {})
    from_profile = f"profile {prof_path}"
    origins = {key: from_profile for key, value in res.items() if value is not None and key != "sbatch_args"}
    for key in SCALAR_OPTIONS:
        value = getattr(args, key)
        if value is UNSET:  # `--mem none`: drop the profile's value, the cluster's default applies
            res[key] = None
            origins.pop(key, None)
        elif value is not None:
            res[key] = value
            origins[key] = "command line"
    if args.time is not None:
        res["time"] = None if args.time is UNSET else args.time
        origins["time"] = "command line"
    for key in ("setup", "srun_args"):  # lines join: the profile's, (the sweep file's,) the command line's
        mine = res.get(key) or ()
        given = list(getattr(args, key, None) or ())
        res[key] = tuple([mine] if isinstance(mine, str) else mine) + tuple(given)
        if given:
            origins[f"{key}:command line"] = str(len(given))
    extra = dict(res.pop("sbatch_args", None) or {})
    origins.update({key: from_profile for key in extra})
    options = sbatch_options(args.sbatch)
    extra.update(options)
    origins.update({name: "command line" for name in options})
    timeout = parse_time(res.pop("time", None))
    res["origins"] = origins
    return Resources(timeout_min=timeout, sbatch_args=extra, **res)  # sweep.check_resources checks the values


def resource_changes(args: tp.Any) -> tp.Dict[str, tp.Any]:
    """The resource options given on a command line (``resubmit``): Resources fields."""
    from ..plan.profile import parse_time

    changes: tp.Dict[str, tp.Any] = {}
    for key in SCALAR_OPTIONS:
        value = getattr(args, key, None)
        if value is not None:
            changes[key] = None if value is UNSET else value
    if getattr(args, "time", None) is not None:
        changes["timeout_min"] = None if args.time is UNSET else parse_time(args.time)
    for key in ("setup", "srun_args"):
        if getattr(args, key, None):
            changes[key] = tuple(getattr(args, key))
    extra = sbatch_options(getattr(args, "sbatch", None) or ())
    if extra:
        changes["sbatch_args"] = extra
    return changes


def one_line(text: tp.Optional[str], option: str) -> tp.Optional[str]:
    """``text`` when it is one line of at most 1000 characters; UsageError naming ``option``."""
    if text is None:
        return None
    if not text.strip() or len(text) > 1000 or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise UsageError(f"{option} takes one line of text (at most 1000 characters, no newlines or tabs)")
    return text
