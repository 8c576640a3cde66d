"""Frozen data that flows one way: CLI -> spec -> JSON on disk -> job.

A ``Point`` is one grid point (dotted config updates plus named configs); ``Resources`` are
the per-point scheduler requests. Both round-trip through plain JSON.
"""
import dataclasses
import json
import typing as tp


def _freeze(value):
    """A hashable, order-preserving stand-in for a JSON value (for de-duplication)."""
    return json.dumps(value, sort_keys=True, default=repr)


def varied_values(updates: tp.Mapping[str, tp.Any], named_configs: tp.Sequence[str],
                  keys: tp.Iterable[str]) -> tp.Dict[str, tp.Any]:
    """A point's values of the varied ``keys``: a named-config axis as the names joined by
    spaces (as status and collect show it), a key the point does not set left out."""
    out: tp.Dict[str, tp.Any] = {}
    for key in keys:
        if key == "named_configs":
            out[key] = " ".join(named_configs)
        elif key in updates:
            out[key] = updates[key]
    return out


@dataclasses.dataclass(frozen=True)
class Point:
    """One point of a sweep.

    ``updates`` maps dotted config keys to values in the order the axes were given;
    ``named_configs`` are sacred named configs applied in order; ``varied`` lists the keys
    (``"named_configs"`` for a named-config axis) whose value differs across the sweep.
    """

    index: int
    updates: tp.Dict[str, tp.Any]
    named_configs: tp.Tuple[str, ...] = ()
    varied: tp.Tuple[str, ...] = ()
    # what a sweep file's ``resources:`` asks for this point (Resources field names -> values)
    resources: tp.Dict[str, tp.Any] = dataclasses.field(default_factory=dict, compare=False)

    def varied_values(self, keys: tp.Optional[tp.Iterable[str]] = None) -> tp.Dict[str, tp.Any]:
        """The values of the varied keys (``keys``, default ``self.varied``) for this point
        (``varied_values``)."""
        return varied_values(self.updates, self.named_configs, self.varied if keys is None else keys)

    @property
    def label(self) -> str:
        """Short human label, e.g. ``lr=0.001 batch_size=16``."""
        parts = []
        for key, value in self.varied_values().items():
            if key == "named_configs":
                parts.append(value or "-")
            else:
                parts.append(f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}")
        return " ".join(parts) or "(single point)"

    def identity(self) -> str:
        """A canonical string that is equal for points with the same config request."""
        return _freeze([self.updates, list(self.named_configs)])

    def to_json(self) -> dict:
        return {
            "index": self.index,
            "updates": self.updates,
            "named_configs": list(self.named_configs),
            "varied": list(self.varied),
        }

    @classmethod
    def from_json(cls, data: dict) -> "Point":
        return cls(
            index=int(data["index"]),
            updates=dict(data["updates"]),
            named_configs=tuple(data.get("named_configs", ())),
            varied=tuple(data.get("varied", ())),
        )


DEFAULT_SIGNAL_DELAY_S = 120


def default_signal_delay(timeout_min: tp.Optional[float]) -> int:
    """The stop signal's lead when ``--signal-delay`` is not given: 120 s before the limit, or
    a quarter of a limit shorter than 8 minutes (15 s for a 1-minute job). slurmctld checks
    limits every 30 s and sends the signal at the first check within lead + 30 s of the end,
    so a lead of half a short limit would often signal a job as it starts."""
    if timeout_min is None or timeout_min * 60 >= 4 * DEFAULT_SIGNAL_DELAY_S:
        return DEFAULT_SIGNAL_DELAY_S
    return max(10, int(timeout_min * 60 // 4))


@dataclasses.dataclass(frozen=True)
class Resources:
    """What one point asks the scheduler for. ``None`` means: the cluster's default."""

    partition: tp.Optional[str] = None
    gpus: int = 0  # per node
    cpus: tp.Optional[int] = None  # per task
    nodes: int = 1
    tasks_per_node: tp.Optional[int] = None  # None: one task per GPU, one task on CPU-only points
    mem_gb: tp.Optional[float] = None
    timeout_min: tp.Optional[int] = None
    account: tp.Optional[str] = None
    qos: tp.Optional[str] = None
    constraint: tp.Optional[str] = None
    array_parallelism: tp.Optional[int] = None
    signal_delay_s: tp.Optional[int] = None  # None: DEFAULT_SIGNAL_DELAY_S, or half a shorter --time
    max_requeues: int = 3  # stops in a row without progress (and failures) that are requeued
    max_attempts: tp.Optional[int] = None  # an optional cap on the attempts of a submission
    points_per_job: int = 1  # points sharing one array task (its allocation), each its own process
    sbatch_args: tp.Dict[str, str] = dataclasses.field(default_factory=dict)
    setup: tp.Tuple[str, ...] = ()  # shell lines the batch script runs before the job (`module load cuda/12`)
    srun_args: tp.Tuple[str, ...] = ()  # extra arguments of the job's srun
    # where each value came from ("profile ./ptslurm.yaml", "command line"), for messages;
    # never written to disk nor part of the sweep's identity
    origins: tp.Dict[str, str] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:  # lists from JSON or YAML: tuples, so that equal requests are equal
        for name in ("setup", "srun_args"):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                object.__setattr__(self, name, tuple([value] if isinstance(value, str) else value or ()))

    @property
    def tasks(self) -> int:
        """Tasks (ranks) per node: ``tasks_per_node``, else one per GPU, else one; packed
        points (``points_per_job`` > 1) share the job's GPUs, one task in all."""
        return self.tasks_per_node or (1 if self.points_per_job > 1 else self.gpus) or 1

    @property
    def world_size(self) -> int:
        """Ranks of a point: one srun step launches them all."""
        return self.nodes * self.tasks

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out.pop("origins")
        return out

    def requested(self) -> tp.List[str]:
        """``cpus 4 (profile ./ptslurm.yaml)``...: what the request asks for, and where each
        value came from (the cluster's default when nothing set it)."""
        shown = {"partition": self.partition, "gpus": self.gpus or None, "nodes": self.nodes if self.nodes != 1 else None,
                 "cpus": self.cpus, "mem_gb": self.mem_gb, "time": self.timeout_min, "account": self.account,
                 "qos": self.qos, "constraint": self.constraint,
                 "points_per_job": self.points_per_job if self.points_per_job != 1 else None}
        units = {"mem_gb": " GB", "time": " min"}
        out = []
        for key, value in shown.items():
            if value is not None:
                origin = self.origins.get(key)
                out.append(f"{key} {value}{units.get(key, '')}" + (f" ({origin})" if origin else ""))
        for key, value in self.sbatch_args.items():
            out.append(f"--{key}={value}" + (f" ({self.origins[key]})" if key in self.origins else ""))
        return out

    @classmethod
    def from_json(cls, data: dict) -> "Resources":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def tolerant(cls, value: tp.Any) -> "Resources":
        """Resources as a manifest holds them, field by field: a value of a foreign type (a
        hand-edited or damaged manifest) is the field's default, so nothing reading it fails later."""
        if not isinstance(value, dict):
            return cls()

        def fits(key: str, v: tp.Any) -> bool:
            if v is None:
                return key not in ("gpus", "nodes", "max_requeues", "points_per_job")
            if key in _WHOLE:
                return isinstance(v, int) and not isinstance(v, bool)
            if key in _NUMBER:
                return isinstance(v, (int, float)) and not isinstance(v, bool)
            if key in _TEXT:
                return isinstance(v, str)
            if key in ("setup", "srun_args"):
                return isinstance(v, list) and all(isinstance(x, str) for x in v)
            return key == "sbatch_args" and isinstance(v, dict)

        return cls.from_json({k: v for k, v in value.items() if fits(k, v)})


_WHOLE = ("gpus", "cpus", "nodes", "tasks_per_node", "array_parallelism", "signal_delay_s", "max_requeues",
          "max_attempts", "points_per_job")
_NUMBER = ("mem_gb", "timeout_min")
_TEXT = ("partition", "account", "qos", "constraint")


# sbatch options ptslurm sets itself or relies on: --sbatch may not change them (a silent
# override removed the stop signal, the array, the logs, ...); each names what to use instead
SBATCH_OWNED = {
    "signal": "--signal-delay S (ptslurm's stop signal is USR2, S seconds before the limit)",
    "array": "--array-parallelism N (the array is ptslurm's: one task per point)",
    "output": "ptslurm logs SWEEP POINT (ptslurm places the logs)", "error": "ptslurm logs SWEEP POINT",
    "open-mode": "nothing (logs are appended across attempts)", "requeue": "--max-requeues N",
    "no-requeue": "--max-requeues 0", "time": "--time", "chdir": "nothing (jobs run in the code snapshot)",
    "comment": "nothing (ptslurm marks its jobs with the comment)", "job-name": "--name",
    "wrap": "nothing (ptslurm writes the batch script)", "parsable": "nothing (ptslurm reads sbatch's answer)", "partition": "--partition",
    "account": "--account", "qos": "--qos", "constraint": "--constraint", "nodes": "--nodes",
    "ntasks-per-node": "--tasks-per-node", "ntasks": "--nodes and --tasks-per-node", "cpus-per-task": "--cpus",
    "mem": "--mem GB", "export": "nothing (the job needs the submitting environment)",
}
SBATCH_SHORT = {"t": "time", "J": "job-name", "o": "output", "e": "error", "D": "chdir", "a": "array", "p": "partition",
                "A": "account", "q": "qos", "C": "constraint", "N": "nodes", "n": "ntasks", "c": "cpus-per-task"}
# sbatch documents these as mutually exclusive: the one the user gave replaces ptslurm's
SBATCH_EXCLUSIVE = {"mem-per-cpu": "mem_gb", "mem-per-gpu": "mem_gb", "cpus-per-gpu": "cpus"}


def sbatch_key(key: str) -> str:
    """The long name sbatch knows an option by: ``--mem_per_cpu``, ``-t`` -> ``mem-per-cpu``, ``time``."""
    bare = key.strip().lstrip("-")
    return SBATCH_SHORT.get(bare, bare.replace("_", "-"))


def check_sbatch_args(resources: "Resources") -> tp.Tuple["Resources", tp.List[str]]:
    """Refuse --sbatch options that would change what ptslurm relies on (naming the ptslurm
    option to use), values sbatch would misread; the one of a mutually exclusive pair that
    the user gave replaces ptslurm's (a note says so). Returns the resources to submit with
    and the notes."""
    from ..errors import UsageError

    notes: tp.List[str] = []
    changes: tp.Dict[str, tp.Any] = {}
    clean: tp.Dict[str, tp.Any] = {}
    import re

    for key, value in resources.sbatch_args.items():
        name = sbatch_key(str(key))
        if not name:
            raise UsageError(f"--sbatch {key!r}: empty option name; give --sbatch KEY=VALUE or --sbatch FLAG")
        # the key goes into the batch script as it is (`#SBATCH --KEY=VALUE`, only the value
        # quoted): `mail-type=NONE --export` would smuggle a second option in
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", name):
            raise UsageError(f"--sbatch {str(key)!r}: not one sbatch option name (letters, digits and '-'); give "
                             f"one KEY=VALUE per option, e.g. --sbatch mail-type=END")
        if name in ("mem", "mem-per-cpu", "mem-per-gpu") and value is not True \
                and re.fullmatch(r"\s*0*(\.0*)?\s*[KMGTkmgt]?[Bb]?\s*", str(value)):
            raise UsageError(f"--sbatch {name}={value}: SLURM reads a memory size of 0 as all of a node's memory; "
                             f"give the size you need")
        if name in SBATCH_OWNED:
            how = SBATCH_OWNED[name]
            if how.startswith("nothing"):
                how = "it cannot be changed" + how[len("nothing"):]
            else:
                how = "use " + how + " instead"
            raise UsageError(f"--sbatch {name}: ptslurm sets --{name} itself; {how}")
        if value is True:
            clean[name] = True
            continue
        if value is None or value is False or str(value) == "":
            raise UsageError(f"--sbatch {name}=: no value; give --sbatch {name} for a flag, or "
                             f"--sbatch {name}=VALUE")
        clean[name] = str(value)
        field = SBATCH_EXCLUSIVE.get(name)
        if field is not None and getattr(resources, field) is not None and field not in changes:
            origin = resources.origins.get(field, "the request")
            option = "--mem" if field == "mem_gb" else "--cpus"
            if origin == "command line" and resources.origins.get(str(key)) == "command line":
                raise UsageError(f"{option} and --sbatch {name} both given: sbatch takes only one of them; drop one")
            notes.append(f"--sbatch {name}={value} replaces {option} {getattr(resources, field)} from {origin} "
                         f"(sbatch takes only one of them)")
            changes[field] = None
    return dataclasses.replace(resources, sbatch_args=clean, **changes), notes

