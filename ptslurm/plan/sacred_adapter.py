"""Everything ptslurm uses of sacred that is not its documented API, in one place.

ptslurm relies on these sacred internals (checked by ``check()``, which the test suite runs
against the installed sacred; ``setup.cfg`` pins the range it was tested with):

- ``sacred.arg_parser._convert_value``: how ``with`` values are parsed (ptslurm parses them
  the same way, then expands the lists that are sweep axes);
- ``Experiment._create_run(config_updates=, named_configs=)``: a Run without running it
  (``ex.run`` would start it at once; the job adds observers and run info first);
- ``Run._id``, ``Run.observers``, ``Run.capture_mode``, ``Run.info``, ``Run.experiment_info``;
- ``RunObserver.started_event(..., _id=...)``: how observers learn the run id;
- ``FileStorageObserver.basedir``;
- ``sacred.initialize``'s config phases (scaffolding, config updates, named configs, config
  hooks, seeds), called in ``build_config`` exactly as ``create_run`` calls them, to learn
  which keys an update added and whether the config sets its own seed (``create_run``
  keeps both to itself);
- ``Run._stop_heartbeat``, ``Run._emit_heartbeat``, ``Run._emit_interrupted`` (status): how
  sacred closes a run on Ctrl-C, done by ``close_interrupted`` for a process that ptslurm's
  watchdog ends from a thread (sacred's own exit path never runs then);
- ``sacred.dependencies.get_commit_if_possible``/``get_main_file`` and
  ``sacred.ingredient.gather_sources_and_dependencies`` (patched while an experiment file is
  imported: see ``tolerant_git`` and ``light_sources``).

Nothing here is imported before it is needed: ``import ptslurm.plan.sacred_adapter`` does not
import sacred.
"""
import contextlib
import inspect
import os
import typing as tp
import warnings

from ..errors import AdapterError

TESTED = "sacred>=0.8.7,<0.9"  # the range the suite ran against (setup.cfg pins the same)


def sacred() -> tp.Any:
    """The sacred package, imported without its pkg_resources deprecation notice (sacred
    0.8 imports pkg_resources; the notice would break one-line errors)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
        import sacred as package
        import sacred.dependencies  # noqa: F401
        import sacred.initialize  # noqa: F401
        import sacred.observers  # noqa: F401
    return package


def check() -> str:
    """Raise AdapterError naming every internal of the installed sacred that changed; return
    its version."""
    s = sacred()
    problems = []

    def need(obj: tp.Any, attr: str, params: tp.Sequence[str] = ()) -> None:
        where = f"{getattr(obj, '__name__', obj)}.{attr}"
        target = getattr(obj, attr, None)
        if target is None:
            problems.append(f"{where} is gone")
            return
        if params:
            try:
                names = inspect.signature(target).parameters
            except (TypeError, ValueError):
                return
            missing = [p for p in params if p not in names]
            if missing:
                problems.append(f"{where} no longer takes {', '.join(missing)}")

    need(s.Experiment, "_create_run", ("config_updates", "named_configs"))
    import sacred.arg_parser as arg_parser

    need(arg_parser, "_convert_value")
    need(s.observers.RunObserver, "started_event", ("_id",))
    need(s.observers.FileStorageObserver, "started_event", ("_id",))
    for name in ("create_scaffolding", "distribute_config_updates", "distribute_presets",
                 "gather_ingredients_topological", "get_config_modifications", "get_configuration",
                 "get_scaffolding_and_config_name", "initialize_logging"):
        need(s.initialize, name)
    for name in ("gather_fallbacks", "set_up_config", "run_config_hooks", "set_up_seed", "run_named_config"):
        need(s.initialize.Scaffold, name)
    need(s.dependencies, "get_commit_if_possible", ("filename", "save_git_info"))
    need(s.dependencies, "get_main_file")
    import sacred.ingredient as ingredient

    need(ingredient, "gather_sources_and_dependencies", ("globs", "save_git_info"))
    need(s.run.Run, "__call__")
    need(s.run.Run, "_stop_heartbeat")
    need(s.run.Run, "_emit_heartbeat")
    need(s.run.Run, "_emit_interrupted", ("status",))
    for attr in ("_id", "observers", "capture_mode", "info", "experiment_info"):
        if attr not in inspect.getsource(s.run.Run.__init__):
            problems.append(f"sacred.run.Run no longer sets {attr}")
    if problems:
        raise AdapterError(f"sacred {s.__version__} changed what ptslurm relies on ({'; '.join(problems)}); "
                           f"install {TESTED} or update ptslurm/plan/sacred_adapter.py")
    return s.__version__


# ----------------------------------------------------------------------------- loading


@contextlib.contextmanager
def tolerant_git() -> tp.Iterator[None]:
    """sacred reads the git state when an Experiment is created and raises in a repository
    with no commits yet (``Reference at 'refs/heads/main' does not exist``). Treat such a
    repository as having no commit instead; the manifest records why."""
    deps = sacred().dependencies
    original = deps.get_commit_if_possible

    def tolerant(filename: str, save_git_info: bool) -> tp.Any:
        try:
            return original(filename, save_git_info)
        except ValueError as exc:
            if "does not exist" not in str(exc) and "Reference" not in str(exc):
                raise
            return None, None, None

    deps.get_commit_if_possible = tolerant
    try:
        yield
    finally:
        deps.get_commit_if_possible = original


@contextlib.contextmanager
def light_sources() -> tp.Iterator[None]:
    """Skip sacred's scan of every imported module's sources and package versions when an
    Experiment is created (the submit side only builds configs; the job records them)."""
    deps = sacred().dependencies
    import sacred.ingredient as ing

    original = ing.gather_sources_and_dependencies

    def main_file_only(globs: tp.Any, save_git_info: bool, base_dir: tp.Any = None) -> tp.Any:
        _, main = deps.get_main_file(globs, False)
        return main, ({main} if main is not None else set()), set()

    ing.gather_sources_and_dependencies = main_file_only
    try:
        yield
    finally:
        ing.gather_sources_and_dependencies = original


def is_experiment(value: tp.Any) -> bool:
    return isinstance(value, sacred().Experiment)


# ----------------------------------------------------------------------------- configs


def convert_value(text: str) -> tp.Any:
    """A ``with`` value as sacred's command line parses it (``sacred.arg_parser._convert_value``)."""
    sacred()
    from sacred.arg_parser import _convert_value

    return _convert_value(text)


def build_config(ex: tp.Any, updates: tp.Mapping[str, tp.Any],
                 named_configs: tp.Sequence[str] = ()) -> tp.Tuple[dict, tp.Set[str], bool]:
    """The full config of one point, built by sacred's own phases in ``create_run``'s order
    (without creating the Run). Returns ``(config, added_keys, own_seed)``: ``added_keys``
    are dotted keys that the updates or named configs introduced although no config scope
    defines them; ``own_seed`` whether the config (scopes, named configs or updates) set
    ``seed`` rather than sacred drawing one. sacred's exceptions propagate; an unknown named
    config is a KeyError naming the available ones."""
    init = sacred().initialize
    from sacred.utils import (convert_to_nested_dict, iterate_flattened, join_paths, recursive_update,
                              set_by_dotted_path)

    sorted_ingredients = init.gather_ingredients_topological(ex)
    scaffolding = init.create_scaffolding(ex, sorted_ingredients)
    prefixes = sorted([s.split(".") for s in scaffolding if s != ""], reverse=True, key=len)
    config_updates = convert_to_nested_dict(dict(updates))
    _, run_logger = init.initialize_logging(ex, scaffolding)
    init.distribute_config_updates(prefixes, scaffolding, config_updates)
    for ncfg in named_configs:
        scaff, cfg_name = init.get_scaffolding_and_config_name(ncfg, scaffolding)
        if cfg_name not in scaff.named_configs and not os.path.isfile(cfg_name):  # sacred reads files too
            available = ", ".join(sorted(scaff.named_configs)) or "none"
            raise KeyError(f"unknown named config {ncfg!r} (available: {available})")
        scaff.gather_fallbacks()
        ncfg_updates = scaff.run_named_config(cfg_name)
        init.distribute_presets(scaff.path, prefixes, scaffolding, ncfg_updates)
        for key, value in iterate_flattened(ncfg_updates):
            set_by_dotted_path(config_updates, join_paths(scaff.path, key), value)
    init.distribute_config_updates(prefixes, scaffolding, config_updates)
    for scaffold in scaffolding.values():
        scaffold.gather_fallbacks()
        scaffold.set_up_config()
        config = init.get_configuration(scaffolding)
        recursive_update(scaffold.config, scaffold.run_config_hooks(config, "main", run_logger))
    root = scaffolding.get("") or next(iter(scaffolding.values()))
    own_seed = root.config.get("seed") is not None
    for scaffold in reversed(list(scaffolding.values())):
        scaffold.set_up_seed()
    config = init.get_configuration(scaffolding)
    mods = init.get_config_modifications(scaffolding)
    return config, set(mods.added), own_seed


# ----------------------------------------------------------------------------- runs


def create_run(ex: tp.Any, updates: tp.Mapping[str, tp.Any], named_configs: tp.Sequence[str]) -> tp.Any:
    """A sacred Run of ``ex`` with these updates and named configs, not yet started."""
    return ex._create_run(config_updates=dict(updates), named_configs=list(named_configs))


class _MainThen:
    """A run's main function, then ``after()`` once it returned (inside sacred's run: an
    exception from ``after`` ends the run as one from main would). When either raises,
    ``on_error(exc)`` records the end and gives the line that says so; it goes into the run's
    captured output, on a line of its own, with everything the code printed last (sacred
    writes ``cout.txt`` at heartbeats only, and not at all once the run failed or was
    interrupted). Every other attribute is the captured function's (sacred reads its prefix
    and signature)."""

    def __init__(self, run: tp.Any, after: tp.Callable[[], None],
                 on_error: tp.Optional[tp.Callable[[BaseException], str]]):
        self._run, self._main, self._after, self._on_error = run, run.main_function, after, on_error

    def __call__(self, *args: tp.Any, **kwargs: tp.Any) -> tp.Any:
        try:
            result = self._main(*args, **kwargs)
            self._after()
        except BaseException as exc:
            if self._on_error is not None:
                say(self._run, self._on_error(exc))
            raise
        return result

    def __getattr__(self, name: str) -> tp.Any:
        return getattr(self._main, name)


def after_main(run: tp.Any, after: tp.Callable[[], None],
               on_error: tp.Optional[tp.Callable[[BaseException], str]] = None) -> None:
    """Call ``after()`` when the run's main function returns, before sacred's post-run hooks;
    ``on_error`` as ``_MainThen`` says."""
    run.main_function = _MainThen(run, after, on_error)


def say(run: tp.Any, line: str) -> None:
    """Print ``line`` on a line of its own (after a ``\r`` progress line too) and write the
    run's captured output so far into its observers' ``cout.txt``. Best effort."""
    import sys

    try:
        sys.stderr.flush()
        _write_own_line(run, sys.stdout, line)
        run._emit_heartbeat()
    except Exception:  # noqa: BLE001 - the attempt is recorded already
        pass


def _write_own_line(run: tp.Any, stream: tp.Any, line: str) -> None:
    """``line`` to ``stream`` (the run's capture, teed to the job's log) on a line of its own:
    after a newline when what the code printed last did not end with one (a ``\r`` bar)."""
    stream.flush()
    run._get_captured_output()
    text = run.captured_out or ""
    stream.write(("" if not text or text.endswith("\n") else "\n") + line + "\n")
    stream.flush()


def run_id(run: tp.Any) -> tp.Any:
    """The id the run's first observer gave it (None before it started, or for None)."""
    return getattr(run, "_id", None)


def observe_first(run: tp.Any, basedir: str, on_start: tp.Optional[tp.Callable[[tp.Any], None]] = None) -> None:
    """Put a FileStorageObserver on ``basedir`` first among the run's observers: the first
    observer decides the run id, so attempt n is ``<basedir>/<n>`` whatever else observes
    the run. ``on_start(run_id)`` is called the moment the run starts (a killed attempt then
    keeps its metrics and logs). An experiment's own FileStorageObserver on the same folder
    is dropped (it would record each attempt twice); other observers choose their own ids,
    since their folders (shared by all points of a sweep) may hold ours already."""
    file_observer: tp.Any = sacred().observers.FileStorageObserver

    class AttemptObserver(file_observer):
        def started_event(self, *args: tp.Any, **kwargs: tp.Any) -> tp.Any:
            started = super().started_event(*args, **kwargs)
            if on_start is not None:
                on_start(started)
            return started

    ours = os.path.realpath(basedir)
    others = [o for o in run.observers
              if not (isinstance(o, file_observer) and os.path.realpath(o.basedir) == ours)]
    for observer in others:
        _own_ids(observer)
    run.observers = [AttemptObserver(basedir)] + others


def no_observers(run: tp.Any) -> None:
    """The run records nothing (the other ranks of a distributed point)."""
    run.observers = []


def _own_ids(observer: tp.Any) -> None:
    started = getattr(observer, "started_event", None)
    if started is None:
        return

    def started_event(*args: tp.Any, **kwargs: tp.Any) -> tp.Any:
        kwargs["_id"] = None
        return started(*args, **kwargs)

    observer.started_event = started_event


def set_run_info(run: tp.Any, capture_mode: str, repository: tp.Optional[tp.Mapping[str, tp.Any]],
                 info: tp.Mapping[str, tp.Any]) -> None:
    """How the run captures output, the repository state recorded in run.json (the
    submission's, not the snapshot's), and ``run.info["ptslurm"]``."""
    if repository is not None:
        run.experiment_info["repositories"] = [
            {"url": repository.get("url"), "commit": repository["commit"], "dirty": repository.get("dirty")}]
    run.capture_mode = capture_mode
    run.info["ptslurm"] = dict(info)


def close_interrupted(run: tp.Any, line: str) -> None:
    """Close ``run`` as sacred closes an interrupted one (status INTERRUPTED, a stop time),
    after ``line`` and all output printed since the last heartbeat went into its captured
    output (``cout.txt``): for a process that ptslurm ends from its watchdog thread, where
    sacred's own exit path never runs. Best effort: the attempt is already recorded."""
    import sys
    import time

    # the running code goes on printing until the process ends: nothing of it after
    # ptslurm's line, so its streams go nowhere first and the line goes to the capture after
    captured = sys.stdout
    devnull = open(os.devnull, "w")
    sys.stdout = sys.stderr = devnull
    try:
        _write_own_line(run, captured, line)
    except Exception:  # noqa: BLE001 - a closed stream must not stop the rest
        pass
    try:
        os.dup2(devnull.fileno(), 1)
        os.dup2(devnull.fileno(), 2)
    except OSError:
        pass
    time.sleep(0.2)  # sacred's "fd" capture copies through a tee process: let it catch up
    for step in (run._stop_heartbeat, run._emit_heartbeat, lambda: run._emit_interrupted("INTERRUPTED")):
        try:
            step()
        except Exception:  # noqa: BLE001 - best effort, see above
            pass


def captured_arguments(ex: tp.Any) -> tp.Set[str]:
    """Names the experiment's captured functions (main included) take from the config: sacred
    fills them from a `with` update even when no config scope defines them."""
    names: tp.Set[str] = set()
    for function in getattr(ex, "captured_functions", ()):
        signature = getattr(function, "signature", None)
        for name in getattr(signature, "arguments", ()) or ():
            if not str(name).startswith("_"):
                names.add(str(name))
    return names

