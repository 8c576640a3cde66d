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

    def varied_values(self, keys: tp.Optional[tp.Iterable[str]] = None) -> tp.Dict[str, tp.Any]:
        """The values of the varied keys (``keys``, default ``self.varied``) for this point;
        a named-config axis as the names joined by spaces (as status and collect show it)."""
        out: tp.Dict[str, tp.Any] = {}
        for key in self.varied if keys is None else keys:
            if key == "named_configs":
                out[key] = " ".join(self.named_configs)
            elif key in self.updates:
                out[key] = self.updates[key]
        return out

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
    signal_delay_s: int = 120
    max_requeues: int = 3
    sbatch_args: tp.Dict[str, str] = dataclasses.field(default_factory=dict)
    # where each value came from ("profile ./ptslurm.yaml", "command line"), for messages;
    # never written to disk nor part of the sweep's identity
    origins: tp.Dict[str, str] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def tasks(self) -> int:
        """Tasks (ranks) per node: ``tasks_per_node``, else one per GPU, else one."""
        return self.tasks_per_node or self.gpus or 1

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
                 "qos": self.qos, "constraint": self.constraint}
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

    def replace(self, **changes) -> "Resources":
        return dataclasses.replace(self, **changes)
