"""Checkpoints that survive kills: ``ckpt_<iteration>.pth`` written atomically (temp file,
fsync, rename), ``ckpt_latest.pth`` / ``ckpt_best_loss.pth`` as relative symlinks swapped
atomically (new link under a temporary name, renamed over the old), a retention policy, and a
loader that validates and falls back to the previous good checkpoint. torch is imported lazily.
"""
import os
import re
import typing as tp
import warnings
from pathlib import Path

from ..records.writes import atomic_write, fsync_dir
from ..records.storage import result_mode

LATEST = "ckpt_latest.pth"
BEST_LOSS = "ckpt_best_loss.pth"
_NUMBERED = re.compile(r"^ckpt_(\d+)\.pth$")
REQUIRED_KEYS = ("model", "iteration")


def checkpoint_path(ckpt_dir: Path, iteration: int) -> Path:
    return Path(ckpt_dir) / f"ckpt_{iteration}.pth"


def numbered(ckpt_dir: Path) -> tp.List[tp.Tuple[int, Path]]:
    """``(iteration, path)`` of every ``ckpt_<n>.pth``, oldest first."""
    try:
        names = os.listdir(ckpt_dir)
    except FileNotFoundError:
        return []
    found = [(int(m.group(1)), Path(ckpt_dir) / n) for n in names if (m := _NUMBERED.match(n))]
    return sorted(found)


def link(ckpt_dir: Path, name: str, target: Path) -> None:
    """Point ``ckpt_dir/name`` at ``target`` (relative) without a moment where it is missing."""
    ckpt_dir = Path(ckpt_dir)
    tmp = ckpt_dir / f".{name}.{os.getpid()}.tmp"
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    os.symlink(os.path.relpath(target, ckpt_dir), tmp)
    os.replace(tmp, ckpt_dir / name)
    fsync_dir(ckpt_dir)


def save(state: dict, ckpt_dir: tp.Union[str, Path], iteration: int, keep: tp.Optional[int] = 5,
         best: bool = False) -> Path:
    """Write ``state`` as ``ckpt_<iteration>.pth``, move ``ckpt_latest.pth`` (and
    ``ckpt_best_loss.pth`` when ``best``) to it, then delete old checkpoints beyond the last
    ``keep`` except the best one. Returns the checkpoint's path."""
    import torch

    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    target = checkpoint_path(ckpt_dir, iteration)
    atomic_write(target, lambda fh: torch.save(state, fh), binary=True, mode=result_mode())
    if best:
        link(ckpt_dir, BEST_LOSS, target)
    link(ckpt_dir, LATEST, target)
    if keep is not None:
        prune(ckpt_dir, keep)
    return target


def prune(ckpt_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` numbered checkpoints; never the ones linked."""
    protected = set()
    for name in (LATEST, BEST_LOSS):
        p = Path(ckpt_dir) / name
        if p.is_symlink():
            protected.add((Path(ckpt_dir) / os.readlink(p)).resolve())
    for _, path in numbered(ckpt_dir)[:-keep] if keep > 0 else numbered(ckpt_dir):
        if path.resolve() not in protected:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
    for stale in Path(ckpt_dir).glob(".ckpt_*.tmp"):
        # a temp file of a writer that was killed mid-write: never loadable, safe to drop
        try:
            if stale.stat().st_mtime < (os.path.getmtime(ckpt_dir) - 60):
                stale.unlink()
        except FileNotFoundError:
            pass


def load_file(path: Path, map_location="cpu", trusted: bool = False) -> tp.Any:
    """``torch.load`` with ``weights_only=True`` (tensors and plain values only: ptslurm's
    checkpoints need nothing more); ``trusted=True`` unpickles anything, which can run code
    from the file, for checkpoints made elsewhere."""
    import pickle

    import torch

    if trusted:
        return torch.load(path, map_location=map_location, weights_only=False)
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path} holds more than tensors and plain values ({first}); load it with "
                         f"trusted=True only if you trust whoever wrote it") from None


def _numpy_globals() -> list:
    """numpy arrays as data: checkpoints of earlier versions hold numpy's RNG state as one."""
    try:
        import numpy
    except ImportError:
        return []
    multiarray = getattr(numpy, "_core", None) or numpy.core
    return [multiarray.multiarray._reconstruct, numpy.ndarray, numpy.dtype, type(numpy.dtype(numpy.uint32))]


def _read(path: Path, map_location) -> dict:
    state = load_file(path, map_location)
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED_KEYS):
        raise ValueError(f"{path.name} is not a complete ptslurm checkpoint")
    return state


def load_latest(ckpt_dir: tp.Union[str, Path], map_location="cpu") -> tp.Optional[tp.Tuple[Path, dict]]:
    """The newest loadable checkpoint as ``(path, state)``: ``ckpt_latest.pth`` first, then
    the numbered ones from newest to oldest, skipping (with a warning) any that is truncated
    or unreadable. None when there is none."""
    ckpt_dir = Path(ckpt_dir)
    candidates: tp.List[Path] = []
    latest = ckpt_dir / LATEST
    if latest.exists():
        candidates.append(latest.resolve())
    candidates += [p for _, p in reversed(numbered(ckpt_dir)) if p.resolve() not in candidates]
    for path in candidates:
        try:
            return path, _read(path, map_location)
        except Exception as exc:  # truncated zip, pickle error, missing keys ...
            warnings.warn(f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc}); "
                          f"falling back to the previous one", RuntimeWarning)
    return None
