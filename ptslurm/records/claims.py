"""Storage dirs claimed race-free: ``<root>/<experiment name>/<n>`` (n = 1, 2, ...).

A lock (``filelock``) guards the short critical section and the ``mkdir`` that succeeds
claims a directory. On local disks the lock is ``FileLock`` (flock); on network file systems
(NFS, Lustre, GPFS, BeeGFS, CIFS), where flock does not exclude across clients, it is
``SoftFileLock`` (an O_EXCL lock file). Either way correctness rests on atomic ``mkdir``: a
collision moves on to the next number, so no two callers ever share a directory. Each
claimed dir holds a ``CLAIM`` marker naming its sweep until the sweep's manifest records it,
so that a submission killed in between gives its dirs back (``release_claims``). A dir is born
with the sticky bit (``HALF_MADE``) and loses it only once its marker is whole: one that still
has it was left by a claimer killed between ``mkdir`` and marker, and is given back too.
"""
import os
import shutil
import stat
import typing as tp
from pathlib import Path

from .locks import LOCK_TIMEOUT_S, allocation_lock, lock_error
from ..records import CLAIM
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
    submission killed before its manifest recorded them), and this user's half-made ones (a
    claimer killed between ``mkdir`` and marker; only while holding the allocation lock, so
    that no live claimer of this user is half-way). Returns how many."""
    import filelock

    try:
        entries = [e for e in os.scandir(parent) if e.name.isdigit()]
    except OSError:
        return 0
    lock = allocation_lock(parent)
    try:
        with lock.acquire(timeout=LOCK_TIMEOUT_S):
            return sum(_release(entry, owner, half_made_too=True) for entry in entries)
    except (filelock.Timeout, PermissionError):  # a stale or foreign lock: whole claims only
        return sum(_release(entry, owner, half_made_too=False) for entry in entries)


def _release(entry: "os.DirEntry[str]", owner: str, half_made_too: bool) -> bool:
    """Give back one storage dir when it is ``owner``'s unused claim or (``half_made_too``)
    a half-made one of this user's; True when it was removed."""
    marker = os.path.join(entry.path, CLAIM)
    try:
        info = entry.stat(follow_symlinks=False)
        if not stat.S_ISDIR(info.st_mode):
            return False
        inside = os.listdir(entry.path)
        if half_made_too and info.st_mode & HALF_MADE and info.st_uid == os.geteuid() and set(inside) <= {CLAIM}:
            pass  # killed before its marker was whole: nobody's
        elif inside != [CLAIM] or open(marker).read() != owner:
            return False
        if inside:
            os.unlink(marker)
        os.rmdir(entry.path)
        return True
    except OSError:
        return False


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
HALF_MADE = stat.S_ISVTX  # the mode bit of a storage dir whose claim is not yet whole


def _claim_one(path: Path, owner: tp.Optional[str]) -> tp.Union[Path, OSError, None]:
    """``path`` created and marked as ``owner``'s; None when another creator has it; the
    error (nothing left behind) when it cannot be made."""
    try:
        os.mkdir(path, HALF_MADE | 0o700)  # half-made until its marker is whole
    except FileExistsError:
        return None  # someone else won this number: the caller takes further ones
    except OSError as exc:
        return exc
    try:
        if owner is not None:
            with open(path / CLAIM, "w") as fh:
                fh.write(owner)
        os.chmod(path, dir_mode())  # whole now
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
