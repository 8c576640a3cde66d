"""The crash-safe submission protocol: create the sweep (snapshot, storage dirs, manifest in
state ``submitting``), submit array by array recording job ids as each is queued, adopt the
jobs of a killed submission instead of queueing them twice, undo a refused one, and submit
in waves under a cluster's submit limit. Every scheduler call goes through a backend
(``backends``), so a fake one runs the same protocol in the fast tests.
"""
import hashlib
import os
import random
import shutil
import typing as tp
from pathlib import Path

from ..schedulers import backends
from ..records import claims, locks, manifests, snapshot, storage
from .. import records, schedulers
from ..errors import StorageError, UsageError
from ..plan.make import Plan, versions
from ..records import ExperimentInfo, Manifest, PointEntry, State, read_intent
from ..records.spec import Resources
from ..records.recordkit import now
from ..read.state import PointRow, point_states


class Backends:
    """A sweep's scheduler backends, one per resource group (a sweep file's ``resources:``;
    one group otherwise), with their sbatch calls counted together. ``main`` answers the
    questions about the queue, which do not depend on the group."""

    def __init__(self, sweep_dir: Path, resources: Resources, groups: tp.Sequence[Resources], job_name: str,
                 workdir: tp.Optional[Path], make: tp.Optional[backends.BackendFactory] = None):
        self.sweep_dir = sweep_dir
        self.resources = resources
        self.groups = tuple(groups)
        self.job_name = job_name
        self.workdir = workdir
        self._make = make or backends.SlurmBackend
        self._made: tp.Dict[int, backends.Scheduler] = {}

    def of(self, group: int) -> backends.Scheduler:
        if group not in self._made:
            resources = self.groups[group] if 0 <= group < len(self.groups) else self.resources
            self._made[group] = self._make(self.sweep_dir, resources, self.job_name, self.workdir)
        return self._made[group]

    @property
    def main(self) -> backends.Scheduler:
        return self.of(0)

    @property
    def sbatch_calls(self) -> int:
        return sum(b.sbatch_calls for b in self._made.values())

    def submit(self, book: manifests.ManifestBook, tasks: tp.Sequence[tp.Tuple[int, tp.Tuple[int, ...]]],
               marker: tp.Optional[str]) -> tp.Dict[int, str]:
        """Queue ``tasks`` (``units()``), one array (or more) per group, recording each
        array's job ids as it is queued. Returns index -> job id."""
        jobs: tp.Dict[int, str] = {}
        for group in sorted({g for g, _ in tasks}):
            mine = [u for g, u in tasks if g == group]
            jobs.update(self.of(group).submit(mine, job_target(), args_for(book.sweep_dir), book.set_jobs,
                                              marker=marker))
        return jobs

    def ensure_pickles(self, manifest: Manifest, found: tp.Mapping[int, str]) -> None:
        """The pickles of adopted array tasks (``found``: index -> job id)."""
        by_job: tp.Dict[str, tp.List[int]] = {}
        for index, job in sorted(found.items()):
            by_job.setdefault(job, []).append(index)
        for job, unit in by_job.items():
            self.of(manifest.points[unit[0]].group).ensure_pickles({job: unit}, job_target(), args_for(self.sweep_dir))


def units(manifest: Manifest, indices: tp.Sequence[int]) -> tp.List[tp.Tuple[int, tp.Tuple[int, ...]]]:
    """``(group, points)`` of each job (array task, or local process group) that runs
    ``indices``: each resource group's points in order, its ``points_per_job`` per job (the
    last job of a group may hold fewer)."""
    by_group: tp.Dict[int, tp.List[int]] = {}
    for i in indices:
        by_group.setdefault(manifest.points[i].group, []).append(i)
    out: tp.List[tp.Tuple[int, tp.Tuple[int, ...]]] = []
    for group, members in sorted(by_group.items()):
        size = max(1, manifest.resources_of(members[0]).points_per_job)
        out += [(group, tuple(unit)) for unit in backends.chunks(members, size)]
    return out


def slurm_backend(p: Plan, make: tp.Optional[backends.BackendFactory] = None) -> Backends:
    """The scheduler backends a new sweep is submitted through (``make``: another than SLURM's)."""
    return Backends(p.sweep_dir, p.request.resources, p.groups, p.name, p.workdir, make)


def backends_of(sweep_dir: Path, manifest: Manifest,
                make: tp.Optional[backends.BackendFactory] = None) -> Backends:
    """The scheduler backends of an existing sweep, one per resource group."""
    workdir = Path(manifest.experiment.workdir) if manifest.experiment.workdir else None
    return Backends(sweep_dir, manifest.resources, manifest.groups, manifest.name, workdir, make)


def scheduler_of(sweep_dir: Path, manifest: Manifest,
                 make: tp.Optional[backends.BackendFactory] = None) -> schedulers.Scheduler:
    """Who answers questions about an existing sweep's jobs and takes its orders: the backend
    ``make`` builds (a fake's), else the sweep's own scheduler (``schedulers.of``)."""
    return backends_of(sweep_dir, manifest, make).main if make is not None else schedulers.of(manifest.executor)


def job_target() -> tp.Callable[..., tp.Any]:
    """What every array task runs: ``job.run_task(sweep_dir, index or [indices])`` (handed
    to the backend, which never imports the job)."""
    from ..job.point import run_task

    return run_task


def _require_ours(sweep_dir: Path) -> None:
    """A sweep dir of that name that another user made is theirs: never reused nor removed."""
    owner = os.lstat(sweep_dir).st_uid
    if owner != os.geteuid():
        raise UsageError(f"sweep dir {str(sweep_dir)!r} already exists and belongs to {locks.user_name(owner)}; "
                         f"choose another --name or your own --root")


def existing(p: Plan) -> tp.Optional[Manifest]:
    """The manifest of a sweep of the same name, when one was submitted with the same spec.
    Raises UsageError when the name is taken by a different spec."""
    sweep_dir = p.sweep_dir
    if not sweep_dir.exists():
        return None
    _require_ours(sweep_dir)
    if not (sweep_dir / records.MANIFEST).exists():
        # a submission killed before its manifest: nothing was queued yet; give back what
        # it claimed and start again
        claims.release_claims(p.root / p.experiment_name, str(sweep_dir))
        shutil.rmtree(sweep_dir, ignore_errors=True)
        return None
    manifest = manifests.read_manifest(sweep_dir)
    if manifest.spec_hash != p.spec_hash:
        raise UsageError(f"sweep {p.name!r} already exists with a different spec ({sweep_dir}); "
                         f"choose another --name")
    if manifest.state == "not_submitted":
        shutil.rmtree(sweep_dir)
        return None
    return manifest


def create(p: Plan) -> manifests.ManifestBook:
    """Create the sweep dir (snapshot, storage dirs, manifest in state 'submitting')."""
    from ..plan import experiment

    sweep_dir = p.sweep_dir
    storage.make_dirs(sweep_dir.parent)
    try:
        sweep_dir.mkdir()
        os.chmod(sweep_dir, storage.dir_mode())
    except FileExistsError:
        _require_ours(sweep_dir)
        raise UsageError(f"sweep {p.name!r} is being created by another process; choose another --name") from None
    assert p.staging is not None and p.layout is not None, "plan() stages the snapshot"
    try:
        code = sweep_dir / records.CODE
        try:
            shutil.move(str(p.staging / records.CODE), str(code))
            shutil.move(str(snapshot.hash_file(p.staging / records.CODE)), str(snapshot.hash_file(code)))
        except shutil.Error as exc:  # copytree gathers the errors of every file
            first = exc.args[0][0][2] if exc.args and exc.args[0] else str(exc)
            raise StorageError(f"cannot write the code snapshot to {str(code)!r}: {first}; free space or "
                               f"choose another --root") from None
        dirs = claims.allocate_dirs(p.root / p.experiment_name, len(p.points), owner=str(sweep_dir))
    except BaseException:
        claims.release_claims(p.root / p.experiment_name, str(sweep_dir))
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
        budget_key=p.search.budget if p.search is not None else None,
        search=p.search.to_json() if p.search is not None else None,
        optuna=p.optuna,
        resources=p.request.resources,
        groups=tuple(p.groups),
        varied=tuple(p.points[0].varied) if p.points else (),
        touched=True,
        versions=versions(),
        git=experiment.git_state(p.experiment_file),
        # one seed per point: the experiment's own (config scope, named config, command line)
        # when it sets one; else ptslurm fixes one at submission, so that every attempt
        # (requeue, resubmit) builds the same config and resuming is exact
        points=tuple(PointEntry(index=pt.index, updates=dict(pt.updates), named_configs=tuple(pt.named_configs),
                                varied=tuple(pt.varied), storage_dir=str(d),
                                seed=own if own is not None else rng.randrange(2**31 - 1),
                                seed_source="experiment" if own is not None else "ptslurm",
                                group=p.point_groups[pt.index] if p.point_groups else 0)
                     for pt, d, own in zip(p.points, dirs, p.seeds)),
    )
    try:
        manifests.write_manifest(sweep_dir, manifest)
    except BaseException:  # a full disk, a kill: nothing half-made stays behind
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
        _remove_sweep_dir(sweep_dir)
        raise
    return manifests.ManifestBook(sweep_dir, manifest)


def _remove_sweep_dir(sweep_dir: Path) -> None:
    """Undo a sweep dir (and the ``sweeps`` folder when it held only this one)."""
    shutil.rmtree(sweep_dir, ignore_errors=True)
    try:
        sweep_dir.parent.rmdir()
    except OSError:
        pass


def _undo(book: manifests.ManifestBook, error: str) -> None:
    """After a refused submission: no storage dir may claim to be queued."""
    for entry in book.manifest.points:
        try:
            os.unlink(os.path.join(entry.storage_dir, records.CLAIM))
            os.rmdir(entry.storage_dir)  # only when nothing else is in it
        except OSError:
            pass
    book.save(book.manifest.with_jobs({e.index: None for e in book.manifest.points})
              .replace(state="not_submitted", error=error))


def args_for(sweep_dir: Path) -> backends.ArgsFor:
    """What each array task's ``job.run_task`` is called with: one point's index, or the
    list of the points packed into it."""
    return lambda unit: (str(sweep_dir), unit[0] if len(unit) == 1 else list(unit))


def submit(book: manifests.ManifestBook, backend: Backends) -> int:
    """Queue every point of the manifest that has no job yet on SLURM, recording job ids
    array by array; an interrupted submission's queued jobs are adopted first (``adopt``).
    Returns how many points were adopted."""
    sweep_dir = book.sweep_dir
    if book.manifest.optuna:  # its points go out as Optuna proposes them (``promote.decide``)
        book.update(state="submitted")
        return 0
    adopted = adopt(book, backend)
    todo = units(book.manifest, [e.index for e in book.manifest.points if not e.job_id])
    limit = backend.main.submit_limit()
    if limit is not None and limit - (backend.main.queued_count() or 0) < len(todo):
        # more array tasks than the queue takes: submit what fits now, the rest in waves
        book.update(state="submitted", waves={"limit": limit}, sbatch_calls=backend.sbatch_calls)
        _wave(book, backend, limit)
        return adopted
    try:
        backend.submit(book, todo, marker=submit_marker(sweep_dir))
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)) or adopted:
            raise  # the same command again finishes the submission
        backend.main.cancel(e.job_id for e in book.manifest.points if e.job_id)
        _undo(book, str(exc))
        raise
    book.update(state="submitted", sbatch_calls=backend.sbatch_calls)
    return adopted


def next_wave(sweep_dir: tp.Union[str, Path], own_job: tp.Optional[str] = None,
              make: tp.Optional[backends.BackendFactory] = None) -> int:
    """Submit the waiting points of a sweep that met the cluster's submit limit, as many as
    fit now, and, while points still wait, a small wave job that runs this again once they
    all ended (``--dependency=afterany``; it holds one queue slot). No daemon: the wave job,
    ``status`` and ``--wait`` call it (``own_job``: the wave job calling). Returns how many
    points were submitted. ``make``: the backend factory (default SLURM's)."""
    sweep_dir = Path(sweep_dir)
    with locks.manifest_lock(sweep_dir):
        manifest = manifests.read_manifest(sweep_dir)
        waves = manifest.waves
        if not waves or manifest.state != "submitted":
            return 0
        backend = backends_of(sweep_dir, manifest, make)
        if waves.get("job") and own_job != waves["job"] and waves["job"] in backend.main.queue_states([waves["job"]]):
            return 0  # a wave job is queued: it will do this
        return _wave(manifests.ManifestBook(sweep_dir, manifest), backend, int(waves["limit"]))


def _wave(book: manifests.ManifestBook, backend: Backends, limit: int) -> int:
    # a wave killed between its sbatch and recording the job ids left them queued: adopt them
    found = backend.main.marked_jobs(submit_marker(book.sweep_dir))
    unrecorded = {e.index: found[e.index] for e in book.manifest.points if not e.job_id and e.index in found}
    if unrecorded:
        backend.ensure_pickles(book.manifest, unrecorded)
        book.set_jobs(unrecorded)
    waiting = [e.index for e in book.manifest.points if not e.job_id and not read_intent(e.storage_dir).stops]
    if not waiting:
        book.update(waves=None)
        return 0
    queued = backend.main.queued_count()
    if queued is None:
        return 0
    free = limit - queued
    tasks = units(book.manifest, waiting)  # each array task takes one queue slot
    chosen = tasks if len(tasks) <= free else tasks[:max(free - 1, 0)]  # a slot for the wave job
    marker = submit_marker(book.sweep_dir)
    if not chosen:  # no room for a point: the last slot waits for this sweep's queued jobs
        going = backend.main.queue_states([e.job_id for e in book.manifest.points if e.job_id]) if free else {}
        arrays = sorted({job.split("_")[0] for job in going})
        if arrays:
            book.update(waves={"limit": limit, "job": backend.main.submit_wave_job(arrays, marker)})
        return 0
    jobs = backend.submit(book, chosen, marker=marker)
    if len(chosen) < len(tasks):
        arrays = sorted({job.split("_")[0] for job in jobs.values()})
        book.update(waves={"limit": limit, "job": backend.main.submit_wave_job(arrays, marker)})
    else:
        book.update(waves=None)
    return sum(len(u) for _, u in chosen)


def submit_marker(sweep_dir: Path) -> str:
    """What ptslurm puts in the comment of every job it submits for ``sweep_dir``, to find
    jobs that a killed submission queued but never recorded."""
    return "ptslurm:" + hashlib.sha256(str(Path(sweep_dir).resolve()).encode()).hexdigest()[:16]


def adopt(book: manifests.ManifestBook, backend: Backends) -> int:
    """Record the jobs of an interrupted submission instead of queueing them again: those
    still in the queue (found by their comment) and those that already ran (their status
    files name them). Returns how many points were adopted."""
    manifest = book.manifest
    missing = [e for e in manifest.points if not e.job_id]
    if not missing or manifest.state != "submitting":
        return 0
    found = backend.main.marked_jobs(submit_marker(book.sweep_dir))
    adopted: tp.Dict[int, str] = {}
    for entry in missing:
        ran = next((a.job_id for a in records.read_status(entry.path).attempts if a.job_id), None)
        job = found.get(entry.index) or (ran if ran and not ran.startswith("local") else None)
        if job:
            adopted[entry.index] = job
    if adopted:
        backend.ensure_pickles(manifest, adopted)
        book.set_jobs(adopted)
    return len(adopted)


def run_local(book: manifests.ManifestBook, jobs: int, indices: tp.Sequence[int],
              on_change: tp.Callable[[tp.List[PointRow]], None] = lambda rows: None) -> tp.List[PointRow]:
    """Run points on this machine, ``jobs`` at a time, until they end."""
    workdir = book.manifest.experiment.workdir
    backend = backends.LocalBackend(book.sweep_dir, jobs, workdir=Path(workdir) if workdir else None)
    book.save(book.manifest.with_jobs({i: "local" for i in indices})
              .replace(state="submitted", runner=backends.runner_record()))
    backend.run([unit for _, unit in units(book.manifest, indices)],
                on_change=lambda done: on_change(point_states(book.manifest)))
    return point_states(book.manifest)


def waves_stalled(sweep_dir: Path, manifest: Manifest, rows: tp.Sequence[PointRow],
                  make: tp.Optional[backends.BackendFactory] = None) -> bool:
    """Whether points of a sweep in waves wait and no wave job is queued to submit them (it
    was cancelled or killed after the last point ended). Asks the scheduler; submits nothing."""
    if not schedulers.of(manifest.executor).keeps_queue or not manifest.waves or not any(
            r.state == State.WAITING for r in rows):
        return False
    job = manifest.waves.get("job")
    try:
        return not job or job not in backends_of(sweep_dir, manifest, make).main.queue_states([job])
    except Exception:  # noqa: BLE001 - no scheduler to ask: nothing to say
        return False


def top_up(sweep_dir: Path, manifest: Manifest, rows: tp.Sequence[PointRow],
           make: tp.Optional[backends.BackendFactory] = None) -> bool:
    """``sweep --wait``'s and ``ptslurm next-wave``'s write step (``status``, ``collect`` and
    ``list`` never submit): when points of a sweep in waves wait and no wave job is queued to
    submit them, submit the next wave now. Only for a sweep whose control files the caller
    owns. True when it submitted something; a refused or failed submission raises (its
    error names what sbatch said)."""
    if not waves_stalled(sweep_dir, manifest, rows, make) or manifests.foreign_owner(sweep_dir) is not None:
        return False
    return bool(next_wave(sweep_dir, make=make))
