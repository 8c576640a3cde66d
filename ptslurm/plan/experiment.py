"""The submit side's view of a sacred experiment: load the file, build each point's config
with sacred's own machinery (without running main), and record the code's git state.

Building a config runs the experiment's config scopes. They may have side effects (the seed's
``get_new_storage_dir`` creates a directory, ``ex.observers.append`` accumulates observers),
so every build runs with ``$STORAGE_ROOT`` pointed at a throw-away directory and restores the
experiment's observer list afterwards.
"""
import contextlib
import difflib
import importlib.util
import os
import sys
import tempfile
import traceback
import typing as tp
from pathlib import Path

from .. import programs
from . import sacred_adapter
from ..errors import ExperimentError
from ..records.snapshot import SourceOnlyLoader
from ..records.spec import Point

_MISSING = object()


def load(path: tp.Union[str, Path], module_name: tp.Optional[str] = None, light: bool = False,
         keep_links: bool = False):
    """Import an experiment file and return ``(module, experiment)``.

    The file's folder goes first on ``sys.path``, as when running ``python exp.py``; the
    module is registered under its file stem (or ``module_name``) so that classes defined in
    it have importable dotted names. ``light`` skips sacred's scan of sources, dependencies
    and git at Experiment creation (the submit side builds configs only; the job records
    them). Raises ExperimentError for a missing or unreadable file,
    an import that fails, or a file with no or several sacred Experiments.
    """
    path = Path(path)
    if not path.exists():
        raise ExperimentError(f"experiment file {str(path)!r} does not exist; "
                              f"give the path of a sacred script, e.g. examples/tiny.py")
    if not path.is_file() or not os.access(path, os.R_OK):
        raise ExperimentError(f"experiment file {str(path)!r} is not a readable file")
    if path.suffix != ".py":
        raise ExperimentError(f"experiment file {str(path)!r} is not a Python file (.py)")
    name = module_name or path.stem
    # ``keep_links``: the job imports it from the point's working dir, whose files are links to
    # the snapshot's, so that ``__file__`` (and what the code writes next to it) is the point's
    where = os.path.abspath(path) if keep_links else str(path.resolve())
    folder = os.path.dirname(where)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    # from source, never from a __pycache__ (in a job's snapshot it is not covered by the hash list)
    spec = importlib.util.spec_from_file_location(name, where, loader=SourceOnlyLoader(name, where))
    if spec is None or spec.loader is None:
        raise ExperimentError(f"experiment file {str(path)!r} cannot be imported as a module")
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(name)
    sys.modules[name] = module
    try:
        with sacred_adapter.tolerant_git(), (sacred_adapter.light_sources() if light else contextlib.nullcontext()), \
                _no_hard_exit():
            spec.loader.exec_module(module)
    except BaseException as exc:  # noqa: B902 - a user's script may raise anything, even SystemExit
        if previous is not None:
            sys.modules[name] = previous
        else:
            sys.modules.pop(name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise ExperimentError(f"experiment file {str(path)!r} failed to import: "
                              f"{_describe(exc, where)}") from None
    found = [(k, v) for k, v in vars(module).items() if sacred_adapter.is_experiment(v)]
    unique = {id(v): (k, v) for k, v in found}
    if not unique:
        raise ExperimentError(f"{str(path)!r} defines no sacred Experiment; "
                              f"add `ex = Experiment('name')` at module level")
    if len(unique) > 1:
        names = ", ".join(k for k, _ in unique.values())
        raise ExperimentError(f"{str(path)!r} defines {len(unique)} sacred Experiments ({names}); "
                              f"keep one Experiment per file")
    (_, ex), = unique.values()
    return module, ex


class OsExitAtImport(SystemExit):
    pass


@contextlib.contextmanager
def _no_hard_exit():
    """``os._exit()`` at import would end ptslurm itself without a word: make it an error."""
    import threading

    original = os._exit
    importing = threading.get_ident()

    def refuse(code=0):
        if threading.get_ident() != importing:  # another thread's (ptslurm's watchdog): a real exit
            original(code)
        raise OsExitAtImport(f"the file calls os._exit({code}) when imported; guard it with "
                             f"`if __name__ == '__main__':`")

    os._exit = refuse
    try:
        yield
    finally:
        os._exit = original


def _describe(exc: BaseException, filename: tp.Optional[str] = None) -> str:
    """``Type: message (file:line)`` for the innermost frame in ``filename`` (or the last)."""
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if filename and os.path.abspath(f.filename) == filename] or frames
    where = f" ({os.path.basename(mine[-1].filename)}:{mine[-1].lineno})" if mine else ""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}{where}" if text else f"{type(exc).__name__}{where}"


def module_files() -> tp.List[str]:
    """Files of the modules imported so far. Only absolute paths of real files: torch
    registers modules with a relative ``__file__`` (``torch.classes`` -> ``_classes.py``)
    that must not be resolved against the working directory."""
    out = []
    for module in list(sys.modules.values()):
        filename = getattr(module, "__file__", None)
        if isinstance(filename, str) and os.path.isabs(filename) and os.path.isfile(filename):
            out.append(filename)
    return out


def _quiet_logger() -> tp.Any:
    """A logger that drops what sacred logs while the pre-flight builds configs."""
    import logging

    quiet = logging.getLogger("ptslurm.plan.preflight")
    if not quiet.handlers:
        quiet.addHandler(logging.NullHandler())
        quiet.propagate = False
    return quiet


@contextlib.contextmanager
def sandbox(ex: tp.Any, quiet: bool = True) -> tp.Iterator[None]:
    """Config scopes may create directories under ``$STORAGE_ROOT`` or append observers:
    point the one at a temporary directory and restore the other afterwards. ``quiet``
    silences sacred's logger (pre-flight builds many configs).

    This changes the process's environment while it lasts: it is only entered in processes
    that ptslurm owns (the pre-flight's, a job's), never in a caller's."""
    observers = list(ex.observers)
    logger = ex.logger
    old_root = os.environ.get("STORAGE_ROOT")
    with tempfile.TemporaryDirectory(prefix="ptslurm-preflight-") as scratch:
        os.environ["STORAGE_ROOT"] = scratch
        if logger is None and quiet:
            ex.logger = _quiet_logger()
        try:
            yield
        finally:
            ex.observers[:] = observers
            ex.logger = logger
            if old_root is None:
                os.environ.pop("STORAGE_ROOT", None)
            else:
                os.environ["STORAGE_ROOT"] = old_root


def get_dotted(config: dict, key: str, default=_MISSING):
    node = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def flat_keys(config: dict, prefix: str = "") -> tp.List[str]:
    out = []
    for k, v in config.items():
        out.append(prefix + k)
        if isinstance(v, dict):
            out.extend(flat_keys(v, prefix + k + "."))
    return out


def preflight(ex, points: tp.Sequence[Point], storage_keys: tp.Sequence[str],
              placeholder_dirs: tp.Sequence[str]):
    """Build the default config and every point's config; raise ExperimentError naming the
    first point with an unknown key, a missing named config or a failing config scope.

    The first of ``storage_keys`` that the default config has is injected with the point's
    (future) storage dir. Returns ``(default_config, configs, injected_key_or_None, seeds)``;
    ``seeds[i]`` is point i's seed when its config sets one (the experiment's own ``seed``,
    a named config or the command line), None when sacred would draw one.
    """
    with sandbox(ex):
        # seed-shaped scopes need a storage dir to evaluate: offer one under every candidate key
        # and keep the first key that the experiment really defines (not "added")
        probe = {k: str(placeholder_dirs[0]) if placeholder_dirs else "/nonexistent" for k in storage_keys}
        try:
            default, added, _ = sacred_adapter.build_config(ex, probe)
            inject = next((k for k in storage_keys if k not in added), None)
        except Exception:
            inject = None
        try:
            default, _, _ = sacred_adapter.build_config(ex, {inject: probe[inject]} if inject else {})
        except Exception as exc:
            raise ExperimentError(f"the experiment's config scope fails without any update: "
                                  f"{_scope_error(exc)}") from None
        for point in points:  # the injected dir would silently replace what the user asked for
            if inject and inject in point.updates:
                raise ExperimentError(
                    f"point {point.index} sets {inject}={point.updates[inject]!r}, the config key ptslurm fills "
                    f"with each point's own storage dir; choose where the storage dirs go with --root, or name "
                    f"another key for them with --storage-key KEY")
        known = flat_keys(default)
        taken = sacred_adapter.captured_arguments(ex)  # sacred passes these to functions: not typos
        pairs = list(zip(points, placeholder_dirs))
        workers = min(_cores(), len(pairs) // PARALLEL_FROM)
        built = _in_parallel(ex, inject, known, taken, pairs, workers) if workers > 1 else None
        if built is None:
            built = _build(ex, inject, known, taken, pairs)
        if isinstance(built, ExperimentError):
            raise built
        configs, seeds = [c for c, _ in built], [s for _, s in built]
    return default, configs, inject, seeds


#: from this many points a core, the pre-flight builds configs in forked processes
PARALLEL_FROM = 1000


def _cores() -> int:
    """The cores this process may run on (a login node's cgroup or taskset, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def _build(ex: tp.Any, inject: tp.Optional[str], known: tp.Collection[str], taken: tp.Collection[str],
           pairs: tp.Sequence[tp.Tuple[Point, str]]) -> tp.Union[tp.List[tp.Tuple[dict, tp.Any]], ExperimentError]:
    """``(config, seed)`` of each point in order, or the error of the first that fails."""
    built = []
    for point, placeholder in pairs:
        updates = dict(point.updates)
        if inject:
            updates[inject] = placeholder
        where = f"point {point.index} ({point.label})"
        try:
            config, added, own_seed = sacred_adapter.build_config(ex, updates, point.named_configs)
        except KeyError as exc:
            msg = exc.args[0] if exc.args else str(exc)
            return ExperimentError(f"{where}: {msg}")
        except Exception as exc:
            return ExperimentError(f"{where}: config scope failed: {_scope_error(exc)}")
        for key in point.updates:
            bad = [a for a in added if a == key or a.startswith(key + ".")]
            # sacred is lax here, and so is ptslurm: new sub-keys in a dict the config has
            # (optimizer={'name': 'sgd', 'momentum': 0.9}), a key a captured function takes
            if not bad or key in known or key.split(".")[0] in taken:
                continue
            hint = [h for h in difflib.get_close_matches(key, known, n=3) if h != key][:1]
            fix = f"did you mean {hint[0]!r}?" if hint else "check the spelling against `python EXP.py print_config`"
            return ExperimentError(f"{where}: unknown config key {key!r}; {fix}")
        built.append((config, config.get("seed") if own_seed else None))
    return built


_FORKED: tp.List[tp.Any] = []  # what forked workers build from (inherited, never pickled)


def _build_chunk(bounds: tp.Tuple[int, int]) -> tp.Any:
    ex, inject, known, taken, pairs = _FORKED
    try:
        return _build(ex, inject, known, taken, pairs[bounds[0]:bounds[1]])
    except BaseException:  # noqa: BLE001 - a scope that exits: the caller builds here, as without workers
        return None


def _in_parallel(ex: tp.Any, inject: tp.Optional[str], known: tp.Collection[str], taken: tp.Collection[str],
                 pairs: tp.Sequence[tp.Tuple[Point, str]], workers: int) -> tp.Any:
    """``_build`` over ``workers`` forked processes (the experiment loaded once, before the
    fork), in point order; the first error by point order. None when the configs cannot come
    back (a value that does not pickle: a lambda in a config) or a worker ended (a scope that
    exits): the caller builds them here, with the outcome it has without workers."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    size = -(-len(pairs) // workers)
    chunks = [(start, min(start + size, len(pairs))) for start in range(0, len(pairs), size)]
    _FORKED[:] = [ex, inject, known, taken, pairs]
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            parts = list(pool.map(_build_chunk, chunks))
    except Exception:  # noqa: BLE001 - a config that does not pickle, a worker that died
        return None
    finally:
        _FORKED.clear()
    built: tp.List[tp.Tuple[dict, tp.Any]] = []
    for part in parts:
        if part is None:
            return None
        if isinstance(part, ExperimentError):
            return part
        built += part
    return built


def _scope_error(exc: BaseException) -> str:
    name = type(exc).__name__
    if name == "NamedConfigNotFoundError":
        return str(exc).splitlines()[0]
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "sacred" not in f.filename.split(os.sep)]
    where = f" ({os.path.basename(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{name}: {text}{where}"


def list_defaults(default: dict, points: tp.Sequence[Point], flat_axes: tp.Iterable[tp.Any]) -> tp.List[str]:
    """Warnings for keys swept with a flat list whose default value is itself a list;
    ``flat_axes``: ``[key, values as written]`` (or bare keys: the points' values)."""
    out = []
    for item in flat_axes:
        key, written = (item[0], list(item[1])) if isinstance(item, (list, tuple)) else (item, None)
        value = get_dotted(default, key)
        if isinstance(value, list):
            values = written if written is not None else [p.updates[key] for p in points if key in p.updates]
            literal = "[" + ",".join(map(repr, values)) + "]"
            out.append(f"{key}: the experiment's default is a list ({value!r}) but {key}=[...] "
                       f"sweeps over its elements; to pass the list itself write {key}=[{literal}]")
    return out


def git_state(path: Path) -> dict:
    """Commit and dirty state of the repository holding ``path``: ``{"commit": None,
    "reason": ...}`` when it is no repository or has no commits yet (sacred would raise)."""
    return programs.git_state(Path(path).resolve().parent)
