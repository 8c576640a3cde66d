"""Sweeps and their manifests: finding a sweep by name or path, who owns it, and the manifest
store (read with the fix named when it is missing, damaged or newer; written atomically by
the one ``ManifestBook``); the touched-points notes beside it."""
import os
import typing as tp
from pathlib import Path

from .. import records
from ..errors import ManifestError, StorageError, UsageError
from ..records import MANIFEST, SWEEPS, Manifest  # records owns the names
from .locks import user_name
from .storage import control_mode, make_dirs, resolve_root
from .writes import atomic_write, json_bytes


def touch_point(sweep_dir: Path, index: int) -> None:
    """Note in the sweep dir that point ``index``'s storage dir holds a status or intent
    file: called before the first of them is written (``records.TOUCHED``)."""
    note = Path(sweep_dir) / records.TOUCHED / str(index)
    if not note.exists():
        make_dirs(note.parent)
        os.close(os.open(note, os.O_WRONLY | os.O_CREAT, control_mode()))


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
