"""Crash-safe writes (beside the target, fsync, ``os.replace``) with the modes of ``storage``,
and the JSON encoding of records (orjson where it keeps the meaning, json otherwise)."""
import inspect
import json
import os
import tempfile
import typing as tp
from pathlib import Path

from .storage import control_mode


def atomic_write(path: Path, write: tp.Callable[[tp.IO], None], binary: bool = False,
                 mode: tp.Optional[int] = None) -> None:
    """Call ``write(fh)`` on a temp file beside ``path``, fsync, rename it over ``path``,
    fsync the directory: a reader sees the old file or the new one, never a torn one,
    whatever kills the writer. ``mode``: the file's permissions (default ``control_mode``)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, control_mode() if mode is None else mode)
        with os.fdopen(fd, "wb" if binary else "w") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str, mode: tp.Optional[int] = None) -> None:
    atomic_write(path, lambda fh: None if fh.write(text) is None else None, mode=mode)


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_json(path: Path, data: tp.Any, mode: tp.Optional[int] = None) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n", mode)


def jsonable(value: tp.Any, fallback: tp.Optional[tp.Callable[[tp.Any], tp.Any]] = None) -> tp.Any:
    """A JSON-friendly copy of ``value``: tuples become lists, classes and functions their
    dotted names; other leaves stay as they are, or become ``fallback(leaf)`` when given
    (``repr`` for values that must be written)."""
    if isinstance(value, (list, tuple)):
        return [jsonable(v, fallback) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v, fallback) for k, v in value.items()}
    if isinstance(value, type) or inspect.isfunction(value):  # as configurable.factory_name names them
        module, name = getattr(value, "__module__", None), value.__qualname__
        return name if module in (None, "__main__") else f"{module}.{name}"
    if fallback is None or value is None or isinstance(value, (str, int, float, bool)):
        return value
    return fallback(value)


def _json_default(obj: tp.Any) -> tp.Any:
    """Classes and functions (``factory`` keys) as dotted names; anything else as str."""
    if isinstance(obj, type) or callable(obj):
        module = getattr(obj, "__module__", None)
        name = getattr(obj, "__qualname__", getattr(obj, "__name__", None))
        if name:
            return name if module in (None, "__main__", "builtins") else f"{module}.{name}"
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return str(obj)


def json_bytes(data: tp.Any) -> bytes:
    """``data`` (plain JSON values: a record's ``to_json()``) as indented JSON, by orjson (a
    10,000-point manifest in milliseconds, where json's indenting encoder takes tenths of a
    second); by json, as before, when a float is not finite (orjson would write NaN and
    Infinity as null) or a key is not a string."""
    if _orjson_safe(data):
        try:
            import orjson
        except ImportError:  # pragma: no cover - orjson is a dependency
            pass
        else:
            return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    return (json.dumps(data, indent=2, default=_json_default) + "\n").encode()


def _orjson_safe(value: tp.Any) -> bool:
    """Only strings, finite numbers, bools, None, lists and string-keyed dicts."""
    kind = type(value)
    if kind is dict:
        return all(type(k) is str and _orjson_safe(v) for k, v in value.items())
    if kind is list:
        return all(_orjson_safe(v) for v in value)
    if kind is float:
        return value - value == 0.0  # inf - inf and nan - nan are nan
    if kind is int:
        return -(2 ** 63) <= value < 2 ** 64  # orjson's range
    return value is None or kind in (str, bool)
