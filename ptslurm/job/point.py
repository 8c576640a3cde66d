"""What runs inside a job, under SLURM or locally: load the point from the sweep's manifest,
import the experiment from the code snapshot and run it with sacred, one attempt per start.

Resume state lives on disk, not in a pickle: every start reads the manifest and the storage
dir afresh, so a requeue, a node failure or a resubmission all take the same path.
"""
import os
import signal
import sys
import traceback
import typing as tp
from pathlib import Path

from . import ending, interrupt, runtime
from ..plan import sacred_adapter
from .. import schedulers
from ..records import manifests, storage, writes
from .attempts import AttemptRecord, classify, decide, fingerprint
from ..records import WISHED, Action, Cause, Manifest, PointEntry, PointPaths, State, read_intent, read_status
from ..records.recordkit import now
from .runtime import ENV_POINT, ENV_STORAGE_DIR, ENV_SWEEP_DIR, job_id, on_slurm


def run_task(sweep_dir: tp.Union[str, Path], what: tp.Union[int, tp.Sequence[int]]) -> tp.Any:
    """What an array task runs: one point (``what`` an index), or the points packed into
    it (a list: ``pack.run_pack``)."""
    if isinstance(what, int):
        try:
            return run_point(sweep_dir, what)
        except interrupt.Interrupted:
            raise SystemExit(_stopped_exit(sweep_dir, what)) from None
    from .pack import run_pack

    return run_pack(sweep_dir, list(what))


def _stopped_exit(sweep_dir: tp.Union[str, Path], index: int) -> int:
    """A stop reached the end of the attempt, recorded and said (``story``): no traceback;
    the exit status is 0 when the point goes on (requeued), else 1."""
    try:
        latest = read_status(manifests.read_manifest(Path(sweep_dir)).point(index).path).latest
    except Exception:  # noqa: BLE001 - the record is what counts; this is only the exit status
        return 1
    return 0 if latest is not None and latest.state == State.REQUEUED else 1


def _requeue() -> None:
    """Ask SLURM to requeue this job, unless the point shares it with others (``pack``): such
    a job is requeued once, by its own process, after all its points have stopped."""
    from .pack import ENV_PACK

    if not os.environ.get(ENV_PACK):
        schedulers.in_job().requeue(job_id())


def run_point(sweep_dir: tp.Union[str, Path], index: int, notify: bool = True) -> tp.Any:
    """Run one attempt of point ``index`` of the sweep in ``sweep_dir``; return the sacred
    run's result. The attempt holds the storage dir's lease while it runs. On a stop request
    or an error the attempt is recorded with its cause and, on SLURM, the job is requeued
    within the retry policy; then the exception propagates. A point whose cancel intent is
    set does not run. Raises LeaseHeld when another live attempt holds the storage dir.
    ``notify`` False: the sweep's ``--notify`` is not sent from here (``ptslurm run``)."""
    from . import lease as leases

    sweep_dir = Path(sweep_dir)
    manifest = manifests.read_manifest(sweep_dir)
    entry = manifest.point(index)
    storage_dir = entry.path
    storage.make_dirs(storage_dir)
    storage.require_own_dir(storage_dir)
    os.environ[ENV_STORAGE_DIR] = str(storage_dir)
    os.environ[ENV_SWEEP_DIR] = str(sweep_dir)
    os.environ[ENV_POINT] = str(index)
    ranks = runtime.distributed()
    runtime.pin_gpu(ranks)
    interrupt.reset()
    interrupt.install()  # a flag only; replaces submitit's checkpoint-in-the-handler
    if not ranks.is_main:
        return _follow(manifest, entry, sweep_dir)
    held = leases.acquire(storage_dir, job_id())
    try:
        intent = read_intent(storage_dir)
        done = read_status(storage_dir).latest
        if done is not None and done.state == State.COMPLETED and done.submission >= intent.submission:
            # SLURM requeued a job whose point already completed (a node failure after the
            # end, `scontrol requeue`): running it again would redo the work and add an attempt
            print(f"ptslurm: point {index} already completed in this submission (attempt {done.attempt}); "
                  f"nothing to run", file=sys.stderr, flush=True)
            return done.result
        _clear_leftovers(PointPaths(storage_dir).checkpoints)
        manifests.touch_point(sweep_dir, index)
        record = AttemptRecord(storage_dir, submission=intent.submission,
                               code_dir=str(Path(manifest.code_of(entry.code_version).snapshot).parent))
        record.reserve()
        from .pack import ENV_PACK

        shared = os.environ.get(ENV_PACK, "").rpartition(":")[2]
        record.start(**({"ranks": ranks.world_size, "nodes": ranks.nodes} if ranks.world_size > 1 else {}),
                     **({"packed": int(shared)} if shared.isdigit() else {}))
        held.callbacks.append(record.beat)
        if intent.stops:  # cancelled while queued, or requeued after a cancel
            state, cause = WISHED[intent.wish]
            record.update(state=state, cause=cause, ended=now(), final=True)
            return None
        runtime.activate(None, record)
        asked = manifest.resources_of(index)
        max_requeues, max_attempts = asked.max_requeues, asked.max_attempts
        interrupt.on_unheeded(lambda: _unheeded(record, max_requeues, held, max_attempts,
                                                 (lambda: ending.notify(manifest, sweep_dir)) if notify else (lambda: None),
                                                 index, sweep_dir))
        return _attempt(manifest, entry, sweep_dir, record, max_requeues, max_attempts)
    finally:
        interrupt.on_unheeded(None)
        try:
            os.unlink(storage_dir / AttemptRecord.RESERVE)
        except OSError:
            pass
        held.release()
        runtime.activate(None, None)
        if notify:
            ending.after(manifest, sweep_dir, index)
            ending.notify(manifest, sweep_dir)


def _clear_leftovers(ckpt_dir: Path) -> None:
    """Before an attempt runs (it holds the lease: no other writer is alive): temp files of
    killed checkpoint writers are removed, and a ``checkpoints/`` folder left with nothing
    else (a kill or full disk during the first save) is removed too, so that code asking
    ``(storage_dir / 'checkpoints').exists()`` starts fresh instead of failing to resume."""
    try:
        names = os.listdir(ckpt_dir)
    except OSError:
        return
    stale = [n for n in names if n.startswith(".") and n.endswith(".tmp")]
    for name in stale:
        try:
            os.unlink(ckpt_dir / name)
        except OSError:
            pass
    if len(stale) == len(names):
        try:
            os.rmdir(ckpt_dir)
        except OSError:
            return
        print(f"ptslurm: {ckpt_dir} held no checkpoint" + (f" (only {len(stale)} temp file(s) of a killed writer)"
              if stale else "") + ": this attempt starts fresh", file=sys.stderr, flush=True)


def _follow(manifest: Manifest, entry: PointEntry, sweep_dir: Path) -> tp.Any:
    """A rank other than 0 of a distributed point: the same experiment with the same config,
    without observers, lease or status file (rank 0 records the attempt, writes checkpoints
    and requeues the job; a stop reaches every rank through the Trainer's agreement)."""
    if read_intent(entry.path).stops:
        return None
    experiment_file = enter_snapshot(manifest, sweep_dir, entry.index, entry.path)
    run = _create_run(manifest, entry, experiment_file, None, observe=False)
    runtime.activate(run, None)
    route_logging()
    try:
        return run()
    except interrupt.Interrupted:
        return None  # all ranks stopped together; rank 0 wrote the checkpoint and requeues the job
    finally:
        runtime.activate(None, None)


def _attempt(manifest: Manifest, entry: PointEntry, sweep_dir: Path, record: AttemptRecord,
             max_requeues: int, max_attempts: tp.Optional[int] = None) -> tp.Any:
    run = None
    ended: tp.List[str] = []  # the story line, once the attempt's end is recorded

    def end(exc: BaseException) -> None:
        """Record how the attempt ended and say so, once: from inside sacred's run when main
        raised (the line then reaches cout.txt), else when the exception reached us."""
        if ended:
            return
        decision = decide(exc, record, max_requeues, max_attempts)
        state, cause, action, progressed, gave_up = decision
        record.update(state=state, cause=cause, sacred_id=sacred_adapter.run_id(run), ended=now(),
                      progressed=progressed, gave_up=gave_up,
                      error=f"{type(exc).__name__}: {exc}", action=action, fingerprint=fingerprint(exc),
                      traceback="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
                      final=True)
        ended.append(story(decision, entry.index, sweep_dir, _how_stopped(exc)))
        if action == Action.REQUEUE:
            _requeue()

    def said(exc: BaseException) -> str:
        end(exc)
        return ended[0]

    try:
        experiment_file = enter_snapshot(manifest, sweep_dir, entry.index, entry.path)
        run = _create_run(manifest, entry, experiment_file, record, on_error=said)
        runtime.activate(run, record)
        route_logging()
        result = run()
        record.update(sacred_id=sacred_adapter.run_id(run), state=State.COMPLETED, ended=now(),
                      result=writes.jsonable(result, fallback=repr), final=True)
        return result
    except BaseException as exc:
        if not ended:
            end(exc)
            print(ended[0], flush=True)  # not from main: sacred's capture is over; the job's log has it
        raise


class ReturnedAfterStop(interrupt.Interrupted):
    """The code's main function returned after ``should_stop()`` told it to stop, short of
    its budget: a stop, recorded and resumed as one."""


def _how_stopped(exc: BaseException) -> str:
    """How the code took the stop, for the record's line."""
    if isinstance(exc, ReturnedAfterStop):
        return "the code returned after ptslurm.should_stop() was True"
    if interrupt.received() is not None and interrupt.heeded():
        return "the code stopped at ptslurm.should_stop()"
    return ""


_WHY = {Cause.TIMEOUT: "the time limit", Cause.TERMINATED: "SIGTERM", Cause.PREEMPTED: "a preemption",
        Cause.REQUEUED: "scontrol requeue", Cause.CANCELLED: "a cancel", Cause.INTERRUPTED: "a stop request",
        Cause.FAILED: "an error", Cause.NO_SPACE: "a full disk"}


def story(decision: tp.Any, index: int, sweep_dir: Path, how: str = "") -> str:
    """The one line that ends a stopped or failed attempt's output (cout.txt and the job's
    log): why it ended and what happens next, true for every decision."""
    state, cause, action, _, gave_up = decision
    resume = f"`ptslurm resubmit {sweep_dir} --points {index}`"
    if cause in {c for _, c in WISHED.values()}:  # stopped by a wish: a cancel
        then = f"it does not run again ({resume} resumes it)"
    elif action == Action.REQUEUE:
        from .pack import ENV_PACK

        then = ("the job is requeued once its points have all stopped" if os.environ.get(ENV_PACK)
                else "the job is requeued") + "; the next attempt resumes from the latest checkpoint"
    elif cause == Cause.REQUEUED:
        then = "SLURM requeues the job; the next attempt resumes from the latest checkpoint"
    elif gave_up:
        then = f"it is not requeued ({gave_up}); {resume} runs it again"
    elif state == State.FAILED:
        then = f"{resume} runs it again"
    else:
        then = f"{resume} resumes it"
    verb = "failed" if state == State.FAILED and cause in (Cause.FAILED, Cause.NO_SPACE) else "stopped"
    return f"ptslurm: this attempt {verb} for {_WHY.get(cause, str(cause))}" + (f" ({how})" if how else "") + f": {then}"


END_MARGIN_S = float(os.environ.get("PTSLURM_END_MARGIN_S", "10"))  # before the job's end: see _use_allocation


def _use_allocation() -> None:
    """Code that never asks ``should_stop()`` cannot checkpoint on demand: ending it at the
    time-limit signal would throw away the rest of the allocation and save nothing it would
    not have saved itself. So on a time limit it runs on until ``END_MARGIN_S`` before the
    job's end as SLURM reports it (``EndTime``; SLURM then sends SIGTERM, waits KillWait and
    kills), then is recorded and requeued. Any other signal meanwhile (a preemption, a
    cancel, a requeue) ends the wait at once."""
    import time

    if not on_slurm() or not interrupt.never_asked() or interrupt.received() != signal.SIGUSR2:
        return
    if classify(interrupt.Interrupted("probe")) != Cause.TIMEOUT:
        return
    from ..read.state import timestamp

    info = schedulers.in_job().job_info(os.environ["SLURM_JOB_ID"])
    end = timestamp(_local_iso(info.get("EndTime")))
    if end is None:
        return
    until = end - END_MARGIN_S
    if until - time.time() > 1:
        print(f"ptslurm: time limit ahead (job ends {info.get('EndTime')}); the code has not asked "
              f"ptslurm.should_stop() so far, so it keeps running until {END_MARGIN_S:g} s before the end "
              f"(asking it meanwhile stops it at once)", flush=True)
    seen = interrupt.signals_received()
    while time.time() < until and interrupt.signals_received() == seen and not interrupt.heeded():
        time.sleep(min(1.0, max(0.05, until - time.time())))


def _local_iso(text: tp.Optional[str]) -> tp.Optional[str]:
    """scontrol's times (``2026-12-01T10:00:00``, the local time zone) as ISO with offset."""
    import datetime

    if not text or text in ("Unknown", "None"):
        return None
    try:
        return datetime.datetime.fromisoformat(text).astimezone().isoformat()
    except ValueError:
        return None


def _unheeded(record: AttemptRecord, max_requeues: int, held: tp.Any, max_attempts: tp.Optional[int] = None,
              ended: tp.Callable[[], None] = lambda: None, index: int = 0, sweep_dir: Path = Path("SWEEP")) -> None:
    """The watchdog's action for code that did not ask ``should_stop()``: on a time limit,
    use the allocation to its end (``_use_allocation``); then record the attempt, requeue it
    within the caps and end the process; the next attempt resumes from the code's own
    latest checkpoint."""
    _use_allocation()
    if interrupt.heeded():
        return  # the code (imported meanwhile) asked and stops by itself: the main thread records it
    exc = interrupt.Interrupted("stop request not heeded")
    decision = decide(exc, record, max_requeues, max_attempts)
    state, cause, action, progressed, gave_up = decision
    record.update(state=state, cause=cause, ended=now(), action=action, unheeded=True, final=True,
                  progressed=progressed, gave_up=gave_up,
                  error=f"stop request ({cause}) not heeded by the running code: the process was ended; "
                        f"the next attempt resumes from the code's own latest checkpoint")
    run = runtime.active_run()
    how = ("the experiment was still starting: ended by ptslurm" if run is None
           else "the code did not ask ptslurm.should_stop(): ended by ptslurm" if interrupt.never_asked()
           else "the code did not stop within the grace time: ended by ptslurm")
    line = story(decision, index, sweep_dir, how)
    if run is not None:
        sacred_adapter.close_interrupted(run, line)
    else:
        print(line, flush=True)
    if action == Action.REQUEUE:
        try:
            _requeue()
        except Exception:  # noqa: BLE001 - recorded; the scheduler ends the job anyway
            pass
    held.release()
    if action != Action.REQUEUE:
        ended()
    sys.stdout.flush()
    sys.stderr.flush()
    interrupt.end_process(0 if state == State.REQUEUED else 143)


class _CurrentStream:
    """Writes to whatever ``sys.<name>`` is when a record is emitted: sacred's capture while
    the run is on, so that ``logging`` output lands in cout.txt too."""

    def __init__(self, name: str):
        self.name = name

    def write(self, text: str) -> int:
        return getattr(sys, self.name).write(text)

    def flush(self) -> None:
        getattr(sys, self.name).flush()


def route_logging() -> None:
    """Point every logging StreamHandler bound to the process's stdout/stderr (made at import
    time, before sacred's capture replaced them) at the current stream instead."""
    import logging

    streams = {id(sys.__stderr__): "stderr", id(sys.__stdout__): "stdout",
               id(sys.stderr): "stderr", id(sys.stdout): "stdout"}
    loggers = [logging.getLogger()] + [lg for lg in logging.Logger.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger)]
    submitit = logging.getLogger("submitit")
    if submitit.handlers:  # its own handler prints each line; the root's (sacred's) printed it twice
        submitit.propagate = False
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                name = streams.get(id(handler.stream))
                if name:
                    handler.setStream(_CurrentStream(name))


def enter_snapshot(manifest: Manifest, sweep_dir: Path, index: int, storage_dir: tp.Optional[Path] = None) -> Path:
    """Check that the code snapshot is what was submitted, then run from it: nothing of the
    user's live tree is importable, and the working directory is the point's own
    ``<storage_dir>/work/`` (``snapshot.workspace``: the snapshot's folders with its files
    linked in, at the experiment's folder), so that relative reads find the code's files and
    relative writes stay the point's. Without ``storage_dir``, the snapshot's copy of the
    experiment's folder. Returns the experiment file to import: its link in the mirror (so
    that what the code writes beside itself is the point's too), else the snapshot's copy.
    Raises SnapshotError (never retried) when a file changed."""
    from ..records import snapshot

    version = manifest.code_of(manifest.point(index).code_version)
    code = sweep_dir / version.dir
    # the snapshot's modules are compiled from their verified source: a planted .pyc in its
    # __pycache__ never runs, and nothing is written there (the environment's own compiled
    # modules are used as usual: a global pycache prefix would recompile all of torch)
    snapshot.source_only(code)
    if version.sha256:
        snapshot.verify(code, version.sha256, f"to run the new code: `ptslurm resubmit {sweep_dir} "
                                              f"--points {index} --refresh-code`")
    experiment = Path(version.snapshot)
    mirror = PointPaths(storage_dir).work if storage_dir is not None and version.workdir else None
    if mirror is not None:
        os.chdir(snapshot.workspace(code, Path(tp.cast(str, version.workdir)), mirror))
        snapshot.source_only(mirror)
        # imported through its link, whatever it writes beside itself (``__file__``) is the point's
        rel = os.path.relpath(os.path.realpath(experiment), os.path.realpath(code))
        if not rel.startswith("..") and (mirror / rel).is_symlink():
            experiment = mirror / rel
    elif version.workdir:
        os.chdir(version.workdir)
    if version.source_root:
        snapshot.isolate(Path(version.source_root), mirror if mirror is not None else code)
    return experiment


def _create_run(manifest: Manifest, entry: PointEntry, experiment_file: Path,
                record: tp.Optional[AttemptRecord] = None, observe: bool = True,
                on_error: tp.Optional[tp.Callable[[BaseException], str]] = None) -> tp.Any:
    """The sacred Run of this attempt, built from ``experiment_file`` (``enter_snapshot``'s)
    with the point's updates, named configs and seed; ptslurm's FileStorageObserver first (it
    decides the run id, so attempt n of a point is ``sacred/<n>``), the experiment's own
    observers after it."""
    from ..plan import experiment

    storage_dir = entry.path
    _, ex = experiment.load(experiment_file, module_name=manifest.experiment.module,
                            keep_links=experiment_file.is_symlink())
    # the snapshot is not the repository; the submission's git state is recorded below
    ex.save_git_info = False
    updates = dict(entry.updates)
    if entry.seed is not None and entry.seed_source == "ptslurm":
        updates.setdefault("seed", entry.seed)
    if manifest.storage_key:
        updates[manifest.storage_key] = str(storage_dir)
    # config scopes shaped like the seed's allocate a dir under $STORAGE_ROOT while the config
    # is built: let them do it in a throw-away place; the storage dir comes from ptslurm
    with experiment.sandbox(ex, quiet=False):
        run = sacred_adapter.create_run(ex, updates, entry.named_configs)
    sacred_adapter.after_main(run, _returned, on_error)
    if not observe:  # a rank other than 0: exactly one sacred/<n> per attempt
        sacred_adapter.no_observers(run)
        return run
    on_start = (lambda run_id: record.update(sacred_id=run_id)) if record is not None else None
    sacred_adapter.observe_first(run, str(PointPaths(storage_dir).sacred), on_start)
    git = manifest.git
    # sacred's default "fd" capture goes through a tee process whose last lines can miss
    # cout.txt when the run ends; "sys" capture is exact for Python output, and the job's
    # whole stdout/stderr is in the scheduler's log anyway
    sacred_adapter.set_run_info(run, capture_mode=os.environ.get("PTSLURM_CAPTURE_MODE", "sys"),
                                repository=git if git.get("commit") else None,
                                info={"sweep": manifest.name, "point": entry.index, "job_id": job_id(),
                                      "git": git})
    runtime.dump_config(run.config, PointPaths(storage_dir).config)
    return run


def _returned() -> None:
    """The code's main function returned. After ``should_stop()`` told it to stop, that is a
    stop (recorded as such and resumed), not the end of its training, unless it reported
    reaching its budget (``report_progress(..., total=...)``)."""
    interrupt.finishing()
    if interrupt.heeded() and not runtime.budget_done():
        raise ReturnedAfterStop("the code returned after ptslurm.should_stop() was True (its checkpoint saved, "
                                "its budget not reached): this attempt stopped")


def main(argv: tp.Optional[tp.List[str]] = None) -> int:
    """``python -m ptslurm.job SWEEP_DIR INDEX``: the local backend's entry point (and a
    packed point's); ``INDEX`` may list several (``0,1,2``): the points of a packed job."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m ptslurm.job SWEEP_DIR INDEX[,INDEX...]", file=sys.stderr)
        return 2
    try:
        if "," in argv[1]:
            from .pack import parse_indices, run_pack

            codes = run_pack(argv[0], parse_indices(argv[1]))
            return 0 if all(code == 0 for code in codes.values()) else 1
        run_point(argv[0], int(argv[1]))
    except interrupt.Interrupted:  # recorded and said: no traceback
        return _stopped_exit(argv[0], int(argv[1])) if "," not in argv[1] else 1
    except Exception:
        traceback.print_exc()
        return 1
    return 0
