"""Storage dirs claimed race-free: ``<root>/<experiment name>/<n>`` (n = 1, 2, ...).

A lock (``filelock``) guards the short critical section and the ``mkdir`` that succeeds
claims a directory. On local disks the lock is ``FileLock`` (flock); on network file systems
(NFS, Lustre, GPFS, BeeGFS, CIFS), where flock does not exclude across clients, it is
``SoftFileLock`` (an O_EXCL lock file). Either way correctness rests on atomic ``mkdir``: a
collision moves on to the next number, so no two callers ever share a directory. Each
claimed dir holds a ``CLAIM`` marker naming its sweep until the sweep's manifest records it,
so that a submission killed in between gives its dirs back (``release_claims``).
"""
import os
import shutil
import typing as tp
from pathlib import Path

from .locks import allocation_lock, lock_error
from .records import CLAIM
from .storage import dir_mode, make_dirs, resolve_root


def allocate_dirs(parent: Path, count: int, owner: tp.Optional[str] = None) -> tp.List[Path]:
    """Create ``count`` new numbered directories ``parent/<n>`` (n = 1, 2, ...) and return
    them in order. Safe against any number of concurrent callers on one host or many.
    ``owner`` (a sweep dir) is written into each as ``CLAIM``, so that a submission killed
    before it recorded them can give them back (``release_claims``)."""
    import filelock

    make_dirs(parent)
    lock = allocation_lock(parent)
    try:
        with lock:
            return _claim(parent, count, owner)
    except PermissionError:
        if os.path.exists(lock.lock_file) and os.stat(lock.lock_file).st_uid != os.geteuid():
            raise lock_error(Path(lock.lock_file)) from None  # somebody else's, under this user's name
        raise
    except filelock.Timeout:
        # a stale lock file (killed holder on NFS): mkdir alone still guarantees uniqueness
        return _claim(parent, count, owner)


def release_claims(parent: Path, owner: str) -> int:
    """Remove the still-empty storage dirs under ``parent`` that ``owner`` claimed (a
    submission killed before its manifest recorded them). Returns how many."""
    released = 0
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.isdigit():
            continue
        marker = os.path.join(entry.path, CLAIM)
        try:
            if open(marker).read() != owner or os.listdir(entry.path) != [CLAIM]:
                continue
            os.unlink(marker)
            os.rmdir(entry.path)
            released += 1
        except OSError:
            continue
    return released


def _next_number(parent: Path) -> int:
    """One more than the highest numbered directory in ``parent`` (1 when there is none)."""
    try:  # a name of more digits than any count of runs is somebody's noise, not a number
        return max((int(p.name) for p in os.scandir(parent) if p.name.isdigit() and len(p.name) <= 12),
                   default=0) + 1
    except FileNotFoundError:
        return 1


def _claim(parent: Path, count: int, owner: tp.Optional[str] = None) -> tp.List[Path]:
    """Claim ``count`` numbered dirs from the next free number on: each by ``mkdir`` (which
    one creator wins) and its ``CLAIM`` marker; many at once in threads (a file's creation
    waits on the file system's journal, not on Python), the numbers others won skipped."""
    candidate = _next_number(parent)
    claimed: tp.List[Path] = []
    while len(claimed) < count:
        wanted = [parent / str(n) for n in range(candidate, candidate + count - len(claimed))]
        candidate += len(wanted)
        if len(wanted) < CLAIM_THREADS_FROM:
            won = [_claim_one(path, owner) for path in wanted]
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(CLAIM_THREADS) as pool:
                won = list(pool.map(lambda path: _claim_one(path, owner), wanted))
        claimed += [got for got in won if isinstance(got, Path)]
        failed = [got for got in won if isinstance(got, OSError)]
        if failed:  # a full disk: give back what this call claimed, nothing half-made stays
            for made in claimed:
                shutil.rmtree(made, ignore_errors=True)
            raise failed[0]
    return claimed


CLAIM_THREADS, CLAIM_THREADS_FROM = 8, 64


def _claim_one(path: Path, owner: tp.Optional[str]) -> tp.Union[Path, OSError, None]:
    """``path`` created and marked as ``owner``'s; None when another creator has it; the
    error (nothing left behind) when it cannot be made."""
    try:
        path.mkdir()
    except FileExistsError:
        return None  # someone else won this number: the caller takes further ones
    except OSError as exc:
        return exc
    try:
        os.chmod(path, dir_mode())
        if owner is not None:
            with open(path / CLAIM, "w") as fh:
                fh.write(owner)
    except OSError as exc:
        shutil.rmtree(path, ignore_errors=True)
        return exc
    return path


def predict_dirs(parent: Path, count: int) -> tp.List[Path]:
    """The directories ``allocate_dirs`` would create now (for --dry-run); creates nothing."""
    start = _next_number(parent)
    return [parent / str(n) for n in range(start, start + count)]


def get_new_storage_dir(experiment_name: str, root: tp.Optional[str] = None) -> Path:
    """A fresh storage dir ``<root>/<experiment_name>/<n>`` for use outside a sweep."""
    return allocate_dirs(resolve_root(root) / experiment_name, 1)[0]
