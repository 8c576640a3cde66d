"""The machinery of ptslurm's typed records (``records`` holds the records themselves): a
frozen dataclass base whose ``from_json`` tolerates what an older or newer ptslurm, or a
damaged file, wrote (unknown keys kept and written back, wrong types replaced by defaults),
and one JSON reader that never raises.
"""
import contextlib
import dataclasses
import datetime
import enum
import gc
import json
import typing as tp
from pathlib import Path

# ----------------------------------------------------------------------------- reading JSON

_fast_loads: tp.Callable[[bytes], tp.Any]
try:  # parses sacred's metrics files about five times faster than the json module
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - orjson is a dependency; keep working without it
    _fast_loads = json.loads


def read_json(path: tp.Union[str, Path]) -> tp.Any:
    """The parsed file; None when it is missing, unreadable or not JSON. sacred writes NaN
    and Infinity (Python's json allows them, orjson does not): such a file is parsed again
    by the json module instead of being dropped."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    try:
        return _fast_loads(data)
    except (ValueError, RecursionError):  # orjson's JSONDecodeError is a ValueError too
        pass
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # a file nested thousands deep is damage too
        return None


@contextlib.contextmanager
def gc_paused() -> tp.Iterator[None]:
    """Python's cycle collector off while a bulk of acyclic records is read or built (a
    10,000-point manifest and its rows): it would walk every new object again and again,
    and find nothing to free."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


# ----------------------------------------------------------------------------- records

R = tp.TypeVar("R", bound="Record")


def _str(value: tp.Any) -> tp.Optional[str]:
    return None if value is None else str(value)


def _int(value: tp.Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _opt_int(value: tp.Any) -> tp.Optional[int]:
    return None if value is None else _int(value)


def _strings(value: tp.Any) -> tp.Tuple[str, ...]:
    return tuple(map(str, value)) if isinstance(value, (list, tuple)) else ()


def _mapping(value: tp.Any) -> tp.Dict[str, tp.Any]:
    return dict(value) if isinstance(value, dict) else {}


def _opt_mapping(value: tp.Any) -> tp.Optional[tp.Dict[str, tp.Any]]:
    return dict(value) if isinstance(value, dict) else None


@dataclasses.dataclass(frozen=True)
class Record:
    """A frozen record that round-trips through a JSON mapping. Each field's ``load``
    (in its metadata) turns a JSON value into the field's type; unknown keys go to
    ``extra``."""

    extra: tp.Mapping[str, tp.Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls: tp.Type[R], data: tp.Mapping[str, tp.Any]) -> R:
        """The record of a mapping; raises ValueError when ``data`` is no mapping."""
        if not isinstance(data, dict):
            raise ValueError(f"a {cls.__name__} is a JSON object, not {type(data).__name__}")
        loaders, known = _schema(cls)
        built = _BUILDERS.get(cls)
        if built is None:
            kwargs: tp.Dict[str, tp.Any] = {name: load(data[name]) if load else data[name]
                                            for name, load, _, _ in loaders if name in data}
            kwargs["extra"] = {k: v for k, v in data.items() if k not in known}
            return cls(**kwargs)
        # what the dataclass's __init__ would do, without its per-field object.__setattr__, and
        # a value already of its field's type taken as it is (a 10,000-point manifest builds
        # 10,000 entries): the defaults, then the values read
        defaults, factories, loads = built
        obj = object.__new__(cls)
        values = obj.__dict__
        values.update(defaults)
        for name, factory in factories:
            if name not in data:
                values[name] = factory()
        extra = values["extra"] = {}
        for key, value in data.items():
            how = loads.get(key)
            if how is None:
                extra[key] = value
            elif type(value) in how[1]:
                values[key] = value
            else:
                values[key] = how[0](value)
        return obj

    def to_json(self) -> tp.Dict[str, tp.Any]:
        out: tp.Dict[str, tp.Any] = {}
        for name, _, dump, omit_none in _schema(type(self))[0]:
            value = getattr(self, name)
            if omit_none and (value is None or value == ()):
                continue
            out[name] = dump(value) if dump else _plain(value)
        out.update(self.extra)
        return out

    def replace(self: R, **changes: tp.Any) -> R:
        return dataclasses.replace(self, **changes)


_SCHEMAS: tp.Dict[type, tp.Tuple[tp.Tuple[tp.Tuple[str, tp.Any, tp.Any, bool], ...], tp.FrozenSet[str]]] = {}
# record classes whose __init__ only assigns its fields: their defaults, default factories,
# and each field's load with the types of JSON value it would return unchanged
_BUILDERS: tp.Dict[type, tp.Tuple[tp.Dict[str, tp.Any], tp.Tuple[tp.Tuple[str, tp.Callable[[], tp.Any]], ...],
                                  tp.Dict[str, tp.Tuple[tp.Callable[[tp.Any], tp.Any], tp.Container[type]]]]] = {}
_NONE = type(None)
_AS_IS: tp.Dict[tp.Any, tp.FrozenSet[type]] = {_int: frozenset({int}), str: frozenset({str}),
                                               _str: frozenset({str, _NONE}), _opt_int: frozenset({int, _NONE})}


class _Anything:
    def __contains__(self, kind: object) -> bool:
        return True


_ANY = _Anything()  # a field without a load takes any value


def _same(value: tp.Any) -> tp.Any:
    return value


def _schema(cls: type) -> tp.Tuple[tp.Tuple[tp.Tuple[str, tp.Any, tp.Any, bool], ...], tp.FrozenSet[str]]:
    """A record class's fields as (name, load, dump, omit_none), and their names: worked out
    once per class (a 10,000-point manifest reads 10,000 entries)."""
    got = _SCHEMAS.get(cls)
    if got is None:
        fields = tuple((f.name, f.metadata.get("load"), f.metadata.get("dump"), bool(f.metadata.get("omit_none")))
                       for f in dataclasses.fields(cls) if f.name != "extra")
        got = _SCHEMAS[cls] = (fields, frozenset(f[0] for f in fields))
        every = dataclasses.fields(cls)
        if not hasattr(cls, "__post_init__") and all(f.init for f in every):  # __init__ only assigns
            _BUILDERS[cls] = ({f.name: f.default for f in every if f.default is not dataclasses.MISSING},
                              tuple((f.name, f.default_factory) for f in every
                                    if f.default_factory is not dataclasses.MISSING and f.name != "extra"),
                              {name: (load or _same, _AS_IS.get(load, frozenset()) if load else _ANY)
                               for name, load, _, _ in fields})
    return got


def _plain(value: tp.Any) -> tp.Any:
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, enum.Enum):  # records.State and the other words the files hold
        return value.value
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def field(default: tp.Any = None, load: tp.Optional[tp.Callable[[tp.Any], tp.Any]] = None,
          dump: tp.Optional[tp.Callable[[tp.Any], tp.Any]] = None, omit_none: bool = False,
          factory: tp.Optional[tp.Callable[[], tp.Any]] = None) -> tp.Any:
    meta = {"load": load, "dump": dump, "omit_none": omit_none}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def now() -> str:
    """The time as the records hold it: ISO 8601, UTC, seconds."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
