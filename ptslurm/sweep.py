"""``ptslurm sweep``: words -> points -> pre-flight -> storage dirs + manifest -> submission.

Nothing is created before every check that can run without side effects has passed
(spec, experiment, every point's config, root writable, ``sbatch --test-only``). If the
scheduler still refuses, already queued arrays are cancelled, the empty storage dirs are
removed and the manifest says ``not_submitted`` with sbatch's message.
"""
import dataclasses
import datetime
import hashlib
import json
import os
import platform
import random
import shlex
import shutil
import typing as tp
from pathlib import Path

from . import executor as executors
from . import grid, results, storage, sweepfile
from .errors import PointsFailed, SubmissionError, UsageError
from .spec import SCHEMA_VERSION, Point, Resources

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
    local_files: tp.List[Path] = dataclasses.field(default_factory=list)

    @property
    def sweep_dir(self) -> Path:
        return storage.sweeps_dir(self.root) / self.name


def expand_points(request: SweepRequest) -> tp.Tuple[tp.List[Point], tp.List[str]]:
    """The sweep's points and the keys given as flat lists on the command line."""
    cli = grid.parse_with(request.with_tokens)
    base = sweepfile.load(request.sweep_file) if request.sweep_file else grid.Block()
    points = grid.expand(base, cli)
    flat = [a.keys[0] for a in cli.axes if a.flat_list]
    return points, flat


def spec_hash(experiment_file: Path, points: tp.Sequence[Point], resources: Resources,
              storage_key: tp.Optional[str]) -> str:
    blob = json.dumps({"experiment": str(experiment_file), "points": [p.identity() for p in points],
                       "resources": resources.to_json(), "storage_key": storage_key},
                      sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def choose_executor(requested: str) -> str:
    if requested not in ("auto", "slurm", "local"):
        raise UsageError(f"unknown executor {requested!r}; use slurm, local or auto")
    if requested == "auto":
        return "slurm" if executors.slurm_available() else "local"
    if requested == "slurm" and not executors.slurm_available():
        raise UsageError("--executor slurm: no SLURM controller answers `scontrol ping`; "
                         "run on a login node or use --executor local")
    return requested


def plan(request: SweepRequest) -> Plan:
    """All checks without side effects. Raises a UsageError subclass on bad input."""
    from . import experiment

    points, flat_axes = expand_points(request)
    root = storage.resolve_root(request.root)
    storage.check_root_writable(root)
    path = Path(request.experiment)
    _, ex = experiment.load(path, light=True)
    module_name = path.stem
    exp_name = ex.path
    if not exp_name or os.sep in exp_name or exp_name in (".", "..", storage.SWEEPS):
        raise UsageError(f"experiment name {exp_name!r} cannot be a folder name; "
                         f"use Experiment('my-experiment') with a plain name")
    predicted = storage.predict_dirs(root / exp_name, len(points))
    keys = (request.storage_key,) if request.storage_key else FALLBACK_STORAGE_KEYS
    default, _configs, injected = experiment.preflight(ex, points, keys, [str(p) for p in predicted])
    warnings = experiment.list_defaults(default, points, flat_axes)
    if request.storage_key and not injected:
        warnings.append(f"the experiment has no config key {request.storage_key!r}: the storage dir "
                        f"is not injected; the code finds it with ptslurm.get_storage_dir() "
                        f"(or --storage-key KEY names another key)")
    chosen = choose_executor(request.executor)
    digest = spec_hash(path.resolve(), points, request.resources if chosen == "slurm" else Resources(), injected)
    name = request.name or f"{exp_name}-{digest}"
    if not name or "/" in name or name.startswith("."):
        raise UsageError(f"bad sweep name {name!r}: use letters, digits, '-', '_' and '.'")
    return Plan(request=request, points=points, root=root, experiment_name=exp_name,
                module_name=module_name, experiment_file=path.resolve(), storage_key=injected,
                predicted_dirs=predicted, warnings=warnings, executor=chosen, name=name,
                spec_hash=digest, ex=ex, local_files=experiment.local_modules(path.parent))


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
    return executors.SlurmBackend(p.sweep_dir, p.request.resources, job_name=p.name)


def existing(p: Plan) -> tp.Optional[dict]:
    """The manifest of a sweep of the same name, when one was submitted with the same spec.
    Raises UsageError when the name is taken by a different spec."""
    sweep_dir = p.sweep_dir
    if not sweep_dir.exists():
        return None
    manifest = storage.read_manifest(sweep_dir)
    if manifest.get("spec_hash") != p.spec_hash:
        raise UsageError(f"sweep {p.name!r} already exists with a different spec ({sweep_dir}); "
                         f"choose another --name")
    if manifest.get("state") == "not_submitted":
        shutil.rmtree(sweep_dir)
        return None
    return manifest


def create(p: Plan) -> tp.Tuple[Path, dict]:
    """Create the sweep dir (snapshot, storage dirs, manifest in state 'submitting')."""
    from . import experiment

    sweep_dir = p.sweep_dir
    sweep_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        sweep_dir.mkdir()
    except FileExistsError:
        raise UsageError(f"sweep {p.name!r} is being created by another process; choose another --name") from None
    try:
        snapshot = storage.snapshot_code(p.experiment_file, p.local_files, sweep_dir / storage.CODE)
        dirs = storage.allocate_dirs(p.root / p.experiment_name, len(p.points))
    except BaseException:
        shutil.rmtree(sweep_dir, ignore_errors=True)
        raise
    rng = random.SystemRandom()
    manifest = {
        "schema": SCHEMA_VERSION,
        "name": p.name,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "state": "submitting",
        "executor": p.executor,
        "spec_hash": p.spec_hash,
        "command": list(p.request.argv),
        "experiment": {"name": p.experiment_name, "file": str(p.experiment_file),
                       "snapshot": str(snapshot), "module": p.module_name},
        "spec": {"with": list(p.request.with_tokens),
                 "file": str(Path(p.request.sweep_file).resolve()) if p.request.sweep_file else None,
                 "file_text": Path(p.request.sweep_file).read_text() if p.request.sweep_file else None},
        "root": str(p.root),
        "storage_key": p.storage_key,
        "resources": p.request.resources.to_json(),
        "varied": list(p.points[0].varied) if p.points else [],
        "versions": versions(),
        "git": experiment.git_state(p.experiment_file),
        # one seed per point, fixed at submission: every attempt (requeue, resubmit) of a point
        # builds the same config, so resuming is exact; a seed in the updates wins
        "points": [dict(pt.to_json(), storage_dir=str(d), job_id=None,
                        seed=pt.updates.get("seed", rng.randrange(2**31 - 1)))
                   for pt, d in zip(p.points, dirs)],
    }
    storage.write_manifest(sweep_dir, manifest)
    return sweep_dir, manifest


def _undo(sweep_dir: Path, manifest: dict, error: str) -> None:
    """After a refused submission: no storage dir may claim to be queued."""
    for entry in manifest["points"]:
        try:
            os.rmdir(entry["storage_dir"])
        except OSError:
            pass
        entry["job_id"] = None
    manifest["state"] = "not_submitted"
    manifest["error"] = error
    storage.write_manifest(sweep_dir, manifest)


def submit(p: Plan, sweep_dir: Path, manifest: dict, backend: executors.SlurmBackend) -> None:
    """Queue every point on SLURM; record job ids in the manifest array by array."""
    from .job import run_point


    def on_array(ids: tp.Dict[int, str]) -> None:
        for index, job in ids.items():
            manifest["points"][index]["job_id"] = job
        storage.write_manifest(sweep_dir, manifest)

    try:
        backend.submit([pt.index for pt in p.points], run_point, lambda i: (str(sweep_dir), i), on_array)
    except BaseException as exc:
        backend.cancel(e["job_id"] for e in manifest["points"] if e["job_id"])
        _undo(sweep_dir, manifest, str(exc))
        raise
    manifest["state"] = "submitted"
    manifest["sbatch_calls"] = backend.sbatch_calls
    storage.write_manifest(sweep_dir, manifest)


def run_local(p: Plan, sweep_dir: Path, manifest: dict, on_change=lambda rows: None) -> tp.List[dict]:
    backend = executors.LocalBackend(sweep_dir, p.request.jobs)
    for entry in manifest["points"]:
        entry["job_id"] = "local"
    manifest["state"] = "submitted"
    storage.write_manifest(sweep_dir, manifest)
    backend.run([pt.index for pt in p.points], on_change=lambda done: on_change(results.point_states(manifest)))
    return results.point_states(manifest)


def sweep_states(sweep_dir: Path, manifest: dict) -> tp.List[dict]:
    """Point states from the files, reconciled with one squeue call (and one sacct call
    when some point is neither queued nor finished on disk)."""
    queue, accounting = None, None
    jobs = [e["job_id"] for e in manifest["points"] if e.get("job_id")]
    if manifest.get("executor") == "slurm" and executors.slurm_available():
        try:
            queue = executors.SlurmBackend.queue_states(jobs)
        except (SubmissionError, OSError, executors.subprocess.TimeoutExpired):
            queue = None
    rows = results.point_states(manifest, queue)
    if queue is not None and any(r["state"] == "lost" for r in rows):
        accounting = executors.accounting_states(jobs)
        rows = results.point_states(manifest, queue, accounting)
    return rows


def check_finished(rows: tp.Sequence[dict], sweep_dir: Path) -> None:
    bad = [r for r in rows if r["state"] != "completed"]
    if bad:
        first = bad[0]
        detail = f": {first['error']}" if first.get("error") else ""
        raise PointsFailed(f"{len(bad)} of {len(rows)} points did not complete "
                           f"(point {first['index']} {first['state']}{detail}); "
                           f"see `ptslurm logs {shlex.quote(str(sweep_dir))} {first['index']}`, then "
                           f"`ptslurm resubmit ... --failed`")


# ----------------------------------------------------------------------------- life cycle

RETRYABLE = ("failed", "timeout", "preempted", "lost")


def select_points(manifest: dict, spec: tp.Optional[str]) -> tp.List[int]:
    """Indices from ``0,2,5-7`` (all points when ``spec`` is None)."""
    n = len(manifest["points"])
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
            if not 0 <= i < n:
                raise UsageError(f"point {i} is out of range: sweep {manifest['name']!r} has points 0-{n - 1}")
            out.append(i)
    return sorted(set(out))


def _mark(storage_dir: str, **fields) -> None:
    status = results.read_status(storage_dir)
    status.setdefault("attempts", [])
    status.update(fields)
    if Path(storage_dir).is_dir():
        storage.atomic_write_json(Path(storage_dir) / storage.STATUS, status)


def cancel(sweep_dir: Path, indices: tp.Sequence[int]) -> tp.List[int]:
    """scancel the chosen points that have not finished (one call) and mark them cancelled.
    Returns the indices cancelled."""
    manifest = storage.read_manifest(sweep_dir)
    rows = sweep_states(sweep_dir, manifest)
    chosen = [i for i in indices if rows[i]["state"] not in results.TERMINAL]
    jobs = [manifest["points"][i]["job_id"] for i in chosen if manifest["points"][i]["job_id"]]
    if manifest.get("executor") == "slurm" and jobs:
        executors.SlurmBackend.cancel(jobs)
    for i in chosen:
        _mark(manifest["points"][i]["storage_dir"], state="cancelled", cancelled=True)
    return chosen


def resubmit(sweep_dir: Path, indices: tp.Sequence[int], refresh_code: bool = False) -> tp.Dict[int, str]:
    """Queue the chosen points again, each into its own storage dir (resuming from its
    checkpoints). Points still pending or running are refused."""
    from .job import run_point

    manifest = storage.read_manifest(sweep_dir)
    rows = sweep_states(sweep_dir, manifest)
    busy = [i for i in indices if rows[i]["state"] in ("pending", "running", "requeued")]
    if busy:
        raise UsageError(f"points {', '.join(map(str, busy))} are still queued or running; "
                         f"cancel them first (`ptslurm cancel --points ...`)")
    if refresh_code:
        snapshot = Path(manifest["experiment"]["snapshot"])
        storage.snapshot_code(Path(manifest["experiment"]["file"]), [], snapshot.parent)
    for i in indices:
        entry = manifest["points"][i]
        Path(entry["storage_dir"]).mkdir(parents=True, exist_ok=True)
        previous = results.read_status(entry["storage_dir"]).get("submission", 0)
        _mark(entry["storage_dir"], state="pending", cancelled=False, submission=previous + 1)
        entry.setdefault("job_history", [])
        if entry.get("job_id"):
            entry["job_history"].append(entry["job_id"])
    if manifest.get("executor") != "slurm":
        backend = executors.LocalBackend(sweep_dir)
        backend.run(list(indices))
        storage.write_manifest(sweep_dir, manifest)
        return {i: "local" for i in indices}
    backend = executors.SlurmBackend(sweep_dir, Resources.from_json(manifest["resources"]), manifest["name"])

    def on_array(ids: tp.Dict[int, str]) -> None:
        for index, job in ids.items():
            manifest["points"][index]["job_id"] = job
        storage.write_manifest(sweep_dir, manifest)

    return backend.submit(list(indices), run_point, lambda i: (str(sweep_dir), i), on_array)


def log_paths(sweep_dir: Path, manifest: dict, index: int, attempt: tp.Optional[int],
              live: bool = False) -> tp.Tuple[tp.Optional[Path], dict]:
    """The captured output of attempt ``attempt`` (1-based; default the latest) of a point:
    sacred's cout.txt, else the scheduler's log. ``live`` picks the scheduler's (or the local)
    log, written as it happens (sacred updates cout.txt only at heartbeats).
    Returns ``(path, status)``."""
    entry = manifest["points"][index]
    status = results.read_status(entry["storage_dir"])
    attempts = status.get("attempts", [])
    if attempt is not None and not 1 <= attempt <= max(len(attempts), 1):
        raise UsageError(f"point {index} has {len(attempts)} attempt(s); --attempt must be 1-{max(len(attempts), 1)}")
    chosen = attempts[(attempt or len(attempts)) - 1] if attempts else {}
    sid = chosen.get("sacred_id")
    if sid and not live:
        path = Path(entry["storage_dir"]) / storage.SACRED / str(sid) / "cout.txt"
        if path.exists():
            return path, status
    job = chosen.get("job_id") or entry.get("job_id")
    if manifest.get("executor") == "slurm" and job:
        return sweep_dir / storage.SLURM_FOLDER / f"{job}_0_log.out", status
    return sweep_dir / storage.LOCAL_LOGS / f"{index}.log", status
