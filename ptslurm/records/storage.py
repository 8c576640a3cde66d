"""Where ptslurm's files live and with which modes: the root, file and folder modes under the
threat model, safe folders (crash-safe writes are ``writes``, sweeps and their manifests
``manifests``, the claiming of storage dirs ``claims``).

Layout under a root (``--root``, else ``$STORAGE_ROOT``, else ``~/ptslurm-runs``)::

    <root>/<experiment name>/<n>/         one storage dir per point (n = 1, 2, ...)
    <root>/sweeps/<sweep name>/           manifest.json, code/ snapshot, slurm/ logs

"""
import os
import typing as tp
from pathlib import Path

from ..errors import StorageError, UsageError
from .locks import user_name

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
