"""``ptslurm sweep``: words -> points -> pre-flight -> storage dirs + manifest -> submission.

Nothing is created before every check that can run without side effects has passed
(``plan``: spec, experiment, every point's config, root writable, ``sbatch --test-only``).
If the scheduler still refuses, already queued arrays are cancelled, the empty storage dirs
are removed and the manifest says ``not_submitted`` with sbatch's message (``submission``).
``run`` is the one entry point, for the command line and the library.
"""
import dataclasses
import os
import shlex
import typing as tp
from pathlib import Path

from .. import schedulers
from ..records import locks, manifests
from ..schedulers.backends import BackendFactory
from ..errors import PointsFailed, PtslurmError
from .failpoints import failpoint
from .lifecycle import code_change_note, resubmit
from ..plan.make import Plan, SweepRequest, plan, time_limit_note
from ..records import Manifest, State
from ..read.state import sweep_states
from .submission import create, existing, run_local, scheduler_of, slurm_backend, submit, top_up
from ..read.state import PointRow, alive, ended

__all__ = ["SweepRequest", "Plan", "Outcome", "Events", "Quiet", "run", "execute", "wait_for", "check_finished"]

def check_finished(rows: tp.Sequence[PointRow], sweep_dir: Path) -> None:
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

    def progress(self, rows: tp.Sequence[PointRow], final: bool = False) -> None:
        """Where the points stand (local runs and --wait)."""


class Quiet:
    """Events that nobody hears: a library caller's default."""

    def message(self, text: str) -> None:
        pass

    def warning(self, text: str) -> None:
        pass

    def progress(self, rows: tp.Sequence[PointRow], final: bool = False) -> None:
        pass


@dataclasses.dataclass
class Outcome:
    """What ``run`` did: the sweep (None for a dry run), how many sbatch calls it made, the
    point rows when the points ran here or were waited for."""

    plan: Plan
    sweep_dir: tp.Optional[Path] = None
    manifest: tp.Optional[Manifest] = None
    sbatch_calls: int = 0
    rows: tp.Optional[tp.List[PointRow]] = None
    already: bool = False
    timing: tp.Dict[str, float] = dataclasses.field(default_factory=dict)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def run(request: SweepRequest, wait: bool = False, events: tp.Optional[Events] = None,
        make: tp.Optional[BackendFactory] = None) -> Outcome:
    """``ptslurm sweep`` in one call: plan (every check without side effects), then either
    nothing (a dry run), or finish what an interrupted run of the same command left, or
    create the sweep and submit it to SLURM or run it here; with ``wait``, until every point
    ended. Raises a PtslurmError on bad input; the caller decides what a failed point means
    (``check_finished``). ``make``: the scheduler backend's factory (default SLURM's; the
    tests hand in ``backends.FakeCluster.backend``)."""
    import time

    from .rerun import remember, rerun

    events = events or Quiet()
    started = time.perf_counter()
    shortcut, executor = rerun(request, scheduler_given=make is not None)
    p = shortcut or plan(request, scheduler_given=make is not None, executor=executor)
    try:
        for warning in p.warnings:
            events.warning(warning)
        if request.dry_run:
            return Outcome(plan=p, timing={"preflight": time.perf_counter() - started})
        preflight = time.perf_counter() - started
        outcome = execute(p, events, make)
        outcome.timing["preflight"] = preflight
        if shortcut is None and outcome.sweep_dir is not None and outcome.manifest is not None:
            remember(p, outcome.sweep_dir, outcome.manifest)
    finally:
        p.discard()
    if wait and outcome.rows is None and outcome.sweep_dir is not None:
        outcome.rows = wait_for(outcome.sweep_dir, events, make)
        outcome.manifest = manifests.read_manifest(outcome.sweep_dir)
    return outcome


def execute(p: Plan, events: tp.Optional[Events] = None, make: tp.Optional[BackendFactory] = None) -> Outcome:
    """The side effects of a plan (``plan()`` made it): finish what an interrupted run of
    the same command left, or create the sweep and submit it (through ``make``'s backend,
    default SLURM's) or run it here."""
    outcome = Outcome(plan=p)
    _execute(p, outcome, events or Quiet(), make)
    return outcome


def _execute(p: Plan, outcome: Outcome, events: Events, make: tp.Optional[BackendFactory]) -> None:
    import time

    outcome.sweep_dir = p.sweep_dir
    manifest = existing(p)
    # the sweep's scheduler keeps a queue; else its points run here, in this command
    on_queue = schedulers.of(p.executor if manifest is None else manifest.executor).keeps_queue
    if manifest is not None:
        manifests.require_own(p.sweep_dir, "continues")
    if manifest is not None and manifest.state == "submitting" and on_queue:
        # an interrupted submission (killed, ssh dropped): finish it, exactly once
        book = manifests.ManifestBook(p.sweep_dir, manifest)
        backend = slurm_backend(p, make)
        before = sum(1 for e in manifest.points if e.job_id)
        adopted = submit(book, backend)
        queued = len(manifest.points) - before - adopted
        events.message(f"finished the interrupted submission of {p.name!r}: {before} point(s) were recorded, "
                       f"{adopted} adopted from the queue, {queued} queued now")
        outcome.manifest, outcome.sbatch_calls = book.manifest, backend.sbatch_calls
        return
    if manifest is not None and not on_queue and manifest.state == "submitting":
        # killed between creating the sweep and starting its points: none ever started
        events.message(f"sweep {p.name!r} was created by a run killed before it started any point: starting them")
        _run_here(p, manifests.ManifestBook(p.sweep_dir, manifest), outcome, events)
        return
    if manifest is not None and not on_queue:
        rows = sweep_states(p.sweep_dir, manifest)
        runner = manifest.runner or {}
        runner_gone = not alive(runner.get("host"), runner.get("pid"))
        left = [r.index for r in rows if runner_gone and r.state in (State.LOST, State.INTERRUPTED)]
        if left:
            events.message(f"running the {_plural(len(left), 'point')} an interrupted run left (resuming from "
                           f"their checkpoints)")
            resubmit(p.sweep_dir, left)
            outcome.rows = _search_here(p, events) or sweep_states(p.sweep_dir, manifests.read_manifest(p.sweep_dir))
            outcome.manifest = manifests.read_manifest(p.sweep_dir)
            return
        if (manifest.search or manifest.optuna) and (runner_gone or not runner):  # a search killed between rungs
            earlier = manifests.read_manifest(p.sweep_dir)
            outcome.rows = _search_here(p, events)
            outcome.manifest = manifests.read_manifest(p.sweep_dir)
            if outcome.manifest != earlier:
                events.message(f"went on with the successive halving of {p.name!r} an interrupted run left")
                return
            outcome.rows = None
    if manifest is not None:
        if p.request.note and p.request.note != manifest.note:  # a note after the fact: kept, not dropped
            with locks.manifest_lock(p.sweep_dir):
                manifest = manifests.read_manifest(p.sweep_dir)
                manifest = manifest.replace(note=p.request.note)
                manifests.ManifestBook(p.sweep_dir, manifest).save(manifest)
            events.message(f"sweep {p.name!r}: its note is now {p.request.note!r}")
        if (manifest.search or manifest.optuna) and on_queue:
            from .promote import decide  # a search whose sweep command was killed goes on

            decide(p.sweep_dir, make, by="sweep")
            manifest = manifests.read_manifest(p.sweep_dir)
        note = code_change_note(manifest, p.sweep_dir)
        events.message(f"sweep {p.name!r} already exists with this spec: nothing new to submit"
                       + (f"; {note}: its points ran the submitted code. To run the new code: `ptslurm resubmit "
                          f"{p.name} --failed --refresh-code` (or --points ...), or a new sweep with --name"
                          if note else ""))
        outcome.manifest, outcome.already = manifest, True
        return
    n = len(p.points)
    if on_queue:
        backend = slurm_backend(p, make)
        groups = p.group_resources()
        notes = [time_limit_note(res) for res, _ in groups]
        for g, (res, members) in enumerate(groups):  # sbatch --test-only, one per resource group
            backend.of(g).validate(-(-len(members) // res.points_per_job))
        t_create = time.perf_counter()
        book = create(p)
        submit(book, backend)
        outcome.timing["submit"] = time.perf_counter() - t_create
        manifest = book.manifest
        arrays = sorted({e.job_id.split("_")[0] for e in manifest.points if e.job_id})
        now = sum(1 for e in manifest.points if e.job_id)
        tasks = len({e.job_id for e in manifest.points if e.job_id})
        shared = f", {tasks} jobs shared by up to {max(r.points_per_job for r, _ in groups)} points each" \
            if tasks < now else ""
        if not manifest.optuna:  # (Optuna's points are queued as it proposes them, below)
            events.message(f"queued {_plural(now, 'point')} of {p.experiment_name!r} as {len(arrays)} job "
                           f"array{'s' if len(arrays) != 1 else ''} ({', '.join(arrays)}{shared})"
                           + (f" for {len(groups)} resource groups" if len(groups) > 1 else ""))
        if manifest.waves:
            events.message(f"the cluster lets you queue {manifest.waves['limit']} jobs: the other {n - now} points "
                           f"wait and are submitted in waves as these end (job "
                           f"{manifest.waves.get('job') or '-'} submits the next)")
        for note in dict.fromkeys(n for n in notes if n):
            events.message(note)
        if manifest.search or manifest.optuna:  # the first asks; a decision job after the first rung
            from .promote import decide, read_log

            decide(p.sweep_dir, make, by="sweep")
            job = read_log(p.sweep_dir).get("job")
            asking = manifest.optuna or {}
            what = (f"successive halving to {p.search.budget}={p.search.rungs[-1]} (rungs "
                    f"{', '.join(map(str, p.search.rungs))})" if p.search is not None else
                    f"Optuna's {asking.get('sampler')} proposes {len(manifest.points)} trials, "
                    f"{asking.get('parallel')} at a time")
            events.message(f"{what}: the points' jobs decide as they end" +
                           (f", and decision job {job} after them" if job else "") +
                           f"; `ptslurm status {p.name}` shows where it stands")
        outcome.manifest, outcome.sbatch_calls = manifests.read_manifest(p.sweep_dir), backend.sbatch_calls
        return
    book = create(p)
    failpoint("created")
    _run_here(p, book, outcome, events)


def _run_here(p: Plan, book: manifests.ManifestBook, outcome: Outcome, events: Events) -> None:
    """A local sweep just created: its points here, ``-j`` at a time, then its search's rungs."""
    per_job = max(r.points_per_job for r, _ in p.group_resources())
    at_a_time = (f"{p.request.jobs} at a time" if per_job == 1 else
                 f"{p.request.jobs} job(s) of up to {per_job} points at a time (--points-per-job)")
    n = len(book.manifest.points)
    events.message(f"no SLURM here: running {_plural(n, 'point')} of {p.experiment_name!r} locally, {at_a_time}"
                   if p.request.executor == "auto" else f"running {_plural(n, 'point')} locally, {at_a_time}")
    if not book.manifest.optuna:  # (Optuna's points go out as it proposes them)
        outcome.rows = run_local(book, p.request.jobs, [e.index for e in book.manifest.points],
                                 on_change=events.progress)
    outcome.rows = _search_here(p, events) or outcome.rows or []
    events.progress(outcome.rows, final=True)
    outcome.manifest = manifests.read_manifest(p.sweep_dir)


def _search_here(p: Plan, events: Events) -> tp.Optional[tp.List[PointRow]]:
    """A local sweep's successive halving: the next rungs, in order, here; the rows after."""
    manifest = manifests.read_manifest(p.sweep_dir)
    if not manifest.search and not manifest.optuna:
        return None
    from .promote import run_local as search_locally

    search_locally(p.sweep_dir, p.request.jobs, on_change=events.progress)
    return sweep_states(p.sweep_dir, manifests.read_manifest(p.sweep_dir))


def wait_for(sweep_dir: Path, events: tp.Optional[Events] = None,
             make: tp.Optional[BackendFactory] = None) -> tp.List[PointRow]:
    """Poll until every point of the sweep ended (``$PTSLURM_POLL_S`` seconds apart, 2 by
    default); the rows at the end."""
    import time

    events = events or Quiet()
    while True:
        manifest = manifests.read_manifest(sweep_dir)  # waves add job ids as they go
        rows = sweep_states(sweep_dir, manifest, scheduler_of(sweep_dir, manifest, make))
        try:
            topped = top_up(sweep_dir, manifest, rows, make)
        except (PtslurmError, OSError) as exc:  # the next round tries again; the user is told each time
            events.warning(f"no wave job was queued for the waiting points and --wait could not submit the next "
                           f"wave ({exc}); it tries again at its next look (`ptslurm next-wave` does it by hand)")
            topped = False
        if topped:
            events.warning("no wave job was queued for the waiting points: --wait submitted the next wave "
                           "(as `ptslurm next-wave` does)")
            continue
        if (manifest.optuna or manifest.search) and manifests.foreign_owner(sweep_dir) is None:
            from .promote import decide

            if decide(sweep_dir, make, by="sweep --wait") or manifests.read_manifest(sweep_dir) != manifest:
                continue  # promoted: wait for the next rung
        done = ended(rows)
        events.progress(rows, final=done)
        if done:
            return rows
        time.sleep(float(os.environ.get("PTSLURM_POLL_S", "2")))


