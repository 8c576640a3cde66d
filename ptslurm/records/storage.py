"""Everything on disk but the claiming of storage dirs (``claims.py``): file modes, safe
folders, the root, crash-safe JSON writes, finding sweeps and their manifests.

Layout under a root (``--root``, else ``$STORAGE_ROOT``, else ``~/ptslurm-runs``)::

    <root>/<experiment name>/<n>/         one storage dir per point (n = 1, 2, ...)
    <root>/sweeps/<sweep name>/           manifest.json, code/ snapshot, slurm/ logs

"""
import inspect
import json
import os
import shutil
import tempfile
import typing as tp
from pathlib import Path

from .. import records
from ..errors import ManifestError, StorageError, UsageError
from .locks import MANIFEST_LOCK, allocation_lock, lock_error, manifest_lock, user_name  # noqa: F401 - re-exported
from ..records import CLAIM, MANIFEST, SWEEPS, Manifest  # records owns the names

DEFAULT_ROOT = "~/ptslurm-runs"


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _read_umask()  # read once, at import (os.umask cannot be read without setting it)


def control_mode() -> int:
    """Files that ptslurm trusts (manifest, status, intent, lease, claims): readable as the
    umask allows (a group can collect a colleague's sweep), never writable by anyone else."""
    return 0o666 & ~UMASK & ~0o022


def result_mode() -> int:
    """Results (config, checkpoints): as the umask says."""
    return 0o666 & ~UMASK


def dir_mode() -> int:
    """Folders ptslurm creates: as the umask allows, never writable by others (nobody can
    rename or replace what is in them)."""
    return 0o777 & ~UMASK & ~0o022


def make_dirs(path: Path) -> None:
    """``mkdir -p`` whose new folders get ``dir_mode`` whatever the umask."""
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists() and probe.parent != probe:
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        os.chmod(folder, dir_mode())


def touch_point(sweep_dir: Path, index: int) -> None:
    """Note in the sweep dir that point ``index``'s storage dir holds a status or intent
    file: called before the first of them is written (``records.TOUCHED``)."""
    note = Path(sweep_dir) / records.TOUCHED / str(index)
    if not note.exists():
        make_dirs(note.parent)
        os.close(os.open(note, os.O_WRONLY | os.O_CREAT, control_mode()))


def no_group_write(folder: Path) -> None:
    """Remove group and other write from the files in ``folder`` (what submitit wrote with
    the umask: job pickles a group member must not swap)."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        try:
            mode = entry.stat(follow_symlinks=False).st_mode
            if entry.is_file(follow_symlinks=False) and mode & 0o022:
                os.chmod(entry.path, mode & 0o7755)
        except OSError:
            continue


def require_own_dir(storage_dir: Path) -> None:
    """A storage dir must be a folder of this user's, not a symlink someone planted (a job
    would write into their folder, or anywhere the user can write). Raises SnapshotError
    (never retried)."""
    import stat

    from ..errors import SnapshotError

    try:
        st = os.lstat(storage_dir)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise SnapshotError(f"storage dir {str(storage_dir)!r} is not a folder of yours (a symlink, or another "
                            f"user's): refusing to write there; start the sweep again under a --root you own")


def unsafe_dir(path: Path) -> tp.Optional[str]:
    """Why ``path`` (or the nearest folder of it that exists) or a folder above it is no
    place for files ptslurm trusts, or None: a folder that another user owns (root aside)
    or that others may write without the sticky bit can have its entries renamed or
    replaced by someone else."""
    import stat

    me = os.geteuid()
    probe = Path(os.path.abspath(path))
    while not os.path.lexists(probe) and probe.parent != probe:
        probe = probe.parent
    for folder in [probe, *probe.parents]:
        try:
            st = os.stat(folder)
        except OSError:
            continue
        if st.st_uid not in (me, 0):
            return f"{str(folder)!r}, which belongs to {user_name(st.st_uid)}"
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            return f"{str(folder)!r}, which is writable by {'others' if st.st_mode & 0o002 else 'its group'}"
    return None


def require_safe_dir(path: Path, what: str) -> None:
    """UsageError naming the folder and the fix when ``unsafe_dir(path)``."""
    why = unsafe_dir(path)
    if why:
        raise UsageError(f"{what} would go under {why}, so another user could replace them; use a folder of "
                         f"your own: --root DIR (or $STORAGE_ROOT) owned by you, e.g. a per-user folder "
                         f"$STORAGE_ROOT/$USER, or remove group/other write from it (chmod go-w)")


def resolve_root(root: tp.Optional[str] = None) -> Path:
    """``root``, else ``$STORAGE_ROOT``, else ``~/ptslurm-runs``, made absolute."""
    chosen = root or os.environ.get("STORAGE_ROOT") or DEFAULT_ROOT
    return Path(os.path.abspath(os.path.expanduser(chosen)))


def check_root_writable(root: Path) -> None:
    """Raise StorageError unless ``root`` exists (or can be created) and is writable.
    Creates nothing: a missing root is checked through its nearest existing parent."""
    probe = root
    try:
        while not probe.exists():
            if probe.parent == probe:
                break
            probe = probe.parent
    except PermissionError:
        raise StorageError(f"storage root {str(root)!r} is not writable (permission denied on "
                           f"{str(probe)!r}); pass --root DIR or set $STORAGE_ROOT to a writable directory") from None
    except OSError as exc:  # ENAMETOOLONG and the like
        raise StorageError(f"storage root {str(root)[:80]!r}... is no usable path ({exc.strerror or exc}); "
                           f"pass --root DIR or set $STORAGE_ROOT") from None
    if probe.exists() and not probe.is_dir():
        raise StorageError(f"storage root {str(root)!r}: {str(probe)!r} is not a directory; "
                           f"pass --root DIR or set $STORAGE_ROOT")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise StorageError(f"storage root {str(root)!r} is not writable ({str(probe)!r}); "
                           f"pass --root DIR or set $STORAGE_ROOT to a writable directory")
    # os.access trusts the mode bits: root passes it on /proc, a read-only mount, a full disk
    import tempfile

    try:
        os.rmdir(tempfile.mkdtemp(prefix=".ptslurm-probe-", dir=probe))
    except OSError as exc:
        raise StorageError(f"storage root {str(root)!r} is not writable ({str(probe)!r}: {exc.strerror}); "
                           f"pass --root DIR or set $STORAGE_ROOT to a writable directory") from None


# ----------------------------------------------------------------------------- atomic files


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


# ----------------------------------------------------------------------------- sweeps


def sweeps_dir(root: Path) -> Path:
    return root / SWEEPS


def find_sweep(name_or_path: str, root: tp.Optional[str] = None) -> Path:
    """A sweep directory given as a path or as a name under the root."""
    from ..errors import PtslurmError

    try:
        return _find_sweep(name_or_path, root)
    except PtslurmError:
        raise
    except OSError as exc:  # a name too long for a path, a path through a file
        raise StorageError(f"no sweep {name_or_path[:80]!r}{'...' if len(name_or_path) > 80 else ''}: "
                           f"{exc.strerror or exc}; `ptslurm list` shows the sweeps") from None


def _find_sweep(name_or_path: str, root: tp.Optional[str] = None) -> Path:
    candidate = Path(name_or_path).expanduser()
    if (candidate / MANIFEST).is_file():
        return candidate.resolve()
    by_name = sweeps_dir(resolve_root(root)) / name_or_path
    if (by_name / MANIFEST).is_file():
        return by_name
    if candidate.is_dir() or by_name.is_dir():
        where = candidate if candidate.is_dir() else by_name
        raise ManifestError(f"sweep {name_or_path!r}: {str(where / MANIFEST)!r} is missing; "
                            f"this is not a ptslurm sweep directory")
    raise StorageError(f"no sweep {name_or_path!r}: not a directory, nor a sweep under "
                       f"{str(sweeps_dir(resolve_root(root)))!r}; `ptslurm list` shows the sweeps")


def foreign_owner(sweep_dir: Path) -> tp.Optional[str]:
    """The user other than the caller who owns the sweep dir or its manifest (the control
    files every command that acts on a sweep trusts), else None."""
    me = os.geteuid()
    for path in (Path(sweep_dir), Path(sweep_dir) / MANIFEST):
        try:
            uid = os.lstat(path).st_uid
        except OSError:
            continue
        if uid != me:
            return user_name(uid)
    return None


def require_own(sweep_dir: Path, doing: str) -> None:
    """Refuse to act (submit, cancel, resubmit, run) on a sweep whose control files another
    user owns: its pickles and manifest would run their code as you."""
    owner = foreign_owner(sweep_dir)
    if owner is not None:
        raise UsageError(f"sweep {str(sweep_dir)!r} belongs to {owner}: ptslurm {doing} only your own sweeps "
                         f"(reading them with status, collect, logs and show works); ask its owner, or start "
                         f"your own copy with `ptslurm sweep` under your own --root")


def read_manifest(sweep_dir: Path) -> Manifest:
    """The sweep's manifest; ManifestError (with the fix) when it is missing, damaged or of
    a newer schema."""
    path = Path(sweep_dir) / MANIFEST
    if not path.exists():
        raise ManifestError(f"{str(path)!r} is missing; is {str(sweep_dir)!r} a sweep directory?")
    if not os.access(path, os.R_OK):
        try:
            owner = user_name(os.stat(path).st_uid)
        except OSError:
            owner = "its owner"
        raise ManifestError(f"{str(path)!r} is not readable by you (it belongs to {owner}); ask its owner to "
                            f"let your group read it (chmod g+r), or read a sweep of your own")
    with records.gc_paused():
        return _manifest_of(path, sweep_dir, records.read_json(path))


def _manifest_of(path: Path, sweep_dir: Path, data: tp.Any) -> Manifest:
    if data is None:
        raise ManifestError(f"{str(path)!r} is unreadable or corrupt; "
                            f"restore it or start the sweep again under a new --name")
    if (not isinstance(data, dict) or not isinstance(data.get("points"), list)
            or not isinstance(data.get("schema"), int) or isinstance(data.get("schema"), bool)):
        raise ManifestError(f"{str(path)!r} is not a ptslurm manifest (an integer 'schema' and a list of "
                            f"'points' are required); restore it or start the sweep again under a new --name")
    if data["schema"] > records.MANIFEST_SCHEMA:
        raise ManifestError(f"{str(path)!r} has schema {data['schema']}, newer than this ptslurm "
                            f"understands ({records.MANIFEST_SCHEMA}); upgrade ptslurm")
    return Manifest.from_json(data)


def write_manifest(sweep_dir: Path, manifest: Manifest) -> None:
    data = manifest.to_json()
    text = json_bytes(data)
    atomic_write(Path(sweep_dir) / MANIFEST, lambda fh: None if fh.write(text) is None else None, binary=True)


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


class ManifestBook:
    """The one writer of a sweep's manifest on the command line's side: holds the current
    record and writes every change at once (atomically)."""

    def __init__(self, sweep_dir: Path, manifest: Manifest):
        self.sweep_dir = Path(sweep_dir)
        self.manifest = manifest

    def save(self, manifest: Manifest) -> Manifest:
        write_manifest(self.sweep_dir, manifest)
        self.manifest = manifest
        return manifest

    def update(self, **fields: tp.Any) -> Manifest:
        return self.save(self.manifest.replace(**fields))

    def set_jobs(self, ids: tp.Mapping[int, tp.Optional[str]]) -> None:
        """Record job ids the moment the scheduler gave them (a kill after this loses nothing)."""
        self.save(self.manifest.with_jobs(ids))
