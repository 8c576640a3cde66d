"""The code snapshot: which of the user's files a job runs, their content hash, and the check
that a job runs exactly what was submitted.

Contract (README, "The code snapshot"): the snapshot is the experiment's folder, widened to the
common ancestor of every folder the experiment put on ``sys.path`` to import its own modules,
copied whole: modules, packages, data and config files read relative to ``__file__``. Never
copied: hidden files and folders (``.git``, ``.venv``, caches), virtualenvs and conda envs,
``__pycache__``, checkpoints, sacred observer folders, storage roots and storage dirs, and
whatever ``.ptslurmignore`` or ``.gitignore`` files (gitignore syntax) under the folder exclude.
Jobs import the snapshot; each point works in ``<storage_dir>/work/``, a mirror of it
(``workspace``), so that what the code writes relative to its working dir is the point's.
"""
import dataclasses
import hashlib
import importlib.machinery
import os
import shutil
import sys
import typing as tp
from pathlib import Path

from ..errors import SnapshotError, StorageError
from ..records import CHECKPOINTS, MANIFEST, STATUS, SWEEPS

IGNORE_FILE = ".ptslurmignore"
HASHES = "code.sha256"  # in the sweep dir, sha256sum's format: `cd code && sha256sum -c ../code.sha256`
DEFAULT_MAX_MB = 100.0
MAX_FILES = 20000
PACKAGE_DIRS = {"site-packages", "dist-packages"}  # installed packages, wherever they are
SKIP_DIRS = {"__pycache__", "node_modules", CHECKPOINTS, "wandb", "mlruns", "lightning_logs"} | PACKAGE_DIRS
SKIP_SUFFIXES = (".pyc", ".pyo", ".swp", ".tmp")
# a folder holding one of these is somebody's environment or results, not code
FOREIGN_MARKERS = ("pyvenv.cfg", "conda-meta", STATUS, "_sources")


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where the snapshot comes from: ``root`` is copied; ``experiment`` and ``workdir`` are
    relative to it."""

    root: Path
    experiment: Path
    workdir: Path


def _system_dirs() -> tp.List[str]:
    import sysconfig

    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            dirs.add(path)
    return [os.path.realpath(d) for d in dirs]


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _skipped_folder(path: str, name: str) -> bool:
    """Whether ``files`` never enters the folder ``path`` (named ``name``) as code: hidden,
    a cache or package folder, or somebody's environment or results (FOREIGN_MARKERS)."""
    if name.startswith(".") or name in SKIP_DIRS or name.endswith(".egg-info"):
        return True
    return any(os.path.exists(os.path.join(path, m)) for m in FOREIGN_MARKERS)


def environment(path: str, tree: str, system: tp.Optional[tp.Sequence[str]] = None) -> bool:
    """Whether the real path ``path`` belongs to a Python environment rather than to the
    user's code in ``tree``: the running installation (a ``.venv`` inside the project is
    one), or any folder below ``tree`` that the snapshot never copies (another virtualenv or
    conda env, hidden folders), and anything in a ``site-packages`` folder. Such paths stay importable in a job and
    never go into the snapshot."""
    system = _system_dirs() if system is None else system
    if any(_under(path, s) for s in system) or PACKAGE_DIRS & set(path.split(os.sep)):
        return True
    if not _under(path, tree) or path == tree:
        return False
    current = tree
    for name in os.path.relpath(path, tree).split(os.sep):
        current = os.path.join(current, name)
        if os.path.isdir(current) and _skipped_folder(current, name):
            return True
    return False


def layout(experiment_file: Path, path_before: tp.Sequence[str], path_after: tp.Sequence[str],
           module_files: tp.Iterable[str], cwd: tp.Optional[str] = None) -> Layout:
    """The snapshot's root: the experiment's folder, widened to the common ancestor of the
    ``sys.path`` entries that the experiment added (``path_after`` minus ``path_before``)
    and that supplied a module it imported. Entries of the Python installation, and an
    ancestor as wide as ``/`` or the home folder, never count."""
    cwd = cwd or os.getcwd()
    folder = os.path.realpath(Path(experiment_file).parent)
    system = _system_dirs()
    before = {os.path.realpath(os.path.join(cwd, p or ".")) for p in path_before}
    added = []
    for entry in path_after:
        real = os.path.realpath(os.path.join(cwd, entry or "."))
        if real in before or real == folder or not os.path.isdir(real) or environment(real, folder, system):
            continue
        added.append(real)
    files = [os.path.realpath(f) for f in module_files if f and os.path.isabs(f)]
    roots = [folder]
    for entry in added:
        if any(_under(f, entry) for f in files):
            roots.append(entry)
    root = os.path.commonpath(roots)
    too_wide = {os.sep, os.path.realpath(os.path.expanduser("~"))}
    if root in too_wide:
        raise SnapshotError(f"the experiment imports its own modules from {', '.join(r for r in roots[1:])}, "
                            f"so the code snapshot would be all of {root!r}; move the experiment into the "
                            f"project folder, or install the shared code as a package (pip install -e)")
    root_path = Path(root)
    return Layout(root=root_path, experiment=Path(os.path.realpath(experiment_file)).relative_to(root_path),
                  workdir=Path(folder).relative_to(root_path))


def isolate(source_root: Path, snapshot_dir: Path) -> None:
    """Make the snapshot, not the user's live tree (``source_root``), what the job imports:
    every ``sys.path`` entry inside the live tree is pointed at the snapshot's copy of that
    folder (dropped when the snapshot has none), and so are editable installs' import
    hooks. Entries of the Python environment stay, even when the environment lives inside
    the project (``proj/.venv``, a conda env folder), and so do entries inside
    ``snapshot_dir`` itself (a storage root inside the project)."""
    live = os.path.realpath(source_root)
    mine = os.path.realpath(snapshot_dir)
    system = _system_dirs()
    keep: tp.List[str] = []
    for entry in sys.path:
        real = os.path.realpath(entry or ".")
        if not _under(real, live) or _under(real, mine) or environment(real, live, system):
            keep.append(entry)
            continue
        moved = _in_snapshot(real, live, mine)
        if moved is not None and moved not in keep:
            keep.append(moved)
    sys.path[:] = keep
    _redirect_editable_finders(live, mine)


def _in_snapshot(real: str, live: str, mine: str) -> tp.Optional[str]:
    """The snapshot's copy of ``real`` (a path in the live tree), or None when it has none."""
    copy = os.path.join(mine, os.path.relpath(real, live))
    return copy if os.path.exists(copy) else None


class SourceOnlyLoader(importlib.machinery.SourceFileLoader):
    """Compiles a module from its source every time: never reads a ``.pyc`` (the snapshot's
    ``__pycache__`` is not covered by its hash list) and never writes one."""

    def get_code(self, fullname: str) -> tp.Any:
        path = self.get_filename(fullname)
        return self.source_to_code(self.get_data(path), path)


def source_only(snapshot_dir: Path) -> None:
    """Import the modules under ``snapshot_dir`` from their source only (``SourceOnlyLoader``;
    extension modules as usual, bare ``.pyc`` files never), and write no bytecode in this
    process or the Python processes it starts. Modules elsewhere (the environment's) keep
    their compiled files."""
    import importlib.machinery as machinery

    mine = os.path.realpath(snapshot_dir)
    finder_hook = machinery.FileFinder.path_hook((machinery.ExtensionFileLoader, machinery.EXTENSION_SUFFIXES),
                                                 (SourceOnlyLoader, machinery.SOURCE_SUFFIXES))

    def hook(entry: str) -> tp.Any:
        if not _under(os.path.realpath(entry or "."), mine):
            raise ImportError("not in the code snapshot")
        return finder_hook(entry)

    sys.dont_write_bytecode = True
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
    sys.path_hooks.insert(0, hook)
    sys.path_importer_cache.clear()


def _redirect_editable_finders(live: str, mine: str) -> None:
    """setuptools' editable installs (``pip install -e``) import through a generated module
    ``__editable___<dist>_finder`` whose ``MAPPING`` names each package's live folder; a
    package inside the live tree is pointed at its snapshot copy (or unmapped when the
    snapshot has none, so the import fails instead of running live code)."""
    for name, module in list(sys.modules.items()):
        mapping = getattr(module, "MAPPING", None)
        if not (name.startswith("__editable__") and isinstance(mapping, dict)):
            continue
        for package, location in list(mapping.items()):
            real = os.path.realpath(str(location))
            if not _under(real, live) or _under(real, mine):
                continue
            moved = _in_snapshot(real, live, mine)
            if moved is None:
                del mapping[package]
            else:
                mapping[package] = moved


def _ignore_spec(root: Path, directory: Path, inherited):
    """The patterns of ``directory``'s .ptslurmignore and .gitignore added to ``inherited``."""
    lines: tp.List[str] = []
    for name in (IGNORE_FILE, ".gitignore"):
        try:
            text = (directory / name).read_text()
        except OSError:
            continue
        prefix = directory.relative_to(root).as_posix()
        for line in text.splitlines():
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            negate = stripped.startswith("!")
            pattern = stripped[1:] if negate else stripped
            if prefix != ".":  # make the pattern relative to the snapshot root
                anchored = "/" in pattern.rstrip("/")
                pattern = f"{prefix}/{pattern.lstrip('/')}" if anchored else f"{prefix}/**/{pattern}"
            lines.append(("!" if negate else "") + pattern)
    if not lines:
        return inherited
    return (inherited or []) + lines


def _matcher(lines):
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines(lines) if lines else None


def files(lay: Layout, skip: tp.Iterable[Path] = (), must: tp.Iterable[str] = ()) -> tp.List[tp.Tuple[str, int]]:
    """``(relative path, size)`` of every file the snapshot takes, sorted. ``skip``: folders
    never entered (storage roots); ``must``: files taken even when an ignore rule matches
    them (modules the experiment imported)."""
    root = lay.root
    skip_real = {os.path.realpath(s) for s in skip}
    out: tp.Dict[str, int] = {}
    stack: tp.List[tp.Tuple[Path, tp.Optional[list], tp.Any]] = [(root, None, None)]
    while stack:
        directory, inherited, spec = stack.pop()
        lines = _ignore_spec(root, directory, inherited)
        if lines is not inherited:  # this folder has ignore files of its own
            spec = _matcher(lines)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            raise StorageError(f"cannot read {str(directory)!r} for the code snapshot ({exc.strerror}); "
                               f"exclude it in {IGNORE_FILE}") from None
        for entry in entries:
            name = entry.name
            rel = Path(entry.path).relative_to(root).as_posix()
            if name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                if _skipped_folder(entry.path, name) or os.path.realpath(entry.path) in skip_real:
                    continue
                if os.path.isdir(os.path.join(entry.path, SWEEPS)) and _holds_sweeps(Path(entry.path)):
                    continue
                if spec is not None and spec.match_file(rel + "/"):
                    continue
                stack.append((Path(entry.path), lines, spec))
            elif entry.is_file():  # a symlink to a file is copied as the file
                if name.endswith(SKIP_SUFFIXES) or (name.startswith("ckpt_") and name.endswith(".pth")):
                    continue
                if spec is not None and spec.match_file(rel):
                    continue
                out[rel] = entry.stat().st_size
                if len(out) > MAX_FILES:
                    raise SnapshotError(f"the code snapshot of {str(root)!r} would hold more than {MAX_FILES} "
                                        f"files; exclude data and outputs in {str(root / IGNORE_FILE)!r} "
                                        f"(gitignore syntax)")
    for rel in must:
        path = root / rel
        if rel not in out and path.is_file():
            out[rel] = path.stat().st_size
    return sorted(out.items())


def _holds_sweeps(folder: Path) -> bool:
    try:
        return any((p / MANIFEST).is_file() for p in (folder / SWEEPS).iterdir())
    except OSError:
        return False


def check_size(lay: Layout, listing: tp.Sequence[tp.Tuple[str, int]], max_mb: float) -> None:
    total = sum(size for _, size in listing)
    if total <= max_mb * 1e6:
        return
    biggest = sorted(listing, key=lambda item: -item[1])[:3]
    named = ", ".join(f"{rel} ({size / 1e6:.1f} MB)" for rel, size in biggest)
    raise SnapshotError(f"the code snapshot of {str(lay.root)!r} would be {total / 1e6:.1f} MB (cap "
                        f"{max_mb:g} MB); biggest: {named}; exclude them in {str(lay.root / IGNORE_FILE)!r} "
                        f"(gitignore syntax) or raise --max-snapshot-mb")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


WITH_FILES = "ptslurm-with"  # in the snapshot's experiment folder: config files named after `with`


def copy(lay: Layout, listing: tp.Sequence[tp.Tuple[str, int]], dest: Path,
         extra: tp.Sequence[tp.Tuple[str, str]] = ()) -> str:
    """Copy the files into ``dest`` and write their hashes beside it (``HASHES``); returns
    the snapshot's content hash (the sha256 of that list). ``extra``: ``(source, relative
    path in the snapshot)`` of files from elsewhere (config files named after ``with``)."""
    lines = []
    sources = [(lay.root / rel, rel) for rel, _ in listing] + [(Path(src), rel) for src, rel in extra]
    for source, rel in sources:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copy2(source, target)
        except FileNotFoundError:  # deleted while we copied: it is not part of the snapshot
            continue
        lines.append(f"{_sha256(target)}  {rel}\n")
    dest.mkdir(parents=True, exist_ok=True)
    text = "".join(lines)
    hash_file(dest).write_text(text)
    _nobody_else_writes(dest)
    return hashlib.sha256(text.encode()).hexdigest()


def _nobody_else_writes(dest: Path) -> None:
    """Under a group umask (002) the copies would be group-writable: a member of the group
    could make every point fail the code check. The snapshot and its hash list are the
    owner's to write alone, whatever the umask."""
    for path in [dest, hash_file(dest)] + [Path(d) / n for d, dirs, files in os.walk(dest) for n in dirs + files]:
        try:
            st = os.lstat(path)
            if st.st_mode & 0o022 and not os.path.islink(path):
                os.chmod(path, st.st_mode & 0o7755)
        except OSError:
            continue


def hash_file(code_dir: Path) -> Path:
    """``code.sha256`` beside ``code/`` (``code-2.sha256`` beside ``code-2/``)."""
    code_dir = Path(code_dir)
    return code_dir.parent / f"{code_dir.name}.sha256"


def verify(code_dir: Path, expected: str, fix: str) -> None:
    """Raise SnapshotError naming the first file of the snapshot that changed since
    submission (or the missing hash list); ``fix`` says how to run new code."""
    code_dir = Path(code_dir)
    try:
        text = hash_file(code_dir).read_text()
    except OSError:
        raise SnapshotError(f"the code snapshot's hash list {str(hash_file(code_dir))!r} is missing; {fix}") from None
    if hashlib.sha256(text.encode()).hexdigest() != expected:
        raise SnapshotError(f"the code snapshot's hash list {str(hash_file(code_dir))!r} changed since "
                            f"submission; {fix}")
    listed = set()
    for line in text.splitlines():
        digest, _, rel = line.partition("  ")
        listed.add(rel)
        path = code_dir / rel
        try:
            same = _sha256(path) == digest
        except OSError:
            same = False
        if not same:
            raise SnapshotError(f"the code snapshot changed since submission: {str(path)!r} was edited or "
                                f"removed; {fix}")
    for dirpath, dirnames, filenames in os.walk(code_dir):
        # what a snapshot never takes is not code either: __pycache__ (never read: the job
        # imports the snapshot's modules from source), the runs of an observer with a relative folder, checkpoints, ...
        dirnames[:] = [d for d in dirnames if not _skipped_folder(os.path.join(dirpath, d), d)]
        for name in filenames:
            rel = os.path.relpath(os.path.join(dirpath, name), code_dir).replace(os.sep, "/")
            if rel not in listed:
                raise SnapshotError(f"the code snapshot changed since submission: {os.path.join(dirpath, name)!r} "
                                    f"was added; {fix}")


def differs(code_dir: Path, layout_root: Path) -> tp.List[str]:
    """Files of the snapshot whose live copy under ``layout_root`` differs (or is gone)."""
    out: tp.List[str] = []
    try:
        text = hash_file(code_dir).read_text()
    except OSError:
        return out
    for line in text.splitlines():
        digest, _, rel = line.partition("  ")
        try:
            if _sha256(Path(layout_root) / rel) != digest:
                out.append(rel)
        except OSError:
            out.append(rel)
    return out


def workspace(code_dir: Path, workdir: Path, dest: Path) -> Path:
    """A point's own working directory: ``dest`` mirrors the snapshot ``code_dir`` (real
    folders, each file a link to the snapshot's), so that relative reads of the code's files
    (``data/x.txt``, ``../configs/a.yaml``) work while whatever the code writes relative to
    its working dir (``result.txt``, ``runs/``, ``lightning_logs/``) lands in ``dest``, the
    point's own, and never in the shared snapshot. Idempotent and safe for several ranks at
    once; links into an older snapshot (``--refresh-code``) are pointed at this one; files
    the code wrote are kept. Returns the folder matching ``workdir`` (the job's cwd)."""
    code_dir = Path(os.path.realpath(code_dir))
    try:
        listed = [line.partition("  ")[2] for line in hash_file(code_dir).read_text().splitlines()]
    except OSError:
        listed = []
    for rel in listed:
        if not rel or rel.startswith("/") or ".." in rel.split("/"):
            continue
        link = dest / rel
        target = str(code_dir / rel)
        try:
            if os.readlink(link) == target:
                continue
        except OSError:
            pass
        if link.exists() and not link.is_symlink():
            continue  # the code wrote a file of that name here: it is the point's own
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.parent / f".{link.name}.{os.getpid()}.link.tmp"
        try:
            os.unlink(tmp)
        except OSError:
            pass
        os.symlink(target, tmp)
        os.replace(tmp, link)
    dest.mkdir(parents=True, exist_ok=True)
    rel_workdir = os.path.relpath(os.path.realpath(workdir), code_dir)
    cwd = dest if rel_workdir == "." or rel_workdir.startswith("..") else dest / rel_workdir
    cwd.mkdir(parents=True, exist_ok=True)
    return cwd
