"""``ptslurm sweep``: words -> points -> pre-flight -> storage dirs + manifest -> submission.

Nothing is created before every check that can run without side effects has passed
(spec, experiment, every point's config, root writable, ``sbatch --test-only``). If the
scheduler still refuses, already queued arrays are cancelled, the empty storage dirs are
removed and the manifest says ``not_submitted`` with sbatch's message.
"""
import dataclasses
import hashlib
import json
import os
import platform
import random
import shlex
import shutil
import sys
import tempfile
import typing as tp
from pathlib import Path

from . import commands
from . import executor as executors
from . import grid, records, results, snapshot, storage, sweepfile
from .errors import PointsFailed, StorageError, SubmissionError, UsageError
from .records import BUSY, TERMINAL, Attempt, ExperimentInfo, Manifest, PointEntry, State, read_intent
from .runtime import now
from .results import killed_causes, sweep_states  # noqa: F401 - the read side, re-exported
from .spec import DEFAULT_SIGNAL_DELAY_S, Point, Resources, default_signal_delay

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
    ex: tp.Any = None
    layout: tp.Optional[snapshot.Layout] = None
    staging: tp.Optional[Path] = None  # the snapshot, made and checked before anything is created
    code_hash: str = ""
    code_bytes: int = 0
    seeds: tp.List[tp.Optional[int]] = dataclasses.field(default_factory=list)

    @property
    def sweep_dir(self) -> Path:
        return storage.sweeps_dir(self.root) / self.name

    @property
    def workdir(self) -> Path:
        """Where each job runs: the sweep snapshot's copy of the experiment's folder."""
        assert self.layout is not None, "plan() made the layout"
        return self.sweep_dir / storage.CODE / self.layout.workdir

    def discard(self) -> None:
        """Remove the staged snapshot (after create() took it, or when nothing is created)."""
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)


def expand_points(request: SweepRequest, notes: tp.Optional[tp.List[str]] = None
                  ) -> tp.Tuple[tp.List[Point], tp.List[tp.Any]]:
    """The sweep's points and the keys given as flat lists on the command line; ``notes``
    receives what the expansion dropped."""
    cli = grid.parse_with(request.with_tokens)
    if notes is not None:
        notes.extend(grid.comma_notes(request.with_tokens))
    base = sweepfile.load(request.sweep_file) if request.sweep_file else grid.Block()
    points = grid.expand(base, cli, max_points=request.max_points, keep_duplicates=request.keep_duplicates,
                         notes=notes)
    # each flat list as written (repeats included): the hint shows the list literally
    flat = [[a.keys[0], [v[0] for v in a.values]] for a in cli.axes if a.flat_list]
    return points, flat


def spec_hash(experiment_file: Path, points: tp.Sequence[Point], resources: Resources,
              storage_key: tp.Optional[str]) -> str:
    blob = json.dumps({"experiment": str(experiment_file), "points": [p.identity() for p in points],
                       "resources": resources.to_json(), "storage_key": storage_key},
                      sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def choose_executor(requested: str, dry_run: bool = False) -> str:
    """``slurm`` or ``local``; a dry run may show a SLURM batch script on a machine without
    a controller (a laptop)."""
    if requested not in ("auto", "slurm", "local"):
        raise UsageError(f"unknown executor {requested!r}; use slurm, local or auto")
    if requested == "auto":
        here, said = commands.slurm_here()
        if here == "down":
            raise UsageError(f"SLURM's commands are installed but its controller does not answer ({said}); "
                             f"nothing was created: retry when slurmctld is back, or run on this machine with "
                             f"--executor local")
        return "slurm" if here == "up" else "local"
    if requested == "slurm" and not dry_run and not commands.slurm_available():
        raise UsageError("--executor slurm: no SLURM controller answers `scontrol ping`; "
                         "run on a login node or use --executor local")
    return requested


def plan(request: SweepRequest) -> Plan:
    """All checks without side effects outside a temporary folder: the code snapshot is
    made there and the pre-flight loads the experiment from it, in a fresh process, as the
    job will. Raises a UsageError subclass on bad input. Call ``discard()`` when done."""
    if request.jobs < 1:
        raise UsageError(f"-j/--jobs must be at least 1, got {request.jobs}")
    if not request.max_snapshot_mb > 0:
        raise UsageError(f"--max-snapshot-mb must be a positive number, got {request.max_snapshot_mb!r}")
    resources, notes = check_resources(request.resources)
    request = dataclasses.replace(request, resources=resources)
    points, flat_axes = expand_points(request, notes)
    root = storage.resolve_root(request.root)
    storage.check_root_writable(root)
    storage.require_safe_dir(storage.sweeps_dir(root), "the sweep's control files (manifest, job pickles)")
    path = Path(request.experiment)
    chosen = choose_executor(request.executor, request.dry_run)
    if request.name is not None:
        check_name(request.name)
    keys = (request.storage_key,) if request.storage_key else FALLBACK_STORAGE_KEYS

    def placeholders(exp_name: str) -> tp.List[Path]:
        return storage.predict_dirs(root / exp_name, len(points))

    points, extra = with_files(points)
    staged = stage(path, root, points, keys, placeholders, flat_axes, request.max_snapshot_mb, extra)
    lay, staging, code_hash, code_bytes, checked, ex = staged
    exp_name, predicted = ex.path, placeholders(ex.path)
    injected = checked["injected"]
    digest = spec_hash(path.resolve(), points, request.resources if chosen == "slurm" else Resources(), injected)
    name = request.name or f"{exp_name}-{digest}"
    try:
        check_name(name)
        storage.require_safe_dir(root / exp_name, "the points' storage dirs")
    except UsageError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    warnings = notes + list(checked["warnings"])
    if chosen == "local" and request.resources.world_size > 1:
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
                spec_hash=digest, ex=ex, layout=lay, staging=staging, code_hash=code_hash,
                code_bytes=code_bytes, seeds=checked["seeds"])


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


def stage(path: Path, root: Path, points: tp.Sequence[Point], keys: tp.Sequence[str],
          placeholders: tp.Callable[[str], tp.List[Path]], flat_axes: tp.Sequence[tp.Any], max_mb: float,
          extra: tp.Optional[tp.Mapping[str, str]] = None):
    """Load the experiment (to learn what it imports), copy its snapshot into a temporary
    folder and run the pre-flight from there. Returns ``(layout, staging, code_hash,
    code_bytes, preflight_result, ex)``; the caller owns ``staging``."""
    from . import experiment, preflight

    path_before = list(sys.path)
    _, ex = _with_time_limit(lambda: experiment.load(path, light=True), path)
    module_files = experiment.module_files()
    lay = snapshot.layout(path, path_before, list(sys.path), module_files)
    exp_name = ex.path
    if not exp_name or os.sep in exp_name or exp_name in (".", "..", storage.SWEEPS):
        raise UsageError(f"experiment name {exp_name!r} cannot be a folder name; "
                         f"use Experiment('my-experiment') with a plain name")
    imported = [os.path.relpath(real, lay.root) for real in map(os.path.realpath, module_files)
                if snapshot._under(real, str(lay.root)) and not snapshot.environment(real, str(lay.root))]
    listing = snapshot.files(lay, skip=[root], must=imported)
    snapshot.check_size(lay, listing, max_mb)
    staging = Path(tempfile.mkdtemp(prefix="ptslurm-snapshot-"))
    try:
        code = staging / storage.CODE
        workdir = lay.workdir.as_posix()
        code_hash = snapshot.copy(lay, listing, code, [(src, f"{workdir}/{rel}" if workdir != "." else rel)
                                                       for rel, src in (extra or {}).items()])
        checked = preflight.run(code, code / lay.experiment, code / lay.workdir, path.stem,
                                [p.to_json() for p in points], keys, [str(d) for d in placeholders(exp_name)],
                                flat_axes, lay.root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return lay, staging, code_hash, sum(size for _, size in listing), checked, ex


IMPORT_TIMEOUT_S = float(os.environ.get("PTSLURM_IMPORT_TIMEOUT_S", "300"))


def _with_time_limit(load: tp.Callable[[], tp.Any], path: Path) -> tp.Any:
    """``load()`` (importing the experiment in this process), stopped after
    ``IMPORT_TIMEOUT_S`` with one line: an experiment that loops at import must not hang the
    command (the pre-flight's process has its own limit)."""
    import signal
    import threading

    from .errors import ExperimentError

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
    info = commands.partition_info(resources.partition)
    if not info:
        return "no --time: jobs get the partition's default time limit (scontrol did not tell which)"
    name = info.get("PartitionName", resources.partition or "default")
    default, maximum = info.get("DefaultTime", "NONE"), info.get("MaxTime", "UNLIMITED")
    try:
        d, m = commands.slurm_minutes(default), commands.slurm_minutes(maximum)
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

    from .spec import check_sbatch_args

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


def slurm_backend(p: Plan) -> executors.SlurmBackend:
    return executors.SlurmBackend(p.sweep_dir, p.request.resources, job_name=p.name, workdir=p.workdir)


def backend_of(sweep_dir: Path, manifest: Manifest) -> executors.SlurmBackend:
    return executors.SlurmBackend(sweep_dir, manifest.resources, manifest.name,
                                  workdir=Path(manifest.experiment.workdir) if manifest.experiment.workdir else None)


def existing(p: Plan) -> tp.Optional[Manifest]:
    """The manifest of a sweep of the same name, when one was submitted with the same spec.
    Raises UsageError when the name is taken by a different spec."""
    sweep_dir = p.sweep_dir
    if not sweep_dir.exists():
        return None
    if not (sweep_dir / storage.MANIFEST).exists():
        # a submission killed before its manifest: nothing was queued yet; give back what
        # it claimed and start again
        storage.release_claims(p.root / p.experiment_name, str(sweep_dir))
        shutil.rmtree(sweep_dir, ignore_errors=True)
        return None
    manifest = storage.read_manifest(sweep_dir)
    if manifest.spec_hash != p.spec_hash:
        raise UsageError(f"sweep {p.name!r} already exists with a different spec ({sweep_dir}); "
                         f"choose another --name")
    if manifest.state == "not_submitted":
        shutil.rmtree(sweep_dir)
        return None
    return manifest


def create(p: Plan) -> storage.ManifestBook:
    """Create the sweep dir (snapshot, storage dirs, manifest in state 'submitting')."""
    from . import experiment

    sweep_dir = p.sweep_dir
    storage.make_dirs(sweep_dir.parent)
    try:
        sweep_dir.mkdir()
        os.chmod(sweep_dir, storage.dir_mode())
    except FileExistsError:
        raise UsageError(f"sweep {p.name!r} is being created by another process; choose another --name") from None
    assert p.staging is not None and p.layout is not None, "plan() stages the snapshot"
    try:
        code = sweep_dir / storage.CODE
        try:
            shutil.move(str(p.staging / storage.CODE), str(code))
            shutil.move(str(snapshot.hash_file(p.staging / storage.CODE)), str(snapshot.hash_file(code)))
        except shutil.Error as exc:  # copytree gathers the errors of every file
            first = exc.args[0][0][2] if exc.args and exc.args[0] else str(exc)
            raise StorageError(f"cannot write the code snapshot to {str(code)!r}: {first}; free space or "
                               f"choose another --root") from None
        dirs = storage.allocate_dirs(p.root / p.experiment_name, len(p.points), owner=str(sweep_dir))
    except BaseException:
        storage.release_claims(p.root / p.experiment_name, str(sweep_dir))
        _remove_sweep_dir(sweep_dir)
        raise
    rng = random.SystemRandom()
    sweep_file = Path(p.request.sweep_file) if p.request.sweep_file else None
    manifest = Manifest(
        name=p.name,
        created=now(),
        state="submitting",
        executor=p.executor,
        spec_hash=p.spec_hash,
        command=tuple(p.request.argv),
        experiment=ExperimentInfo(name=p.experiment_name, file=str(p.experiment_file),
                                  snapshot=str(code / p.layout.experiment), module=p.module_name,
                                  source_root=str(p.layout.root), workdir=str(code / p.layout.workdir)),
        code={"sha256": p.code_hash, "bytes": p.code_bytes},
        spec={"with": list(p.request.with_tokens), "file": str(sweep_file.resolve()) if sweep_file else None,
              "file_text": sweep_file.read_text() if sweep_file else None},
        root=str(p.root),
        storage_key=p.storage_key,
        note=p.request.note,
        notify=p.request.notify,
        resources=p.request.resources,
        varied=tuple(p.points[0].varied) if p.points else (),
        versions=versions(),
        git=experiment.git_state(p.experiment_file),
        # one seed per point: the experiment's own (config scope, named config, command line)
        # when it sets one; else ptslurm fixes one at submission, so that every attempt
        # (requeue, resubmit) builds the same config and resuming is exact
        points=tuple(PointEntry(index=pt.index, updates=dict(pt.updates), named_configs=tuple(pt.named_configs),
                                varied=tuple(pt.varied), storage_dir=str(d),
                                seed=own if own is not None else rng.randrange(2**31 - 1),
                                seed_source="experiment" if own is not None else "ptslurm")
                     for pt, d, own in zip(p.points, dirs, p.seeds)),
    )
    try:
        storage.write_manifest(sweep_dir, manifest)
    except BaseException:  # a full disk, a kill: nothing half-made stays behind
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
        _remove_sweep_dir(sweep_dir)
        raise
    return storage.ManifestBook(sweep_dir, manifest)


def _remove_sweep_dir(sweep_dir: Path) -> None:
    """Undo a sweep dir (and the ``sweeps`` folder when it held only this one)."""
    shutil.rmtree(sweep_dir, ignore_errors=True)
    try:
        sweep_dir.parent.rmdir()
    except OSError:
        pass


def _undo(book: storage.ManifestBook, error: str) -> None:
    """After a refused submission: no storage dir may claim to be queued."""
    for entry in book.manifest.points:
        try:
            os.unlink(os.path.join(entry.storage_dir, storage.CLAIM))
            os.rmdir(entry.storage_dir)  # only when nothing else is in it
        except OSError:
            pass
    book.save(book.manifest.with_jobs({e.index: None for e in book.manifest.points})
              .replace(state="not_submitted", error=error))


def _args_for(sweep_dir: Path) -> tp.Callable[[int], tp.Tuple[str, int]]:
    """What each array task's ``job.run_point`` is called with."""
    return lambda i: (str(sweep_dir), i)


def submit(book: storage.ManifestBook, backend: executors.SlurmBackend) -> int:
    """Queue every point of the manifest that has no job yet on SLURM, recording job ids
    array by array; an interrupted submission's queued jobs are adopted first (``adopt``).
    Returns how many points were adopted."""
    sweep_dir = book.sweep_dir
    adopted = adopt(book, backend)
    todo = [e.index for e in book.manifest.points if not e.job_id]
    limit = commands.submit_limit(backend.resources.qos)
    if limit is not None and limit - (commands.queued_count() or 0) < len(todo):
        # more points than the queue takes: submit what fits now, the rest in waves
        book.update(state="submitted", waves={"limit": limit}, sbatch_calls=backend.sbatch_calls)
        _wave(book, backend, limit)
        return adopted
    try:
        backend.submit(todo, _args_for(sweep_dir), book.set_jobs, marker=submit_marker(sweep_dir))
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)) or adopted:
            raise  # the same command again finishes the submission
        commands.cancel(e.job_id for e in book.manifest.points if e.job_id)
        _undo(book, str(exc))
        raise
    book.update(state="submitted", sbatch_calls=backend.sbatch_calls)
    return adopted




def next_wave(sweep_dir: tp.Union[str, Path], own_job: tp.Optional[str] = None) -> int:
    """Submit the waiting points of a sweep that met the cluster's submit limit, as many as
    fit now, and, while points still wait, a small wave job that runs this again once they
    all ended (``--dependency=afterany``; it holds one queue slot). No daemon: the wave job,
    ``status`` and ``--wait`` call it (``own_job``: the wave job calling). Returns how many
    points were submitted."""
    sweep_dir = Path(sweep_dir)
    with storage.manifest_lock(sweep_dir):
        manifest = storage.read_manifest(sweep_dir)
        waves = manifest.waves
        if not waves or manifest.state != "submitted":
            return 0
        if waves.get("job") and own_job != waves["job"] and waves["job"] in commands.queue_states([waves["job"]]):
            return 0  # a wave job is queued: it will do this
        return _wave(storage.ManifestBook(sweep_dir, manifest), backend_of(sweep_dir, manifest), int(waves["limit"]))


def _wave(book: storage.ManifestBook, backend: executors.SlurmBackend, limit: int) -> int:
    # a wave killed between its sbatch and recording the job ids left them queued: adopt them
    found = commands.marked_jobs(submit_marker(book.sweep_dir))
    unrecorded = {e.index: found[e.index] for e in book.manifest.points if not e.job_id and e.index in found}
    if unrecorded:
        backend.ensure_pickles(unrecorded, _args_for(book.sweep_dir))
        book.set_jobs(unrecorded)
    waiting = [e.index for e in book.manifest.points if not e.job_id and not read_intent(e.storage_dir).cancelled]
    if not waiting:
        book.update(waves=None)
        return 0
    queued = commands.queued_count()
    if queued is None:
        return 0
    free = limit - queued
    chosen = waiting if len(waiting) <= free else waiting[:max(free - 1, 0)]  # a slot for the wave job
    if not chosen:
        return 0
    marker = submit_marker(book.sweep_dir)
    jobs = backend.submit(chosen, _args_for(book.sweep_dir), book.set_jobs, marker=marker)
    if len(chosen) < len(waiting):
        arrays = sorted({job.split("_")[0] for job in jobs.values()})
        book.update(waves={"limit": limit, "job": backend.submit_wave_job(arrays, marker)})
    else:
        book.update(waves=None)
    return len(chosen)


def submit_marker(sweep_dir: Path) -> str:
    """What ptslurm puts in the comment of every job it submits for ``sweep_dir``, to find
    jobs that a killed submission queued but never recorded."""
    return "ptslurm:" + hashlib.sha256(str(Path(sweep_dir).resolve()).encode()).hexdigest()[:16]


def adopt(book: storage.ManifestBook, backend: executors.SlurmBackend) -> int:
    """Record the jobs of an interrupted submission instead of queueing them again: those
    still in the queue (found by their comment) and those that already ran (their status
    files name them). Returns how many points were adopted."""
    manifest = book.manifest
    missing = [e for e in manifest.points if not e.job_id]
    if not missing or manifest.state != "submitting":
        return 0
    found = commands.marked_jobs(submit_marker(book.sweep_dir))
    adopted: tp.Dict[int, str] = {}
    for entry in missing:
        ran = next((a.job_id for a in records.read_status(entry.path).attempts if a.job_id), None)
        job = found.get(entry.index) or (ran if ran and not ran.startswith("local") else None)
        if job:
            adopted[entry.index] = job
    if adopted:
        backend.ensure_pickles(adopted, _args_for(book.sweep_dir))
        book.set_jobs(adopted)
    return len(adopted)


def run_local(book: storage.ManifestBook, jobs: int, indices: tp.Sequence[int],
              on_change: tp.Callable[[tp.List[results.PointRow]], None] = lambda rows: None) -> tp.List[results.PointRow]:
    """Run points on this machine, ``jobs`` at a time, until they end."""
    workdir = book.manifest.experiment.workdir
    backend = executors.LocalBackend(book.sweep_dir, jobs, workdir=Path(workdir) if workdir else None)
    book.save(book.manifest.with_jobs({i: "local" for i in indices})
              .replace(state="submitted", runner=executors.runner_record()))
    backend.run(list(indices), on_change=lambda done: on_change(results.point_states(book.manifest)))
    return results.point_states(book.manifest)


def top_up(sweep_dir: Path, manifest: Manifest, rows: tp.Sequence[results.PointRow]) -> bool:
    """The one write step of ``status`` and ``--wait``, called explicitly (reading a sweep,
    ``collect`` and ``list`` included, never submits): when points of a sweep in waves
    wait and no wave job is queued to submit them (it was killed, or its tasks were), submit
    the next wave now. Only for a sweep whose control files the caller owns. True when it
    submitted something."""
    if manifest.executor != "slurm" or not manifest.waves or not any(r.state == State.WAITING for r in rows):
        return False
    if storage.foreign_owner(sweep_dir) is not None:
        return False
    try:
        return bool(next_wave(sweep_dir))
    except Exception:  # noqa: BLE001 - the next status or --wait tries again
        return False


def check_finished(rows: tp.Sequence[results.PointRow], sweep_dir: Path) -> None:
    """Raise PointsFailed (naming the first such point and the commands that help) unless
    every point completed."""
    bad = [r for r in rows if r.state != State.COMPLETED]
    if bad:
        first = bad[0]
        detail = f": {first.error}" if first.error else ""
        raise PointsFailed(f"{len(bad)} of {len(rows)} points did not complete "
                           f"(point {first.index} {first.state}{detail}); "
                           f"see `ptslurm logs {shlex.quote(str(sweep_dir))} {first.index}`, then "
                           f"`ptslurm resubmit {shlex.quote(str(sweep_dir))} --failed`")


# ----------------------------------------------------------------------------- one call


class Events(tp.Protocol):
    """What ``run`` tells while it works; the CLI prints it (``cli.Printer``)."""

    def message(self, text: str) -> None:
        """Something the user should know (what was queued, where, how)."""

    def warning(self, text: str) -> None:
        """Something that may not be what the user meant."""

    def progress(self, rows: tp.Sequence[results.PointRow], final: bool = False) -> None:
        """Where the points stand (local runs and --wait)."""


class Quiet:
    """Events that nobody hears: a library caller's default."""

    def message(self, text: str) -> None:
        pass

    def warning(self, text: str) -> None:
        pass

    def progress(self, rows: tp.Sequence[results.PointRow], final: bool = False) -> None:
        pass


@dataclasses.dataclass
class Outcome:
    """What ``run`` did: the sweep (None for a dry run), how many sbatch calls it made, the
    point rows when the points ran here or were waited for."""

    plan: Plan
    sweep_dir: tp.Optional[Path] = None
    manifest: tp.Optional[Manifest] = None
    sbatch_calls: int = 0
    rows: tp.Optional[tp.List[results.PointRow]] = None
    already: bool = False
    timing: tp.Dict[str, float] = dataclasses.field(default_factory=dict)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def run(request: SweepRequest, wait: bool = False, events: tp.Optional[Events] = None) -> Outcome:
    """``ptslurm sweep`` in one call: plan (every check without side effects), then either
    nothing (a dry run), or finish what an interrupted run of the same command left, or
    create the sweep and submit it to SLURM or run it here; with ``wait``, until every point
    ended. Raises a PtslurmError on bad input; the caller decides what a failed point means
    (``check_finished``)."""
    import time

    events = events or Quiet()
    started = time.perf_counter()
    p = plan(request)
    try:
        outcome = Outcome(plan=p, timing={"preflight": time.perf_counter() - started})
        for warning in p.warnings:
            events.warning(warning)
        if request.dry_run:
            return outcome
        _execute(p, outcome, events)
    finally:
        p.discard()
    if wait and outcome.rows is None and outcome.sweep_dir is not None:
        outcome.rows = wait_for(outcome.sweep_dir, events)
        outcome.manifest = storage.read_manifest(outcome.sweep_dir)
    return outcome


def _execute(p: Plan, outcome: Outcome, events: Events) -> None:
    import time

    outcome.sweep_dir = p.sweep_dir
    manifest = existing(p)
    if manifest is not None:
        storage.require_own(p.sweep_dir, "continues")
    if manifest is not None and manifest.state == "submitting" and manifest.executor == "slurm":
        # an interrupted submission (killed, ssh dropped): finish it, exactly once
        book = storage.ManifestBook(p.sweep_dir, manifest)
        backend = slurm_backend(p)
        before = sum(1 for e in manifest.points if e.job_id)
        adopted = submit(book, backend)
        queued = len(manifest.points) - before - adopted
        events.message(f"finished the interrupted submission of {p.name!r}: {before} point(s) were recorded, "
                       f"{adopted} adopted from the queue, {queued} queued now")
        outcome.manifest, outcome.sbatch_calls = book.manifest, backend.sbatch_calls
        return
    if manifest is not None and manifest.executor == "local":
        rows = sweep_states(p.sweep_dir, manifest)
        runner = manifest.runner or {}
        runner_gone = not results.alive(runner.get("host"), runner.get("pid"))
        left = [r.index for r in rows if runner_gone and r.state in (State.LOST, State.INTERRUPTED)]
        if left:
            events.message(f"running the {_plural(len(left), 'point')} an interrupted run left (resuming from "
                           f"their checkpoints)")
            resubmit(p.sweep_dir, left)
            outcome.manifest = storage.read_manifest(p.sweep_dir)
            outcome.rows = sweep_states(p.sweep_dir, outcome.manifest)
            return
    if manifest is not None:
        note = code_change_note(manifest, p.sweep_dir)
        events.message(f"sweep {p.name!r} already exists with this spec: nothing new to submit"
                       + (f"; {note}: its points ran the submitted code. To run the new code: `ptslurm resubmit "
                          f"{p.name} --failed --refresh-code` (or --points ...), or a new sweep with --name"
                          if note else ""))
        outcome.manifest, outcome.already = manifest, True
        return
    n = len(p.points)
    if p.executor == "slurm":
        backend = slurm_backend(p)
        note = time_limit_note(p.request.resources)
        backend.validate(n)
        t_create = time.perf_counter()
        book = create(p)
        submit(book, backend)
        outcome.timing["submit"] = time.perf_counter() - t_create
        manifest = book.manifest
        arrays = sorted({e.job_id.split("_")[0] for e in manifest.points if e.job_id})
        now = sum(1 for e in manifest.points if e.job_id)
        events.message(f"queued {_plural(now, 'point')} of {p.experiment_name!r} as {len(arrays)} job "
                       f"array{'s' if len(arrays) != 1 else ''} ({', '.join(arrays)})")
        if manifest.waves:
            events.message(f"the cluster lets you queue {manifest.waves['limit']} jobs: the other {n - now} points "
                           f"wait and are submitted in waves as these end (job "
                           f"{manifest.waves.get('job') or '-'} submits the next)")
        if note:
            events.message(note)
        outcome.manifest, outcome.sbatch_calls = manifest, backend.sbatch_calls
        return
    book = create(p)
    events.message(f"no SLURM here: running {_plural(n, 'point')} of {p.experiment_name!r} locally, "
                   f"{p.request.jobs} at a time" if p.request.executor == "auto" else
                   f"running {_plural(n, 'point')} locally, {p.request.jobs} at a time")
    outcome.rows = run_local(book, p.request.jobs, [pt.index for pt in p.points], on_change=events.progress)
    events.progress(outcome.rows, final=True)
    outcome.manifest = book.manifest


def wait_for(sweep_dir: Path, events: tp.Optional[Events] = None) -> tp.List[results.PointRow]:
    """Poll until every point of the sweep ended (``$PTSLURM_POLL_S`` seconds apart, 2 by
    default); the rows at the end."""
    import time

    events = events or Quiet()
    while True:
        manifest = storage.read_manifest(sweep_dir)  # waves add job ids as they go
        rows = sweep_states(sweep_dir, manifest)
        if top_up(sweep_dir, manifest, rows):
            continue
        done = results.ended(rows)
        events.progress(rows, final=done)
        if done:
            return rows
        time.sleep(float(os.environ.get("PTSLURM_POLL_S", "2")))


# ----------------------------------------------------------------------------- life cycle


def select_points(manifest: Manifest, spec: tp.Optional[str]) -> tp.List[int]:
    """Indices from ``0,2,5-7`` (all points when ``spec`` is None)."""
    n = len(manifest.points)
    if spec is None:
        return list(range(n))
    out: tp.List[int] = []
    for part in spec.split(","):
        part = part.strip()
        try:
            lo, _, hi = part.partition("-")
            first, last = int(lo), int(hi) if hi else int(lo)
        except ValueError:
            raise UsageError(f"bad point list {spec!r}: use indices and ranges like 0,2,5-7") from None
        for i in range(first, last + 1):
            manifest.point(i)  # out of range: UsageError
            out.append(i)
    return sorted(set(out))


def write_intent(storage_dir: tp.Union[str, Path], **fields: tp.Any) -> None:
    """Record what the command line asks of a point in its own file; the job's status file
    is never rewritten here (the job is its only writer)."""
    if not Path(storage_dir).is_dir():
        return
    storage.require_own_dir(Path(storage_dir))
    intent = read_intent(storage_dir).replace(
        time=now(), **fields)
    storage.atomic_write_json(Path(storage_dir) / storage.INTENT, intent.to_json())


CANCEL_GRACE_S = 15.0  # a local point gets this long to checkpoint after SIGTERM, then SIGKILL


def cancel(sweep_dir: Path, indices: tp.Sequence[int]) -> tp.List[int]:
    """Stop the chosen points that have not ended and mark them cancelled: the intent first
    (a job that starts or stops later reads it and never requeues), then one scancel for the
    SLURM jobs, or SIGTERM to a local point's process group (SIGKILL after a grace period).
    Returns the indices cancelled."""
    storage.require_own(sweep_dir, "cancels")
    with storage.manifest_lock(sweep_dir):
        return _cancel(sweep_dir, indices)


def _cancel(sweep_dir: Path, indices: tp.Sequence[int]) -> tp.List[int]:
    manifest = storage.read_manifest(sweep_dir)
    rows = sweep_states(sweep_dir, manifest)
    on_slurm = manifest.executor == "slurm"
    queued: tp.Dict[str, str] = {}
    if on_slurm:
        try:
            queued = commands.queue_states([e.job_id for e in manifest.points if e.job_id])
        except SubmissionError:
            queued = {}
    # a point cancelled before whose job still runs (scancel failed, or the command was
    # killed between the intent and scancel) is cancelled again
    chosen = [i for i in indices if rows[i].state not in TERMINAL
              or (rows[i].state == State.CANCELLED and manifest.points[i].job_id in queued)]
    for i in chosen:
        entry = manifest.points[i]
        write_intent(entry.storage_dir, cancelled=True, submission=read_intent(entry.storage_dir).submission)
    jobs = [manifest.points[i].job_id for i in chosen if manifest.points[i].job_id]
    wave_job = (manifest.waves or {}).get("job")
    if wave_job and len(chosen) == sum(r.state not in TERMINAL for r in rows):
        jobs.append(wave_job)  # every point still going is cancelled: so is the next wave
    if on_slurm and jobs:
        try:
            commands.cancel(j for j in jobs if j)
        except SubmissionError as exc:
            raise SubmissionError(f"{exc}: the points are marked cancelled (a job that starts or stops "
                                  f"will not requeue), but running jobs may go on; run the same "
                                  f"`ptslurm cancel` again when the controller answers") from None
    elif manifest.executor == "local":
        latest = [rows[i].latest for i in chosen]
        executors.stop_local([a for a in latest if a is not None and a.state == State.RUNNING], CANCEL_GRACE_S)
    return chosen


def resubmit(sweep_dir: Path, indices: tp.Sequence[int], refresh_code: bool = False,
             keep_code: bool = False) -> tp.Dict[int, str]:
    """Queue the chosen points again, each into its own storage dir (resuming from its
    checkpoints). Points still pending or running are refused. When the experiment's code
    changed since the newest snapshot, the caller must choose: ``refresh_code`` (the points
    run a new snapshot) or ``keep_code`` (they run the code they ran before)."""
    storage.require_own(sweep_dir, "resubmits")
    with storage.manifest_lock(sweep_dir):
        book, local = _resubmit(sweep_dir, indices, refresh_code, keep_code)
        if not local:
            return backend_of(sweep_dir, book.manifest).submit(list(indices), _args_for(sweep_dir), book.set_jobs,
                                                               marker=submit_marker(sweep_dir))
    run_local(book, 1, list(indices))
    return {i: "local" for i in indices}


def _running_elsewhere(entry: PointEntry) -> tp.Optional[str]:
    """The job whose live attempt holds the point's lease (whatever the manifest records), or None."""
    from . import lease as leases

    try:
        path = entry.path / leases.LEASE
        if os.stat(path).st_uid != os.geteuid():
            return None  # another user's file is no lease (the job takes it over)
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if leases.stale(holder, "", leases._scheduler_running):
        return None
    return str(holder.get("job_id") or "?")


def _resubmit(sweep_dir: Path, indices: tp.Sequence[int], refresh_code: bool,
              keep_code: bool) -> tp.Tuple[storage.ManifestBook, bool]:
    manifest = storage.read_manifest(sweep_dir)
    rows = sweep_states(sweep_dir, manifest)
    busy = [i for i in indices if rows[i].state in BUSY]
    if busy:
        raise UsageError(f"points {', '.join(map(str, busy))} are still queued or running; "
                         f"cancel them first (`ptslurm cancel --points ...`)")
    running = {i: job for i in indices if (job := _running_elsewhere(manifest.points[i]))}
    if running:
        raise UsageError(f"point(s) {', '.join(f'{i} (job {j})' for i, j in running.items())} still run an "
                         f"attempt; cancel first (`ptslurm cancel --points ...`) or wait for it to end")
    if refresh_code:
        manifest = refresh_snapshot(sweep_dir, manifest, indices)
    elif not keep_code:
        note = code_change_note(manifest, sweep_dir, indices)
        if note:
            raise UsageError(f"{note}: choose --refresh-code (the points run the new code) or --keep-code "
                             f"(they run the code they ran before)")
    for i in indices:
        entry = manifest.points[i]
        entry.path.mkdir(parents=True, exist_ok=True)
        previous = max(read_intent(entry.path).submission, records.read_status(entry.path).submission)
        write_intent(entry.storage_dir, cancelled=False, submission=previous + 1)
    manifest = manifest.with_points(
        lambda e: e.replace(job_history=e.job_history + ((e.job_id,) if e.job_id else ())), indices)
    book = storage.ManifestBook(sweep_dir, manifest)
    if manifest.executor != "slurm":
        return book, True
    book.save(manifest)
    return book, False


def refresh_snapshot(sweep_dir: Path, manifest: Manifest, indices: tp.Sequence[int],
                     max_mb: float = snapshot.DEFAULT_MAX_MB) -> Manifest:
    """Take the experiment's current code for the points ``indices``: a new snapshot
    (``code-<n>/``, checked by the pre-flight with those points' configs) beside the earlier
    ones, which stay for the points that ran them. Returns the manifest that records it
    (and which version each point runs)."""
    info = manifest.experiment
    chosen = [manifest.points[i] for i in indices]
    points = [e.to_point() for e in chosen]
    keys = (manifest.storage_key,) if manifest.storage_key else ()
    dirs = [e.path for e in chosen]
    extra = {}
    for entry in chosen:  # the config files named after `with`, as submitted
        old_workdir = manifest.code_of(entry.code_version).workdir
        for name in entry.named_configs:
            if name.startswith(snapshot.WITH_FILES + "/") and old_workdir:
                extra[name] = str(Path(old_workdir) / name)
    lay, staging, code_hash, code_bytes, _checked, ex = stage(
        Path(info.file), Path(manifest.root), points, keys, lambda _name: dirs, [], max_mb, extra)
    try:
        if ex.path != info.name:
            raise UsageError(f"the experiment is now named {ex.path!r}, not {info.name!r}: its points' storage "
                             f"dirs would not match; start a new sweep")
        same = next((v for v in range(manifest.latest_code, 0, -1) if manifest.code_of(v).sha256 == code_hash), None)
        if same is not None:  # the code is the same as a snapshot the sweep already has
            version = same
        else:
            version = manifest.latest_code + 1
            name = f"{storage.CODE}-{version}"
            code = sweep_dir / name
            shutil.rmtree(code, ignore_errors=True)  # a refresh killed before its manifest
            shutil.move(str(staging / storage.CODE), str(code))
            shutil.move(str(snapshot.hash_file(staging / storage.CODE)), str(snapshot.hash_file(code)))
            versions = dict(manifest.code_versions)
            versions[str(version)] = {"dir": name, "sha256": code_hash, "bytes": code_bytes,
                                      "snapshot": str(code / lay.experiment), "workdir": str(code / lay.workdir),
                                      "source_root": str(lay.root), "taken": now()}
            manifest = manifest.replace(code_versions=versions)
        manifest = manifest.with_points(lambda e: e.replace(code_version=version), indices)
        storage.write_manifest(sweep_dir, manifest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def changed_code(manifest: Manifest, sweep_dir: Path, version: tp.Optional[int] = None) -> tp.List[str]:
    """Files of the sweep's snapshot ``version`` (default: the newest) that differ from the
    live tree it was taken from."""
    code = manifest.code_of(manifest.latest_code if version is None else version)
    if not code.source_root:
        return []
    return snapshot.differs(sweep_dir / code.dir, Path(code.source_root))


def code_change_note(manifest: Manifest, sweep_dir: Path,
                     indices: tp.Optional[tp.Sequence[int]] = None) -> tp.Optional[str]:
    """``a.py and 2 more changed since the sweep's code snapshot v1 (…)``: the live code
    differs from the snapshot the points ``indices`` run (default: the newest), or None."""
    versions = sorted({manifest.points[i].code_version for i in indices}) if indices else [manifest.latest_code]
    for version in versions:
        changed = changed_code(manifest, sweep_dir, version)
        if changed:
            more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
            return (f"{', '.join(changed[:3])}{more} changed since the sweep's code snapshot "
                    f"{manifest.code_of(version).label}")
    return None


def run_here(sweep_dir: Path, manifest: Manifest, index: int, pdb: bool = False, refresh_code: bool = False,
             keep_code: bool = False) -> None:
    """Run one attempt of a point in this process, in the foreground (``ptslurm run``).
    Refused while the point is queued or running elsewhere. ``pdb`` enters the debugger
    post mortem where the run fails; the exception then propagates."""
    from .job import run_point

    storage.require_own(sweep_dir, "runs")
    entry = manifest.point(index)
    row = sweep_states(sweep_dir, manifest)[index]
    busy = BUSY if manifest.executor == "slurm" else (State.RUNNING,)
    if row.state in busy:
        raise UsageError(f"point {index} is {row.state} (job {entry.job_id}); two runs must not share "
                         f"its storage dir: `ptslurm cancel {shlex.quote(str(sweep_dir))} --points {index}` first")
    if refresh_code:
        refresh_snapshot(sweep_dir, manifest, [index])
    elif not keep_code:
        note = code_change_note(manifest, sweep_dir, [index])
        if note:
            raise UsageError(f"{note}: choose --refresh-code (run the new code) or --keep-code (run the point's "
                             f"snapshot {manifest.code_of(entry.code_version).label})")
    # a run in the foreground is asked for: a submission of its own (a completed point runs again)
    entry.path.mkdir(parents=True, exist_ok=True)
    previous = max(read_intent(entry.path).submission, records.read_status(entry.path).submission)
    write_intent(entry.storage_dir, cancelled=False, submission=previous + 1)
    try:
        run_point(sweep_dir, index)
    except BaseException as exc:
        if pdb and not isinstance(exc, KeyboardInterrupt):
            import pdb as debugger
            import traceback

            traceback.print_exc()
            debugger.post_mortem(exc.__traceback__)
        raise


def point_config(manifest: Manifest, index: int) -> tp.Tuple[dict, str]:
    """A point's config and where it came from: the config.json its latest attempt wrote,
    else the manifest's updates, named configs and seed."""
    entry = manifest.point(index)
    path = entry.path / storage.CONFIG
    config = records.read_json(path)
    if isinstance(config, dict):
        return config, f"resolved config of its latest attempt ({path})"
    return ({"updates": entry.updates, "named_configs": list(entry.named_configs), "seed": entry.seed},
            "not run yet: the updates, named configs and seed it will run with")


def log_paths(sweep_dir: Path, manifest: Manifest, index: int, attempt: tp.Optional[int],
              live: bool = False, rank: int = 0) -> tp.Tuple[Path, tp.Optional[Attempt], tp.Optional[str]]:
    """The captured output of attempt ``attempt`` (1-based; default the latest) of a point:
    sacred's cout.txt, else the scheduler's log. ``live`` picks the scheduler's (or the local)
    log, written as it happens (sacred updates cout.txt only at heartbeats).
    ``rank``: a rank of a distributed point (only rank 0 has a sacred run; the others'
    output is in the scheduler's log of their task).
    Returns ``(path, the attempt, a note on where the output comes from)``."""
    entry = manifest.point(index)
    if not 0 <= rank < manifest.resources.world_size:
        raise UsageError(f"--rank {rank}: point {index} has ranks 0-{manifest.resources.world_size - 1}")
    attempts = records.read_status(entry.path).attempts
    if attempt is not None and not 1 <= attempt <= max(len(attempts), 1):
        raise UsageError(f"point {index} has {len(attempts)} attempt(s); --attempt must be 1-{max(len(attempts), 1)}")
    chosen = attempts[(attempt or len(attempts)) - 1] if attempts else None
    note = None
    if chosen is not None and chosen.sacred_id and not live and rank == 0:
        path = entry.path / storage.SACRED / str(chosen.sacred_id) / "cout.txt"
        try:
            if path.stat().st_size > 0:
                return path, chosen, None
        except OSError:
            pass
        note = (f"(sacred captured no output in {path}; showing the "
                f"{'scheduler' if manifest.executor == 'slurm' else 'local'} log)")
    job = (chosen.job_id if chosen is not None else None) or entry.job_id
    if manifest.executor == "slurm" and job:
        return backend_of(sweep_dir, manifest).log_path(job, rank), chosen, note
    return sweep_dir / storage.LOCAL_LOGS / f"{index}.log", chosen, note
