"""The life-cycle verbs on an existing sweep: cancel, resubmit (with the code it ran or a
refreshed snapshot), run a point here, a point's config and logs. Each changes a sweep under
its manifest lock and only for the user who owns it.
"""
import json
import os
import shlex
import shutil
import typing as tp
from pathlib import Path

from ..schedulers import backends
from .. import records, schedulers
from ..records import locks, manifests, snapshot, storage, writes
from ..errors import SubmissionError, UsageError
from ..plan.make import stage
from ..records import BUSY, COUT, TERMINAL, Attempt, Manifest, PointEntry, PointPaths, State, read_intent
from ..read.state import sweep_states
from ..records.recordkit import now
from ..records.spec import Resources
from .submission import backends_of, run_local, scheduler_of, submit_marker, units

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


def write_intent(sweep_dir: Path, entry: PointEntry, **fields: tp.Any) -> None:
    """Record what the command line asks of a point in its own file; the job's status file
    is never rewritten here (the job is its only writer)."""
    storage_dir = entry.storage_dir
    if not Path(storage_dir).is_dir():
        return
    storage.require_own_dir(Path(storage_dir))
    manifests.touch_point(sweep_dir, entry.index)
    intent = read_intent(storage_dir).replace(
        time=now(), **fields)
    writes.atomic_write_json(PointPaths(Path(storage_dir)).intent, intent.to_json())


def _stop_search(sweep_dir: Path) -> tp.List[str]:
    """``cancel`` stopped every point still going: no decider promotes on until ``ptslurm
    promote`` is asked by hand (``promote.decide``). Returns the decision job to cancel."""
    log = records.read_json(Path(sweep_dir) / records.SEARCH)
    log = log if isinstance(log, dict) else {}
    log["stopped"] = now()
    writes.atomic_write_json(Path(sweep_dir) / records.SEARCH, log)
    return [str(log["job"])] if log.get("job") else []


CANCEL_GRACE_S = 15.0  # a local point gets this long to checkpoint after SIGTERM, then SIGKILL


def cancel(sweep_dir: Path, indices: tp.Sequence[int],
           make: tp.Optional[backends.BackendFactory] = None) -> tp.List[int]:
    """Stop the chosen points that have not ended and mark them cancelled: the intent first
    (a job that starts or stops later reads it and never requeues), then one scancel for the
    SLURM jobs, or SIGTERM to a local point's process group (SIGKILL after a grace period).
    Returns the indices cancelled."""
    manifests.require_own(sweep_dir, "cancels")
    with locks.manifest_lock(sweep_dir):
        return _cancel(sweep_dir, indices, make)


def _cancel(sweep_dir: Path, indices: tp.Sequence[int],
            make: tp.Optional[backends.BackendFactory]) -> tp.List[int]:
    manifest = manifests.read_manifest(sweep_dir)
    scheduler = scheduler_of(sweep_dir, manifest, make)
    rows = sweep_states(sweep_dir, manifest, scheduler)
    try:
        queued = scheduler.queue_states([e.job_id for e in manifest.points if e.job_id])
    except SubmissionError:
        queued = {}
    # a point cancelled before whose job still runs (scancel failed, or the command was
    # killed between the intent and scancel) is cancelled again
    chosen = [i for i in indices if rows[i].state not in TERMINAL
              or (rows[i].state == State.CANCELLED and manifest.points[i].job_id in queued)]
    for i in chosen:
        entry = manifest.points[i]
        write_intent(sweep_dir, entry, cancelled=True, submission=read_intent(entry.storage_dir).submission)
    # a job shared by packed points is cancelled when none of its points goes on; otherwise
    # only the intent: the job's own process stops the cancelled point and its siblings go on
    going_on = {manifest.points[r.index].job_id for r in rows
                if r.index not in chosen and r.state not in TERMINAL and manifest.points[r.index].job_id}
    jobs = sorted({str(manifest.points[i].job_id) for i in chosen if manifest.points[i].job_id} - going_on)
    wave_job = (manifest.waves or {}).get("job")
    everything = len(chosen) == sum(r.state not in TERMINAL for r in rows)
    if wave_job and everything:
        jobs.append(wave_job)  # every point still going is cancelled: so is the next wave
    if manifest.search and everything and chosen:  # and the search: nothing is promoted on
        jobs += _stop_search(sweep_dir)
    running = [a for a in (rows[i].latest for i in chosen) if a is not None and a.state == State.RUNNING]
    try:  # scancel of the jobs; or, for a local sweep, SIGTERM to the running attempts' processes
        scheduler.stop([j for j in jobs if j], running, CANCEL_GRACE_S)
    except SubmissionError as exc:
        raise SubmissionError(f"{exc}: the points are marked cancelled (a job that starts or stops "
                              f"will not requeue), but running jobs may go on; run the same "
                              f"`ptslurm cancel` again when the controller answers") from None
    return chosen


def resubmit(sweep_dir: Path, indices: tp.Sequence[int], refresh_code: bool = False,
             keep_code: bool = False, make: tp.Optional[backends.BackendFactory] = None,
             resources: tp.Optional[tp.Mapping[str, tp.Any]] = None,
             updates: tp.Optional[tp.Mapping[str, tp.Any]] = None) -> tp.Dict[int, str]:
    """Queue the chosen points again, each into its own storage dir (resuming from its
    checkpoints). Points still pending or running are refused. When the experiment's code
    changed since the newest snapshot, the caller must choose: ``refresh_code`` (the points
    run a new snapshot) or ``keep_code`` (they run the code they ran before). ``resources``:
    fields of ``Resources`` that the points ask for from now on instead of their own (a longer
    ``timeout_min``, more ``mem_gb``; ``sbatch_args`` join theirs), checked as a sweep's are.
    ``updates``: the budget key's new value (``promote.extend``)."""
    manifests.require_own(sweep_dir, "resubmits")
    if resources:  # bad values fail before anything is written
        current = manifests.read_manifest(sweep_dir)
        for i in indices:
            _asking(current.resources_of(i), resources)
    _await_cancelled(manifests.read_manifest(sweep_dir), indices)
    with locks.manifest_lock(sweep_dir):
        book, local = _resubmit(sweep_dir, indices, refresh_code, keep_code, make, resources, updates)
        if not local:  # packed again with their group's --points-per-job, among the resubmitted points
            return backends_of(sweep_dir, book.manifest, make).submit(book, units(book.manifest, indices),
                                                                      marker=submit_marker(sweep_dir))
    if updates:
        book.save(book.manifest)  # the new budget, before the points run
    run_local(book, 1, list(indices))
    return {i: "local" for i in indices}


#: how long a resubmit waits for the attempts of points cancelled just before to end (SLURM
#: sends SIGTERM, waits KillWait, 30 s by default, then kills)
CANCEL_WAIT_S = 60.0


def _await_cancelled(manifest: Manifest, indices: tp.Sequence[int]) -> None:
    """Wait (up to ``CANCEL_WAIT_S``) until no point of ``indices`` that the user cancelled
    still has a live attempt holding its storage dir: ``cancel`` then ``resubmit`` at once
    works, and the new attempt is the only writer. Points not cancelled are left to
    ``_resubmit``'s refusal."""
    import time

    deadline = time.monotonic() + CANCEL_WAIT_S
    dying = [manifest.points[i] for i in indices if read_intent(manifest.points[i].path).stops]
    while dying and time.monotonic() < deadline:
        dying = [e for e in dying if _running_elsewhere(e)]
        if dying:
            time.sleep(0.2)


def _running_elsewhere(entry: PointEntry) -> tp.Optional[str]:
    """The job whose live attempt holds the point's lease (whatever the manifest records), or None."""
    from ..job import lease as leases

    try:
        path = PointPaths(entry.path).lease
        if os.stat(path).st_uid != os.geteuid():
            return None  # another user's file is no lease (the job takes it over)
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if leases.stale(holder, "", leases._scheduler_running):
        return None
    return str(holder.get("job_id") or "?")


def describe_request(r: Resources) -> str:
    """``time 60 min, mem 32 GB, gpus 1``: what a point asks the scheduler for."""
    shown = [("partition", r.partition, ""), ("gpus", r.gpus or None, ""), ("cpus", r.cpus, ""),
             ("mem", r.mem_gb, " GB"), ("time", r.timeout_min, " min"), ("signal delay", r.signal_delay_s, " s")]
    return ", ".join(f"{name} {value:g}{unit}" if isinstance(value, float) else f"{name} {value}{unit}"
                     for name, value, unit in shown if value is not None) or "the cluster's defaults"


def _asking(old: Resources, changes: tp.Mapping[str, tp.Any]) -> Resources:
    """``old`` with ``changes`` (a new time limit takes the signal delay's rule along unless
    the old delay was set by hand; sbatch options join), checked as a sweep's resources."""
    import dataclasses

    from ..plan.make import check_resources
    from ..records.spec import default_signal_delay

    changes = dict(changes)
    if "timeout_min" in changes and "signal_delay_s" not in changes \
            and old.signal_delay_s == default_signal_delay(old.timeout_min):
        changes["signal_delay_s"] = None
    if "sbatch_args" in changes:
        changes["sbatch_args"] = {**old.sbatch_args, **changes["sbatch_args"]}
    for key in ("setup", "srun_args"):  # lines join, as they do for a sweep
        if key in changes:
            changes[key] = tuple(getattr(old, key)) + tuple(changes[key])
    return check_resources(dataclasses.replace(old, **changes))[0]


def _with_resources(manifest: Manifest, indices: tp.Sequence[int], changes: tp.Mapping[str, tp.Any]) -> Manifest:
    """The manifest whose points ``indices`` ask for their resources with ``changes``: one
    resource group per distinct request (an existing one when it matches)."""
    groups = list(manifest.groups or (manifest.resources,))
    chosen: tp.Dict[int, int] = {}
    for i in indices:
        asked = _asking(manifest.resources_of(i), changes)
        if asked not in groups:
            groups.append(asked)
        chosen[i] = groups.index(asked)
    return manifest.replace(groups=tuple(groups)).with_points(lambda e: e.replace(group=chosen[e.index]), indices)


def _resubmit(sweep_dir: Path, indices: tp.Sequence[int], refresh_code: bool, keep_code: bool,
              make: tp.Optional[backends.BackendFactory] = None,
              resources: tp.Optional[tp.Mapping[str, tp.Any]] = None,
              updates: tp.Optional[tp.Mapping[str, tp.Any]] = None,
              by: str = "extend") -> tp.Tuple[manifests.ManifestBook, bool]:
    """Mark the points resubmitted (intents, job history; ``updates``: the budget key's new
    value, recorded in each point's budget history) and save the manifest for SLURM;
    (book, whether they run here)."""
    manifest = manifests.read_manifest(sweep_dir)
    scheduler = scheduler_of(sweep_dir, manifest, make)
    rows = sweep_states(sweep_dir, manifest, scheduler)
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
    submissions = {}
    for i in indices:
        entry = manifest.points[i]
        entry.path.mkdir(parents=True, exist_ok=True)
        previous = max(read_intent(entry.path).submission, records.read_status(entry.path).submission)
        submissions[i] = previous + 1
        write_intent(sweep_dir, entry, cancelled=False, submission=previous + 1)
    manifest = manifest.with_points(
        lambda e: extended(e.replace(job_history=e.job_history + ((e.job_id,) if e.job_id else ())), updates or {},
                           submissions[e.index], by), indices)
    if resources:
        manifest = _with_resources(manifest, indices, resources)
    book = manifests.ManifestBook(sweep_dir, manifest)
    if not scheduler.keeps_queue:
        return book, True  # a local sweep's points run here, in this command
    book.save(manifest)
    return book, False


def extended(entry: PointEntry, updates: tp.Mapping[str, tp.Any], submission: int, by: str) -> PointEntry:
    """``entry`` asked to train with ``updates`` (the budget key's value) from submission
    ``submission`` on; its budget history keeps the earlier value first."""
    if not updates:
        return entry
    history = list(entry.budgets)
    for key, value in updates.items():
        if not history:
            history.append({"key": key, "value": current_value(entry, key), "submission": submission - 1,
                            "by": "sweep"})
        history.append({"key": key, "value": value, "submission": submission, "by": by, "time": now()})
    return entry.replace(updates={**entry.updates, **updates}, budgets=tuple(history))


def current_value(entry: PointEntry, key: str) -> tp.Any:
    """The value of the dotted ``key`` the point runs with: its update, else the resolved
    config of its latest attempt (None when neither has it)."""
    if key in entry.updates:
        return entry.updates[key]
    node: tp.Any = records.read_json(PointPaths(entry.path).config)
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


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
    staged = stage(Path(info.file), Path(manifest.root), points, keys, lambda _name: dirs, [], max_mb, extra)
    lay, staging, code_hash, code_bytes = staged.layout, staged.staging, staged.code_hash, staged.code_bytes
    try:
        if staged.experiment_name != info.name:
            raise UsageError(f"the experiment is now named {staged.experiment_name!r}, not {info.name!r}: its points' storage "
                             f"dirs would not match; start a new sweep")
        # the same code as a snapshot the sweep already has, when that one is still intact
        same = next((v for v in range(manifest.latest_code, 0, -1) if manifest.code_of(v).sha256 == code_hash
                     and _intact(sweep_dir, manifest, v)), None)
        if same is not None:  # the code is the same as a snapshot the sweep already has
            version = same
        else:
            version = manifest.latest_code + 1
            name = f"{records.CODE}-{version}"
            code = sweep_dir / name
            shutil.rmtree(code, ignore_errors=True)  # a refresh killed before its manifest
            shutil.move(str(staging / records.CODE), str(code))
            shutil.move(str(snapshot.hash_file(staging / records.CODE)), str(snapshot.hash_file(code)))
            versions = dict(manifest.code_versions)
            versions[str(version)] = {"dir": name, "sha256": code_hash, "bytes": code_bytes,
                                      "snapshot": str(code / lay.experiment), "workdir": str(code / lay.workdir),
                                      "source_root": str(lay.root), "taken": now()}
            manifest = manifest.replace(code_versions=versions)
        manifest = manifest.with_points(lambda e: e.replace(code_version=version), indices)
        manifests.write_manifest(sweep_dir, manifest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _intact(sweep_dir: Path, manifest: Manifest, version: int) -> bool:
    """Whether snapshot ``version`` is all there and unchanged (a deleted or damaged one is
    replaced by ``--refresh-code``, never reused)."""
    from ..errors import SnapshotError

    code = manifest.code_of(version)
    try:
        snapshot.verify(sweep_dir / code.dir, code.sha256 or "", "")
    except SnapshotError:
        return False
    return (sweep_dir / code.dir).is_dir()


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
    from ..job.point import run_point

    manifests.require_own(sweep_dir, "runs")
    entry = manifest.point(index)
    row = sweep_states(sweep_dir, manifest)[index]
    busy = BUSY if schedulers.of(manifest.executor).keeps_queue else (State.RUNNING,)
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
    write_intent(sweep_dir, entry, cancelled=False, submission=previous + 1)
    try:
        run_point(sweep_dir, index, notify=False)  # debugging in the foreground is not the sweep's end
    except BaseException as exc:
        if pdb and not isinstance(exc, KeyboardInterrupt):
            import pdb as debugger
            import traceback

            traceback.print_exc()
            debugger.post_mortem(exc.__traceback__)
        raise


def point_config(manifest: Manifest, index: int) -> tp.Tuple[tp.Dict[str, tp.Any], str]:
    """A point's config and where it came from: the config.json its latest attempt wrote,
    else the manifest's updates, named configs and seed."""
    entry = manifest.point(index)
    path = PointPaths(entry.path).config
    config = records.read_json(path)
    if isinstance(config, dict):
        return config, f"resolved config of its latest attempt ({path})"
    return ({"updates": entry.updates, "named_configs": list(entry.named_configs), "seed": entry.seed},
            "not run yet: the updates, named configs and seed it will run with")


def hold(sweep_dir: Path, manifest: Manifest, indices: tp.Sequence[int], release: bool = False) -> tp.List[str]:
    """``scontrol hold`` (or ``release``) the queued jobs of the points ``indices`` (a packed
    job as a whole); returns the jobs. UsageError on a local sweep."""
    manifests.require_own(sweep_dir, "releases" if release else "holds")
    scheduler = schedulers.of(manifest.executor)
    if not scheduler.keeps_queue:
        raise UsageError(f"sweep {manifest.name!r} runs locally: hold and release are SLURM's")
    rows = sweep_states(sweep_dir, manifest, scheduler)
    jobs = sorted({str(rows[i].job_id) for i in indices if rows[i].job_id and rows[i].state in (State.PENDING,
                                                                                               State.REQUEUED)})
    scheduler.hold(jobs, release=release)
    return jobs


def point_command(manifest: Manifest, index: int, snapshot_code: bool = False) -> str:
    """The shell command that runs point ``index`` by hand, outside ptslurm (seml's
    ``print-command``): ``python EXP with NAMED... KEY=VALUE... seed=N``, each update in
    sacred's own value syntax, the seed ptslurm chose included, so sacred builds the point's
    config. ``snapshot_code``: the code the point ran (``cd`` into its snapshot), else the
    experiment file as it is now. The storage dir is left to the experiment."""
    entry = manifest.point(index)
    code = manifest.code_of(entry.code_version)
    exp = Path(code.snapshot) if snapshot_code else Path(manifest.experiment.file)
    words: tp.List[str] = []
    for name in entry.named_configs:  # a config file named after `with` went into the snapshot
        from_snapshot = name.startswith(snapshot.WITH_FILES + "/") and code.workdir
        words.append(str(Path(code.workdir or "") / name) if from_snapshot else name)
    updates = dict(entry.updates)
    if manifest.storage_key:
        updates.pop(manifest.storage_key, None)
    if entry.seed is not None and entry.seed_source == "ptslurm":
        updates.setdefault("seed", entry.seed)
    words += [f"{key}={value!r}" for key, value in updates.items()]
    head = f"cd {shlex.quote(str(exp.parent))} && " if snapshot_code else ""
    return head + " ".join(["python", shlex.quote(str(exp))] + (["with"] + [shlex.quote(w) for w in words]
                                                                  if words else []))


def log_paths(sweep_dir: Path, manifest: Manifest, index: int, attempt: tp.Optional[int],
              live: bool = False, rank: int = 0) -> tp.Tuple[Path, tp.Optional[Attempt], tp.Optional[str]]:
    """The captured output of attempt ``attempt`` (1-based; default the latest) of a point:
    sacred's cout.txt, else the scheduler's log. ``live`` picks the scheduler's (or the local)
    log, written as it happens (sacred updates cout.txt only at heartbeats).
    ``rank``: a rank of a distributed point (only rank 0 has a sacred run; the others'
    output is in the scheduler's log of their task).
    Returns ``(path, the attempt, a note on where the output comes from)``."""
    entry = manifest.point(index)
    world = manifest.resources_of(index).world_size
    if not 0 <= rank < world:
        raise UsageError(f"--rank {rank}: point {index} has ranks 0-{world - 1}")
    attempts = records.read_status(entry.path).attempts
    if attempt is not None and not 1 <= attempt <= max(len(attempts), 1):
        raise UsageError(f"point {index} has {len(attempts)} attempt(s); --attempt must be 1-{max(len(attempts), 1)}")
    chosen = attempts[(attempt or len(attempts)) - 1] if attempts else None
    note = None
    queued = schedulers.of(manifest.executor).keeps_queue  # its jobs write the scheduler's logs
    if chosen is not None and chosen.sacred_id and not live and rank == 0:
        path = PointPaths(entry.path).run(chosen.sacred_id, COUT)
        try:
            if path.stat().st_size > 0:
                return path, chosen, None
        except OSError:
            pass
        note = (f"(sacred captured no output in {path}; showing the "
                f"{'scheduler' if queued else 'local'} log)")
    job = (chosen.job_id if chosen is not None else None) or entry.job_id
    if queued and job and not (chosen is not None and chosen.packed):  # (a packed point has a log of its own)
        return backends_of(sweep_dir, manifest).main.log_path(job, rank), chosen, note
    return sweep_dir / records.LOCAL_LOGS / f"{index}.log", chosen, note
