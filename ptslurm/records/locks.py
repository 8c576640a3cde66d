"""The locks ptslurm takes on shared folders: the allocation lock of a folder of storage dirs
(one per user) and a sweep's manifest lock; on network file systems, filelock's soft locks
(plain flock does not exclude across NFS clients)."""
import os
from pathlib import Path

from ..errors import StorageError
from ..records import LOCK

NETWORK_FS = {"nfs", "nfs4", "cifs", "smb3", "lustre", "gpfs", "beegfs", "fuse.glusterfs", "ceph", "fuse.sshfs"}
LOCK_TIMEOUT_S = 60.0


def fs_type(path: Path) -> str:
    """The mount type of ``path`` from /proc/mounts ('' when unknown)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return ""
    target, best = os.path.realpath(path), ("", "")
    for line in mounts:
        parts = line.split()
        if len(parts) >= 3:
            mnt = parts[1].replace("\\040", " ")
            if (target == mnt or target.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best[0]):
                best = (mnt, parts[2])
    return best[1]


def allocation_lock(directory: Path):
    """The allocation lock of a folder of storage dirs, one per user (a lock file another user
    plants in a shared folder stops nobody); across users the ``mkdir`` that succeeds decides."""
    import filelock

    cls = filelock.SoftFileLock if fs_type(directory) in NETWORK_FS else filelock.FileLock
    return cls(str(directory / f"{LOCK}.{os.geteuid()}"), timeout=LOCK_TIMEOUT_S, mode=0o600)


def user_name(uid: int) -> str:
    """``alice (uid 1001)``, or ``uid 1001`` for a uid without a name."""
    import pwd

    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def lock_error(path: Path) -> StorageError:
    """A lock file of somebody else's: one line naming its owner."""
    try:
        owner = user_name(os.stat(path).st_uid)
    except OSError:
        owner = "another user"
    return StorageError(f"lock file {str(path)!r} belongs to {owner}: ptslurm cannot take it; use another --root")


MANIFEST_LOCK = ".manifest.lock"


def manifest_lock(sweep_dir: Path, timeout: float = 120.0):
    """The lock around every read-modify-write of a sweep's manifest (resubmit, cancel,
    waves): two commands at once queue and record each job exactly once."""
    import filelock

    cls = filelock.SoftFileLock if fs_type(Path(sweep_dir)) in NETWORK_FS else filelock.FileLock
    return cls(str(Path(sweep_dir) / MANIFEST_LOCK), timeout=timeout, mode=0o644)  # whatever the umask
