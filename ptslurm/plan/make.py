"""The plan of a sweep: the request, every check without side effects (spec, resources, the
experiment and every point's config in the pre-flight, root writable), and the staged code
snapshot. Nothing outside a temporary folder exists before ``plan()`` returns.
"""
import dataclasses
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import typing as tp
from pathlib import Path

from ..records import claims, manifests, snapshot, storage
from . import grid, sweepfile
from .. import records, schedulers
from ..errors import SpecError, UsageError
from ..schedulers.slurmtext import slurm_minutes
from ..records import Executor
from ..records.spec import DEFAULT_SIGNAL_DELAY_S, Point, Resources, default_signal_delay

FALLBACK_STORAGE_KEYS = ("trainer.storage_dir", "storage_dir")  # tried when no key is given


@dataclasses.dataclass(frozen=True)
class SweepRequest:
    experiment: str
    with_tokens: tp.Tuple[str, ...] = ()
    sweep_file: tp.Optional[str] = None
    name: tp.Optional[str] = None
    root: tp.Optional[str] = None
    storage_key: tp.Optional[str] = None  # None: the first of FALLBACK_STORAGE_KEYS the config has
    executor: str = "auto"
    jobs: int = 1
    resources: Resources = Resources()
    dry_run: bool = False
    argv: tp.Tuple[str, ...] = ()
    max_snapshot_mb: float = snapshot.DEFAULT_MAX_MB
    max_points: int = grid.DEFAULT_MAX_POINTS
    keep_duplicates: bool = False  # run points that repeat an earlier one (else dropped with a note)
    note: tp.Optional[str] = None  # a description, shown by `ptslurm list`
    notify: tp.Optional[str] = None  # a shell command run once when every point has ended
    halving: tp.Optional[str] = None  # `--halving budget=steps,min=2,...`: laid over the sweep file's section


@dataclasses.dataclass
class Plan:
    """The outcome of everything before the first side effect."""

    request: SweepRequest
    points: tp.List[Point]
    root: Path
    experiment_name: str
    module_name: str
    experiment_file: Path
    storage_key: tp.Optional[str]
    predicted_dirs: tp.List[Path]
    warnings: tp.List[str]
    executor: str
    name: str
    spec_hash: str
    layout: tp.Optional[snapshot.Layout] = None
    staging: tp.Optional[Path] = None  # the snapshot, made and checked before anything is created
    code_hash: str = ""
    code_bytes: int = 0
    seeds: tp.List[tp.Optional[int]] = dataclasses.field(default_factory=list)
    # a sweep file's resources per point: the distinct requests, and each point's (empty: all
    # points ask for ``request.resources``)
    groups: tp.List[Resources] = dataclasses.field(default_factory=list)
    point_groups: tp.List[int] = dataclasses.field(default_factory=list)
    search: tp.Any = None  # a sweep file's successive halving (``halving.Search``)
    optuna: tp.Optional[tp.Dict[str, tp.Any]] = None  # its Optuna search (``optuna_search.parse``)

    def group_resources(self) -> tp.List[tp.Tuple[Resources, tp.List[int]]]:
        """Each resource group with the indices of its points (one group without a sweep
        file's resources)."""
        if not self.groups:
            return [(self.request.resources, [pt.index for pt in self.points])]
        return [(r, [pt.index for pt, g in zip(self.points, self.point_groups) if g == k])
                for k, r in enumerate(self.groups)]

    @property
    def sweep_dir(self) -> Path:
        return manifests.sweeps_dir(self.root) / self.name

    @property
    def workdir(self) -> Path:
        """Where each job runs: the sweep snapshot's copy of the experiment's folder."""
        assert self.layout is not None, "plan() made the layout"
        return self.sweep_dir / records.CODE / self.layout.workdir

    def discard(self) -> None:
        """Remove the staged snapshot (after create() took it, or when nothing is created)."""
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)


def expand_points(request: SweepRequest, notes: tp.Optional[tp.List[str]] = None
                  ) -> tp.Tuple[tp.List[Point], tp.List[tp.Any], grid.Block]:
    """The sweep's points, the keys given as flat lists on the command line, and the sweep
    file's block (its successive halving: each point starts at its bracket's budget); ``notes``
    receives what the expansion dropped."""
    cli = grid.parse_with(request.with_tokens)
    if notes is not None:
        notes.extend(grid.comma_notes(request.with_tokens))
    base = sweepfile.load(request.sweep_file) if request.sweep_file else grid.Block()
    points = grid.expand(base, cli, max_points=request.max_points, keep_duplicates=request.keep_duplicates,
                         notes=notes)
    # each flat list as written (repeats included): the hint shows the list literally
    flat = [[a.keys[0], [v[0] for v in a.values]] for a in cli.axes if a.flat_list]
    if request.halving is not None:
        from ..read.halving import from_flag
        from ..read.results import direction

        base = dataclasses.replace(base, search=from_flag(request.halving, base.search))
        direction(base.search.metric)  # the result without a direction: UsageError with the fix
        if base.optuna is not None:
            raise SpecError("--halving: optuna and halving in one sweep are not supported yet; run Optuna's search, "
                            "then `ptslurm extend` its best points (README: adaptive search)")
    if base.search is not None:
        from ..read.halving import first_budgets

        points = first_budgets(base.search, points)
    return points, flat, base


def spec_hash(experiment_file: Path, points: tp.Sequence[Point], resources: Resources,
              storage_key: tp.Optional[str], per_point: tp.Sequence[Resources] = (),
              search: tp.Any = None, asking: tp.Optional[tp.Dict[str, tp.Any]] = None) -> str:
    spec: tp.Dict[str, tp.Any] = {"experiment": str(experiment_file), "points": [p.identity() for p in points],
            "resources": resources.to_json(), "storage_key": storage_key}
    if search is not None:  # successive halving (absent: the hash of earlier versions)
        spec["search"] = search.to_json()
    if asking is not None:  # Optuna proposes the random values
        spec["optuna"] = asking
    if per_point:  # a sweep file's resources per point (absent: the hash of earlier versions)
        spec["per_point"] = [r.to_json() for r in per_point]
    blob = json.dumps(spec, sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def choose_executor(requested: str, dry_run: bool = False) -> Executor:
    """``slurm`` or ``local`` (``schedulers.choose``)."""
    return Executor(schedulers.choose(requested, dry_run))


def plan(request: SweepRequest, scheduler_given: bool = False, executor: tp.Optional[Executor] = None) -> Plan:
    """All checks without side effects outside a temporary folder: the code snapshot is
    made there and the pre-flight loads the experiment from it, in a fresh process, as the
    job will. Raises a UsageError subclass on bad input. Call ``discard()`` when done.
    ``scheduler_given``: the caller hands in a scheduler backend (no SLURM to look for);
    ``executor``: already chosen (``rerun`` asked the scheduler once)."""
    if request.jobs < 1:
        raise UsageError(f"-j/--jobs must be at least 1, got {request.jobs}")
    if not request.max_snapshot_mb > 0:
        raise UsageError(f"--max-snapshot-mb must be a positive number, got {request.max_snapshot_mb!r}")
    resources, notes = check_resources(request.resources)
    points, flat_axes, base = expand_points(request, notes)
    search, asking = base.search, base.optuna
    groups, point_groups = resource_groups(request.resources, points, notes)
    request = dataclasses.replace(request, resources=resources)
    root = storage.resolve_root(request.root)
    storage.check_root_writable(root)
    storage.require_safe_dir(manifests.sweeps_dir(root), "the sweep's control files (manifest, job pickles)")
    path = Path(request.experiment)
    chosen = executor or (Executor.SLURM if scheduler_given else choose_executor(request.executor, request.dry_run))
    if request.name is not None:
        check_name(request.name)
    keys = (request.storage_key,) if request.storage_key else FALLBACK_STORAGE_KEYS

    def placeholders(exp_name: str) -> tp.List[Path]:
        return claims.predict_dirs(root / exp_name, len(points))

    points, extra = with_files(points)
    queued = schedulers.of(chosen).keeps_queue  # (else the points run here: no partition, no resources)
    if queued and not scheduler_given and not request.dry_run:
        schedulers.slurm().prefetch_submit_limit()  # answered while the experiment loads
    staged = stage(path, root, points, keys, placeholders, flat_axes, request.max_snapshot_mb, extra)
    lay, staging, checked = staged.layout, staged.staging, staged.checked
    exp_name = staged.experiment_name
    predicted = placeholders(exp_name)
    injected = checked["injected"]
    digest = spec_hash(path.resolve(), points, request.resources if queued else Resources(), injected,
                       [groups[g] for g in point_groups] if queued else
                       [Resources(points_per_job=groups[g].points_per_job) for g in point_groups], search, asking)
    name = request.name or f"{exp_name}-{digest}"
    try:
        check_name(name)
        storage.require_safe_dir(root / exp_name, "the points' storage dirs")
    except UsageError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    warnings = notes + list(checked["warnings"])
    if not queued and request.resources.world_size > 1:
        warnings.append(f"--nodes/--tasks-per-node ask for {request.resources.world_size} ranks per point; "
                        f"locally each point runs as one rank")
    module_name = path.stem
    if request.storage_key and not injected:
        warnings.append(f"the experiment has no config key {request.storage_key!r}: the storage dir "
                        f"is not injected; the code finds it with ptslurm.get_storage_dir() "
                        f"(or --storage-key KEY names another key)")
    return Plan(request=request, points=points, root=root, experiment_name=exp_name,
                module_name=module_name, experiment_file=path.resolve(), storage_key=injected,
                predicted_dirs=predicted, warnings=warnings, executor=chosen, name=name,
                spec_hash=digest, layout=lay, staging=staging, code_hash=staged.code_hash,
                code_bytes=staged.code_bytes, seeds=checked["seeds"], groups=groups, point_groups=point_groups,
                search=search, optuna=asking)


def resource_groups(requested: Resources, points: tp.Sequence[Point], notes: tp.List[str]
                    ) -> tp.Tuple[tp.List[Resources], tp.List[int]]:
    """A sweep file's ``resources:`` laid over the profile's and below the command line's
    (a note names each value the command line replaces): the distinct requests, each
    checked as the command line's, and each point's group. Empty lists when no point has
    resources of its own."""
    if not any(pt.resources for pt in points):
        return [], []
    groups: tp.List[Resources] = []
    seen: tp.Dict[str, int] = {}
    of: tp.List[int] = []
    for pt in points:
        key = json.dumps(pt.resources, sort_keys=True, default=repr)
        if key not in seen:
            seen[key] = len(groups)
            merged = _laid_over(requested, pt.resources, notes)
            groups.append(check_resources(merged)[0])
        of.append(seen[key])
    return groups, of


def _laid_over(requested: Resources, wanted: tp.Mapping[str, tp.Any], notes: tp.List[str]) -> Resources:
    changes: tp.Dict[str, tp.Any] = {}
    origins = dict(requested.origins)
    for key, value in wanted.items():
        name = "time" if key == "timeout_min" else key
        if key in ("setup", "srun_args"):
            # lines join: the profile's, the sweep file's, then the command line's
            mine = tuple(getattr(requested, key))
            cli = int(requested.origins.get(f"{key}:command line", "0") or 0)
            changes[key] = mine[:len(mine) - cli] + tuple(value) + mine[len(mine) - cli:]
        elif key == "sbatch_args":
            merged = dict(value)
            merged.update({k: v for k, v in requested.sbatch_args.items()
                           if requested.origins.get(k) == "command line" or k not in merged})
            changes[key] = merged
            origins.update({str(k): "sweep file" for k in value if requested.origins.get(k) != "command line"})
        elif requested.origins.get(name) == "command line":
            if getattr(requested, key) != value:
                note = (f"the command line's {name} {getattr(requested, key)} replaces the sweep file's "
                        f"{name} {value} (command-line options win)")
                if note not in notes:
                    notes.append(note)
        else:
            changes[key] = value
            origins[name] = "sweep file"
    return dataclasses.replace(requested, origins=origins, **changes)


def with_files(points: tp.List[Point], cwd: tp.Optional[str] = None) -> tp.Tuple[tp.List[Point], tp.Dict[str, str]]:
    """sacred reads ``with config.json`` (or ``.yaml``/``.yml``/``.pickle``) from a file
    relative to the working directory. Such files, found relative to ``cwd``, go into the
    snapshot (``ptslurm-with/`` in the experiment's folder, where the job runs), and the
    points name that copy. Returns the points and ``{file in the snapshot folder: source}``."""
    cwd = cwd or os.getcwd()
    copies: tp.Dict[str, str] = {}  # source -> relative path in the snapshot's experiment folder
    taken: tp.Set[str] = set()
    out = []
    for point in points:
        names = []
        for name in point.named_configs:
            source = os.path.realpath(os.path.join(cwd, name))
            if name.lower().endswith((".json", ".yaml", ".yml", ".pickle")) and os.path.isfile(source):
                if source not in copies:
                    base, n = os.path.basename(source), 1
                    rel = f"{snapshot.WITH_FILES}/{base}"
                    while rel in taken:
                        n += 1
                        rel = f"{snapshot.WITH_FILES}/{n}-{base}"
                    copies[source] = rel
                    taken.add(rel)
                name = copies[source]
            names.append(name)
        out.append(dataclasses.replace(point, named_configs=tuple(names)))
    return out, {rel: src for src, rel in copies.items()}


class Staged(tp.NamedTuple):
    """A code snapshot made in a temporary folder and checked by the pre-flight."""

    layout: snapshot.Layout
    staging: Path  # the temporary folder (its caller removes it)
    code_hash: str
    code_bytes: int
    checked: tp.Dict[str, tp.Any]  # the pre-flight's answer: injected key, seeds, warnings
    experiment_name: str  # the sacred experiment's name (its points' storage dirs go under it)


def stage(path: Path, root: Path, points: tp.Sequence[Point], keys: tp.Sequence[str],
          placeholders: tp.Callable[[str], tp.List[Path]], flat_axes: tp.Sequence[tp.Any], max_mb: float,
          extra: tp.Optional[tp.Mapping[str, str]] = None) -> Staged:
    """Load the experiment (to learn what it imports), copy its snapshot into a temporary
    folder and run the pre-flight from there; the caller owns the staging folder."""
    from . import experiment, preflight

    path_before = list(sys.path)
    _, ex = _with_time_limit(lambda: experiment.load(path, light=True), path)
    module_files = experiment.module_files()
    lay = snapshot.layout(path, path_before, list(sys.path), module_files)
    exp_name = ex.path
    if not exp_name or os.sep in exp_name or exp_name in (".", "..", records.SWEEPS):
        raise UsageError(f"experiment name {exp_name!r} cannot be a folder name; "
                         f"use Experiment('my-experiment') with a plain name")
    imported = [os.path.relpath(real, lay.root) for real in map(os.path.realpath, module_files)
                if snapshot._under(real, str(lay.root)) and not snapshot.environment(real, str(lay.root))]
    listing = snapshot.files(lay, skip=[root], must=imported)
    snapshot.check_size(lay, listing, max_mb)
    staging = Path(tempfile.mkdtemp(prefix="ptslurm-snapshot-"))
    try:
        code = staging / records.CODE
        workdir = lay.workdir.as_posix()
        code_hash = snapshot.copy(lay, listing, code, [(src, f"{workdir}/{rel}" if workdir != "." else rel)
                                                       for rel, src in (extra or {}).items()])
        checked = preflight.run(code, code / lay.experiment, code / lay.workdir, path.stem,
                                [p.to_json() for p in points], keys, [str(d) for d in placeholders(exp_name)],
                                flat_axes, lay.root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Staged(lay, staging, code_hash, sum(size for _, size in listing), checked, exp_name)


IMPORT_TIMEOUT_S = float(os.environ.get("PTSLURM_IMPORT_TIMEOUT_S", "300"))


def _with_time_limit(load: tp.Callable[[], tp.Any], path: Path) -> tp.Any:
    """``load()`` (importing the experiment in this process), stopped after
    ``IMPORT_TIMEOUT_S`` with one line: an experiment that loops at import must not hang the
    command (the pre-flight's process has its own limit)."""
    import signal
    import threading

    from ..errors import ExperimentError

    if threading.current_thread() is not threading.main_thread():
        return load()

    def expired(signum: int, frame: tp.Any) -> None:  # noqa: ARG001
        raise ExperimentError(f"importing {str(path)!r} took over {IMPORT_TIMEOUT_S:g} s; does it do heavy work "
                              f"(or loop) at import time? Move it into main()")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, IMPORT_TIMEOUT_S)
    try:
        return load()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


SIGNAL_MARGIN_S = 30  # run time before the stop signal, at least: SLURM checks limits every 30 s


def check_time(resources: Resources, limit_min: tp.Optional[float] = None, what: str = "--time") -> None:
    """The stop signal (``--signal-delay`` before the limit) must leave the job some time to
    run; ``limit_min`` defaults to ``--time``."""
    limit = resources.timeout_min if limit_min is None else limit_min
    delay = resources.signal_delay_s
    if delay is None:  # not resolved yet (check_resources does): the default for this limit
        delay = default_signal_delay(limit)
    if delay < 0:
        raise UsageError(f"--signal-delay must be a non-negative number of seconds, got {delay}")
    if limit is not None and limit * 60 < delay + SIGNAL_MARGIN_S:
        need = -(-(delay + SIGNAL_MARGIN_S) // 60)
        raise UsageError(f"{what} {limit:g} min leaves no time to run: the stop signal comes --signal-delay "
                         f"{delay} s before the limit; give --time {need} or more, or a smaller --signal-delay "
                         f"(at least {SIGNAL_MARGIN_S} s of run time must come before the signal)")


def time_limit_note(resources: Resources) -> tp.Optional[str]:
    """Without --time the partition's default applies: say which (from ``scontrol show
    partition``) and check the stop signal fits in it. None when --time was given."""
    if resources.timeout_min is not None:
        return None
    info = schedulers.slurm().partition_info(resources.partition)
    if not info:
        return "no --time: jobs get the partition's default time limit (scontrol did not tell which)"
    name = info.get("PartitionName", resources.partition or "default")
    default, maximum = info.get("DefaultTime", "NONE"), info.get("MaxTime", "UNLIMITED")
    try:
        d, m = slurm_minutes(default), slurm_minutes(maximum)
    except ValueError:
        return f"no --time: jobs get partition {name!r}'s default time limit ({default})"
    if d is not None or m is not None:
        check_time(resources, d if d is not None else m, what=f"partition {name!r}'s default time limit")
    if d is not None:
        return f"no --time: jobs get partition {name!r}'s default time limit {default}"
    if m is not None:
        return f"no --time and partition {name!r} has no default: jobs get its MaxTime {maximum}"
    return f"no --time and partition {name!r} has no default or maximum time: jobs run without a time limit"


def check_resources(resources: Resources) -> tp.Tuple[Resources, tp.List[str]]:
    """What sbatch would misread: control characters in --sbatch options (a newline would
    end the #SBATCH line and run the rest as a command), options ptslurm owns, memory that
    is not a positive finite number, a time limit the stop signal does not fit in. Returns
    the resources to submit with (an exclusive --sbatch option replaces ptslurm's) and notes."""
    import math

    from ..records.spec import check_sbatch_args

    # the same checks for the command line and the library path (sweep.run with Resources)
    def integer(value: tp.Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    r = resources
    if r.max_attempts is not None and (not integer(r.max_attempts) or r.max_attempts < 1):
        raise UsageError(f"--max-attempts must be a positive integer, got {r.max_attempts!r}")
    for key in ("gpus", "cpus", "array_parallelism", "max_requeues"):
        value = getattr(r, key)
        if value is not None and (not integer(value) or value < 0):
            raise UsageError(f"--{key.replace('_', '-')} must be a non-negative integer, got {value!r}")
    if not integer(r.points_per_job) or r.points_per_job < 1:
        raise UsageError(f"--points-per-job must be a positive integer, got {r.points_per_job!r}")
    if r.points_per_job > 1 and r.world_size > 1:
        raise UsageError(f"--points-per-job {r.points_per_job} with {r.world_size} ranks per point: a distributed "
                         f"point needs its job's whole allocation; drop --points-per-job or the extra ranks")
    for key in ("nodes", "tasks_per_node"):
        value = getattr(r, key)
        if value is not None and (not integer(value) or value < 1):
            raise UsageError(f"--{key.replace('_', '-')} must be a positive integer, got {value!r}")

    for key, value in resources.sbatch_args.items():
        for text in (str(key), str(value)):
            if any(ord(c) < 32 or ord(c) == 127 for c in text):
                raise UsageError(f"--sbatch {str(key)!r}={str(value)!r}: control characters (newlines, tabs) are not allowed "
                                 f"in sbatch options; give one KEY=VALUE per --sbatch")
    if resources.mem_gb is not None and not (math.isfinite(resources.mem_gb) and resources.mem_gb > 0):
        raise UsageError(f"--mem must be a positive number of GB, got {resources.mem_gb}")
    for key in ("setup", "srun_args"):
        for line in getattr(resources, key):
            if not isinstance(line, str) or not line.strip() or any(ord(c) < 32 or ord(c) == 127 for c in line):
                raise UsageError(f"--{key.replace('_', '-').rstrip('s')} {line!r}: one line each, without control "
                                 f"characters (give several lines as several entries)")
    if resources.mem_gb is not None and round(resources.mem_gb * 1024) < 1:
        raise UsageError(f"--mem {resources.mem_gb:g} GB is less than 1 MB, which sbatch would get as --mem=0 "
                         f"(all of a node's memory); give at least 0.001")
    for key in ("partition", "account", "qos", "constraint"):
        value = getattr(resources, key)
        if value is not None and (not isinstance(value, str) or not value.strip()
                                  or any(ord(c) < 32 or ord(c) == 127 for c in value)):
            raise UsageError(f"--{key} {value!r}: one line of text without control characters (a newline would "
                             f"end the batch script's #SBATCH line)")
    notes = []
    if resources.signal_delay_s is None:
        delay = default_signal_delay(resources.timeout_min)
        resources = dataclasses.replace(resources, signal_delay_s=delay)
        if delay != DEFAULT_SIGNAL_DELAY_S:
            notes.append(f"the stop signal comes {delay} s before the {resources.timeout_min:g}-min limit (a quarter "
                         f"of it: the default {DEFAULT_SIGNAL_DELAY_S} s does not fit); --signal-delay sets it")
    check_time(resources)
    resources, more = check_sbatch_args(resources)
    return resources, notes + more


def check_name(name: str) -> None:
    """A sweep name is a folder name a shell and SLURM's --job-name take as it is."""
    import re

    if not name or len(name) > 100 or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*", name):
        raise UsageError(f"bad sweep name {name!r}: use at most 100 letters, digits, '-', '_', '+' and '.', "
                         f"not starting with '.' or '-'")


def versions() -> tp.Dict[str, tp.Optional[str]]:
    from importlib import metadata

    out: tp.Dict[str, tp.Optional[str]] = {"python": platform.python_version()}
    for dist in ("ptslurm", "sacred", "submitit", "torch"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


