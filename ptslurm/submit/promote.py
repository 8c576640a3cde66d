"""Successive halving's decisions, exactly once, without a daemon: read every point's rung and
metric from the files, record the promotions due (``search.json``, under the manifest lock)
BEFORE acting on them, then extend the promoted points to the next rung's budget (the
budget key's new value, a new submission, resumed from their checkpoints) and queue them.
A decision killed half-way is finished by the next one: a point already at the target budget
is not extended again, a job already queued for its submission (found by its comment) or
already run (its status file) is adopted, not queued twice.

Deciders: the sweep command (local sweeps run the rungs in order; ``--wait``), ``ptslurm
promote``, each point's job when it ends, and a small decision job queued after the points'
arrays (``python -m ptslurm.submit.promote SWEEP_DIR``), which queues the next one while points
still run. ``status`` only reads.
"""
import contextlib
import os
import sys
import typing as tp
from pathlib import Path

from ..read import halving
from .. import records, schedulers
from ..records import locks, manifests, writes
from ..errors import SubmissionError, UsageError
from .failpoints import failpoint
from ..records import TERMINAL, Manifest, State
from ..read.results import rung_value
from ..records.recordkit import now

SEARCH = records.SEARCH  # the decisions and each point's metric per rung


def read_log(sweep_dir: Path) -> tp.Dict[str, tp.Any]:
    """The sweep's decisions so far (an empty log when there is none)."""
    data = records.read_json(Path(sweep_dir) / SEARCH)
    data = data if isinstance(data, dict) else {}
    decisions = [d for d in data.get("decisions") or [] if isinstance(d, dict)]
    values = data.get("values") if isinstance(data.get("values"), dict) else {}
    return {**data, "decisions": decisions, "values": values}


def search_of(manifest: Manifest) -> halving.Search:
    search = halving.from_json(manifest.search)
    if search is None:
        raise UsageError(f"sweep {manifest.name!r} has no successive halving (a sweep file's `halving:` section); "
                         f"to train points longer use `ptslurm extend`")
    return search


def views(manifest: Manifest, search: halving.Search, rows: tp.Sequence[tp.Any]) -> tp.List[halving.View]:
    """Each point as the rules see it (a point whose budget is no rung's, extended by hand,
    has left the search)."""
    brackets = halving.brackets_of(search, len(manifest.points))
    out = []
    for entry, row in zip(manifest.points, rows):
        rung = search.rung_of(entry.updates.get(search.budget))
        if rung is None:
            continue
        value = rung_value(entry, row.status, search.metric) if row.state == State.COMPLETED else None
        out.append(halving.View(entry.index, brackets[entry.index], rung, row.state in TERMINAL, value))
    return out


def _so_far(log: tp.Mapping[str, tp.Any]) -> tp.Tuple[tp.Dict[tp.Tuple[int, int], tp.Set[int]],
                                                      tp.Dict[tp.Tuple[int, int], float]]:
    promoted: tp.Dict[tp.Tuple[int, int], tp.Set[int]] = {}
    for d in log["decisions"]:
        promoted.setdefault((int(d["bracket"]), int(d["rung"])), set()).update(int(i) for i in d["points"])
    values = {}
    for key, value in log["values"].items():
        index, _, rung = key.partition(":")
        values[(int(index), int(rung))] = float(value)
    return promoted, values


@contextlib.contextmanager
def _outside_job() -> tp.Iterator[None]:
    """sbatch from inside a job would hand the job's SLURM_* settings to the jobs it submits."""
    saved = {k: v for k, v in os.environ.items()
             if k.startswith(("SLURM_", "SBATCH_", "SRUN_")) and k != "SLURM_CONF"}
    for key in saved:
        del os.environ[key]
    try:
        yield
    finally:
        os.environ.update(saved)


def decide(sweep_dir: tp.Union[str, Path], make: tp.Any = None, by: str = "promote",
           own_job: tp.Optional[str] = None) -> tp.List[int]:
    """Record and carry out the promotions due now (and finish those a killed decider left).
    On SLURM the promoted points are queued (and a decision job while points still run);
    returns the points a local sweep must run here now (none on SLURM)."""
    sweep_dir = Path(sweep_dir)
    manifests.require_own(sweep_dir, "decides promotions in")
    with _outside_job(), locks.manifest_lock(sweep_dir):
        return _decide(sweep_dir, make, by, own_job)


def _decide(sweep_dir: Path, make: tp.Any, by: str, own_job: tp.Optional[str]) -> tp.List[int]:
    from ..read.state import sweep_states
    from .submission import scheduler_of

    manifest = manifests.read_manifest(sweep_dir)
    if not manifest.search and not manifest.optuna:
        search_of(manifest)  # the UsageError that says what this sweep is
    log = read_log(sweep_dir)
    if log.get("stopped"):
        if by != "promote":
            return []  # cancelled: only `ptslurm promote` goes on
        del log["stopped"]
    scheduler = scheduler_of(sweep_dir, manifest, make)
    on_slurm = scheduler.keeps_queue
    rows = sweep_states(sweep_dir, manifest, scheduler)
    here: tp.List[int] = []
    if manifest.search:
        here += _halve(sweep_dir, manifest, rows, log, make, by)
    if manifest.optuna:
        from ..plan import optuna_search

        manifest, start = optuna_search.step(sweep_dir, manifest, rows, log,
                                             lambda: writes.atomic_write_json(sweep_dir / SEARCH, log), failpoint,
                                             by)
        if on_slurm and start:
            _queue(sweep_dir, manifest, start, make)
        elif not on_slurm:
            here += start
    if on_slurm:
        _decision_job(sweep_dir, log, make, own_job)
    return here


def _halve(sweep_dir: Path, manifest: Manifest, rows: tp.Sequence[tp.Any], log: tp.Dict[str, tp.Any], make: tp.Any,
           by: str) -> tp.List[int]:
    """Successive halving's part of a decision: record the promotions due, then act on
    every decision not acted on yet; the points to run here (a local sweep)."""
    from ..read.results import direction

    search = search_of(manifest)
    seen = views(manifest, search, rows)
    for v in seen:  # what each point reached at its rung, kept after it moves on
        if v.ended and v.value is not None:
            log["values"].setdefault(f"{v.point}:{v.rung}", v.value)
    promoted, values = _so_far(log)
    due = halving.decide(search, seen, promoted, values, direction(search.metric)[1])
    for p in due:
        log["decisions"].append({"id": len(log["decisions"]) + 1, "bracket": p.bracket, "rung": p.rung,
                                 "points": list(p.points), "budget": search.rungs[p.rung + 1],
                                 "values": {str(i): values.get((i, p.rung)) for i in p.points},
                                 "reached": sum(1 for v in seen if v.bracket == p.bracket and
                                                (v.rung > p.rung or (v.rung == p.rung and v.ended))),
                                 "by": by, "time": now(), "acted": False})
    if due or log["values"]:
        writes.atomic_write_json(sweep_dir / SEARCH, log)  # recorded before it is acted on
        failpoint("recorded")
    here: tp.List[int] = []
    for d in log["decisions"]:
        if not d.get("acted"):
            try:
                here += _act(sweep_dir, d, search, make)
            except _Later:
                continue  # the submit limit: the next decider queues the rest
            d["acted"] = True
            writes.atomic_write_json(sweep_dir / SEARCH, log)
            failpoint("acted")
    return here


def _act(sweep_dir: Path, decision: tp.Mapping[str, tp.Any], search: halving.Search, make: tp.Any) -> tp.List[int]:
    """Extend the decision's points to its budget (those not extended yet) and, on SLURM,
    queue those without a job for their new submission; the points to run here otherwise."""
    from .lifecycle import _resubmit

    manifest = manifests.read_manifest(sweep_dir)
    queued = schedulers.of(manifest.executor).keeps_queue  # else the next rung runs here
    target = search.rungs[int(decision["rung"]) + 1]
    chosen = [int(i) for i in decision["points"]]
    def below(i: int) -> bool:  # (a point a later decision extended further is past this one)
        had = search.budget_of(manifest.points[i].updates.get(search.budget))
        return had is None or had < target

    fresh = [i for i in chosen if below(i)]
    if fresh:
        book, _ = _resubmit(sweep_dir, fresh, False, True, make, updates={search.budget: search.value(target)},
                            by=f"halving decision {decision['id']}")
        # no job for the new budget yet: waiting (a submit limit may keep some waiting a while)
        manifest = book.save(book.manifest.with_jobs({i: None for i in fresh}) if queued else book.manifest)
        failpoint("extended")
    if not queued:
        return [i for i in chosen if _not_started(manifest, i)]
    if not _queue(sweep_dir, manifest, chosen, make):
        raise _Later()
    return []


def _not_started(manifest: Manifest, index: int) -> bool:
    entry = manifest.points[index]
    return records.read_status(entry.path).submission < records.read_intent(entry.path).submission


def _queue(sweep_dir: Path, manifest: Manifest, chosen: tp.Sequence[int], make: tp.Any) -> bool:
    """Queue the points of ``chosen`` that have no job for their current submission: a job a
    killed decider queued (its comment names the point) or that already ran (the status file
    names it) is recorded instead. Under a submit limit, as many as fit (the next decider
    queues the rest). True when every point has its job."""
    from .submission import backends_of, submit_marker, units

    def waiting(entry: records.PointEntry) -> bool:
        return not entry.job_id or entry.job_id in entry.job_history

    need = [i for i in chosen if waiting(manifest.points[i])]
    if not need:
        return True
    book = _Book(sweep_dir, manifest)
    scheduler = backends_of(sweep_dir, manifest, make)
    marker = submit_marker(sweep_dir)
    found = scheduler.main.marked_jobs(marker)
    adopted = {}
    for i in need:
        entry = manifest.points[i]
        asked = records.read_intent(entry.path).submission
        ran = next((a.job_id for a in records.read_status(entry.path).attempts
                    if a.submission == asked and a.job_id), None)
        job = ran or (found.get(i) if found.get(i) not in entry.job_history else None)
        if job:
            adopted[i] = job
    if adopted:
        scheduler.ensure_pickles(manifest, {i: j for i, j in adopted.items() if j in found.values()})
        book.set_jobs(adopted)
    rest = [i for i in need if i not in adopted]
    todo = units(book.manifest, rest)
    limit = scheduler.main.submit_limit() if rest else None
    if limit is not None:  # the cluster's submit limit: what fits, a slot kept for the decision job
        free = limit - (scheduler.main.queued_count() or 0)
        todo = todo if len(todo) <= free else todo[:max(free - 1, 0)]
    if todo:
        scheduler.submit(book, todo, marker=marker)
    return sum(len(u) for _, u in todo) == len(rest)


class _Later(Exception):
    """A decision's points did not all fit under the cluster's submit limit."""


class _Book(manifests.ManifestBook):
    def set_jobs(self, ids: tp.Mapping[int, tp.Optional[str]]) -> None:
        failpoint("queued")  # crash tests: sbatch answered, the job ids not recorded yet
        super().set_jobs(ids)


def _decision_job(sweep_dir: Path, log: tp.Dict[str, tp.Any], make: tp.Any, own_job: tp.Optional[str]) -> None:
    """While points of the search still run: a decision job queued after their arrays (one
    at a time; ``own_job``: the decision job calling, which is about to end)."""
    from ..read.state import sweep_states
    from .submission import backends_of, submit_marker

    manifest = manifests.read_manifest(sweep_dir)
    scheduler = backends_of(sweep_dir, manifest, make)
    rows = sweep_states(sweep_dir, manifest, scheduler.main)
    going = sorted({str(manifest.points[r.index].job_id).split("_")[0] for r in rows
                    if r.state not in TERMINAL and manifest.points[r.index].job_id})
    job = log.get("job")
    try:
        if job and job != own_job and job in scheduler.main.queue_states([job]):
            return
        if not going:
            return
        log["job"] = scheduler.main.submit_wave_job(going, submit_marker(sweep_dir), what="promote")
    except SubmissionError as exc:  # the next decider (a point's end, --wait, promote) tries again
        print(f"ptslurm: warning: no decision job queued: {exc}", file=sys.stderr, flush=True)
        return
    writes.atomic_write_json(sweep_dir / SEARCH, log)


def run_local(sweep_dir: Path, jobs: int, on_change: tp.Callable[[tp.Any], None] = lambda rows: None,
              by: str = "sweep") -> None:
    """A local search: decide, run the promoted points here, until no promotion is due."""
    from .submission import run_local as run_points

    while True:
        todo = decide(sweep_dir, by=by)
        if not todo:
            return
        book = manifests.ManifestBook(sweep_dir, manifests.read_manifest(sweep_dir))
        run_points(book, jobs, todo, on_change=on_change)


def extend(sweep_dir: Path, indices: tp.Sequence[int], tokens: tp.Sequence[str], budget_key: tp.Optional[str] = None,
           make: tp.Any = None) -> tp.Tuple[str, tp.Any, tp.Dict[int, str]]:
    """``ptslurm extend``: continue ended points from their checkpoints with a larger value
    of the budget key (``tokens``: one ``KEY=VALUE`` in sacred's syntax), as a new
    submission in the same storage dirs, running the code they ran. Any other key is refused:
    it would not be the same training. Returns (key, value, index -> job)."""
    from ..plan import grid
    from .lifecycle import current_value, resubmit

    manifest = manifests.read_manifest(sweep_dir)
    block = grid.parse_with(tuple(tokens))
    if block.axes or block.named or not block.fixed:
        raise UsageError("extend takes one KEY=VALUE after `with`: the budget's new value, e.g. "
                         "with steps=3000 (a list, a named config or a sweep is a new sweep)")
    declared = manifest.budget_key or (manifest.search or {}).get("budget")
    if budget_key and declared and budget_key != declared:
        raise UsageError(f"--budget-key {budget_key}: sweep {manifest.name!r} declared {declared!r} as its budget")
    key = budget_key or declared
    if key is None:
        raise UsageError("say which config key is the training's budget: --budget-key KEY (e.g. steps or "
                         "trainer.stop_trigger); only that key may grow")
    others = [k for k in block.fixed if k != key]
    if others:
        raise UsageError(f"extend changes only the budget ({key}); {others[0]!r} would not be the same training: "
                         f"start a new sweep (or `ptslurm resubmit --refresh-code` for new code)")
    if key not in block.fixed:
        raise UsageError(f"give the budget's new value: with {key}=...")
    value = block.fixed[key]
    number = halving.budget_number(value)
    if number is None:
        raise UsageError(f"{key}={value!r} is no budget: give a number, or (number, 'unit') like (30000, 'iteration')")
    for i in indices:
        had = halving.budget_number(current_value(manifest.point(i), key))
        if had is not None and not number > had:
            raise UsageError(f"point {i} already trains to {key}={had}: extend only trains longer (give more than {had})")
    if not manifest.budget_key:
        with locks.manifest_lock(sweep_dir):
            manifests.write_manifest(sweep_dir, manifests.read_manifest(sweep_dir).replace(budget_key=key))
    return key, value, resubmit(sweep_dir, indices, keep_code=True, make=make, updates={key: value})


ENV_DECIDER = "PTSLURM_DECIDER"  # set by a point's job that runs this after its point ended


def main(sweep_dir: str) -> int:
    """``python -m ptslurm.submit.promote SWEEP_DIR``: the body of the decision job, and what a
    point's job runs when its point ended (``ending.after``)."""
    point_job = os.environ.get(ENV_DECIDER)
    own = os.environ.get("SLURM_JOB_ID")
    decide(sweep_dir, by=f"job {point_job}" if point_job else f"decision job {own}", own_job=None if point_job else own)
    return 0


if __name__ == "__main__":  # run by its own name: its functions are the module's (pickles, coverage), not __main__'s
    from ptslurm.submit import promote as _self

    sys.exit(_self.main(sys.argv[1]))
