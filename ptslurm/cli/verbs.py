"""The command line's verbs: one ``cmd_<name>(args)`` per subcommand, called by ``cli.main``
with the parsed arguments; they print what the user sees and return the exit code.

Start-up imports neither torch nor sacred: each verb imports what it needs when it runs.
"""
import argparse
import json
import sys
import time
import typing as tp
from pathlib import Path

from .. import schedulers
from ..errors import PtslurmError, UsageError
from ..read.state import ended, status_rows, sweep_states
from ..records import gc_paused

from .requests import one_line as _one_line, resource_changes as _resource_changes, resources as _resources


def cmd_sweep(args: argparse.Namespace, argv: tp.List[str], updates: tp.List[str]) -> int:
    from ..plan import grid
    from . import render
    from ..records import snapshot
    from ..plan import profile as profiles
    from ..submit import sweep as sweeps

    prof_path = profiles.find(args.profile)
    prof = profiles.load(prof_path)
    if prof_path is not None:
        Printer().message(profiles.describe(prof_path, prof))
    key = args.storage_key if args.storage_key is not None else prof.get("storage_key")
    request = sweeps.SweepRequest(
        experiment=args.experiment, with_tokens=tuple(updates), sweep_file=args.sweep_file,
        name=args.name, root=args.root or prof.get("root"), storage_key=key or None,
        executor=args.executor or prof.get("executor") or "auto",
        jobs=args.jobs if args.jobs is not None else prof.get("jobs") or 1,
        resources=_resources(args, prof, prof_path), dry_run=args.dry_run, argv=tuple(argv),
        max_snapshot_mb=args.max_snapshot_mb if args.max_snapshot_mb is not None else snapshot.DEFAULT_MAX_MB,
        max_points=args.max_points if args.max_points is not None else grid.DEFAULT_MAX_POINTS,
        keep_duplicates=args.keep_duplicates, note=_one_line(args.note, "--note"),
        notify=_one_line(args.notify, "--notify"), halving=args.halving,
    )
    outcome = sweeps.run(request, wait=args.wait, events=Printer())
    if args.dry_run:
        p = outcome.plan
        if args.json:
            print(json.dumps(render.dry_run_json(p), indent=2))
        elif schedulers.of(p.executor).keeps_queue:
            from ..schedulers.backends import SlurmBackend
            from ..schedulers.slurmtext import ranges

            scripts = []
            for res, members in p.group_resources():
                tasks = -(-len(members) // res.points_per_job)
                label = (f"points {ranges(members)}: {tasks} array task(s)"
                         + (f" of up to {res.points_per_job} points" if res.points_per_job > 1 else ""))
                scripts.append((label, SlurmBackend(p.sweep_dir, res, p.name).batch_script(tasks)))
            print(render.dry_run(p, scripts, None))
        else:
            from ..schedulers.backends import LocalBackend

            print(render.dry_run(p, None, LocalBackend(p.sweep_dir, request.jobs).command("INDEX")))
        return 0
    if args.json:
        print(json.dumps(render.summary_json(outcome), indent=2))
    else:
        print(outcome.sweep_dir)
    if outcome.rows is not None:
        sweeps.check_finished(outcome.rows, tp.cast(tp.Any, outcome.sweep_dir))
    return 0


class Printer:
    """``sweep.Events`` for a terminal: messages and warnings on stderr; the progress line
    rewritten in place on a terminal, printed on change otherwise (CI logs)."""

    def __init__(self) -> None:
        self.last = ""
        self.tty = sys.stderr.isatty()

    def message(self, text: str) -> None:
        print(f"ptslurm: {text}", file=sys.stderr)

    def warning(self, text: str) -> None:
        print(f"ptslurm: warning: {text}", file=sys.stderr)

    def progress(self, rows: tp.Sequence[tp.Any], final: bool = False) -> None:
        from .render import counts_line

        text = counts_line(rows, len(rows), 24)
        if self.tty:  # a line wider than the terminal wraps and \r no longer rewrites it
            from .render import terminal_width

            text = text[: (terminal_width(100) or 100) - 1]
        if text == self.last:
            if final and self.tty:
                sys.stderr.write("\n")
            return
        self.last = text
        sys.stderr.write("\r\033[K" + text + ("\n" if final else "") if self.tty else text + "\n")
        sys.stderr.flush()


def _sweep(args: argparse.Namespace) -> tp.Tuple[tp.Any, tp.Any]:
    from ..records import manifests

    path = manifests.find_sweep(args.sweep, args.root)
    return path, manifests.read_manifest(path)


def _warn_damaged(index: int, paths: tp.Iterable[str]) -> None:
    from .render import damaged

    for path in paths:
        print(f"ptslurm: warning: {damaged(index, path)}", file=sys.stderr)


def _waves_stalled(sweep_dir, manifest, states) -> bool:
    from ..submit import submission  # the submission side loads only for a sweep in waves

    return submission.waves_stalled(sweep_dir, manifest, states)


def cmd_status(args: argparse.Namespace) -> int:
    from . import render
    from ..records import manifests

    sweep_dir, manifest = _sweep(args)

    scheduler = schedulers.of(manifest.executor)
    available: tp.Optional[bool] = scheduler.slurm_available()  # for the warning; the first sweep_states reuses it
    if not available and scheduler.keeps_queue:
        print("ptslurm: warning: the SLURM controller did not answer: states come from the files alone "
              "(a job that ended without a word still shows as running or queued)", file=sys.stderr)
    warned = False
    while True:
        with gc_paused():  # thousands of acyclic rows: nothing for the cycle collector to find
            states = sweep_states(sweep_dir, manifest, available=available)
            available = None
            if not warned and manifest.waves and _waves_stalled(sweep_dir, manifest, states):  # status only reads
                print(f"ptslurm: points wait for a wave and no wave job is queued to submit them: "
                      f"`ptslurm next-wave {sweep_dir}` submits the next one", file=sys.stderr)
            rows = status_rows(manifest, states)
            if args.state:
                rows = [r for r in rows if r.state in _states(args.state)]
            if not warned:
                for r in rows:
                    if r.damaged:
                        _warn_damaged(r.index, r.damaged)
                warned = True
            if args.json:  # (successive halving: each point's rung and where the search left it)
                extra = {i: {"rung": rung, "halving": said} for i, (rung, said) in
                         enumerate(_standings(sweep_dir, manifest, states) if manifest.search else [])}
                print(json.dumps([{**r.to_json(), **extra.get(r.index, {})} for r in rows], indent=2))
            else:
                standings = _standings(sweep_dir, manifest, states) if manifest.search else None
                text = render.status(manifest, rows, rungs=None if standings is None else {
                    i: f"{rung} {said}".strip() if rung is not None else "-" for i, (rung, said) in enumerate(standings)})
                if standings is not None:
                    from ..read.halving import summary

                    text += "\n" + summary(manifest.search, standings)
                if args.watch and sys.stdout.isatty():
                    sys.stdout.write("\033[H\033[J")
                print(text, flush=True)
        if not args.watch or ended(rows):
            return 0
        time.sleep(args.interval)
        manifest = manifests.read_manifest(sweep_dir)  # waves and promotions add jobs as they go


def _standings(sweep_dir: tp.Any, manifest: tp.Any, states: tp.Any) -> tp.List[tp.Tuple[tp.Optional[int], str]]:
    """Each point's rung and where successive halving left it (``halving.standing``)."""
    from .. import records
    from ..read.halving import budget_number, standing

    key = manifest.search.get("budget")
    return standing(manifest.search, records.read_json(sweep_dir / records.SEARCH),
                    [(budget_number(manifest.points[r.index].updates.get(key)), r.state.value) for r in states])


def _states(text: str) -> tp.Set[str]:
    from ..records import State

    wanted = {s.strip().lower() for s in text.split(",") if s.strip()}
    known = {s.value for s in State}
    unknown = sorted(wanted - known)
    if unknown or not wanted:
        raise UsageError(f"--state {text!r}: unknown state {', '.join(unknown) or '(none given)'}; "
                         f"use {', '.join(sorted(known))}")
    return wanted


def _selected(args: argparse.Namespace, sweep_dir: tp.Any, manifest: tp.Any,
              indices: tp.Optional[tp.List[int]] = None) -> tp.List[int]:
    """The points a verb acts on: ``--points`` (or ``indices``, default all), narrowed by
    ``--state`` (the states `status` shows) and ``--where`` (the columns `collect` shows)."""
    from ..submit import lifecycle
    from ..read import results

    chosen = lifecycle.select_points(manifest, getattr(args, "points", None)) if indices is None else indices
    if getattr(args, "state", None):
        wanted = _states(args.state)
        states = sweep_states(sweep_dir, manifest)
        chosen = [i for i in chosen if states[i].state in wanted]
    if getattr(args, "where", None):
        records, _ = results.read_records([sweep_dir], getattr(args, "root", None))
        matching = {r["index"] for r in results.where(records, args.where)}
        chosen = [i for i in chosen if i in matching]
    return chosen


def _filtered(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "state", None) or getattr(args, "where", None))


def cmd_collect(args: argparse.Namespace) -> int:
    from . import render
    from ..read import results
    from ..records import manifests

    dirs = [manifests.find_sweep(s, args.root) for s in args.sweeps]
    records, save_cache = results.read_records(dirs, args.root, use_cache=not args.no_cache)
    for r in records:
        _warn_damaged(r["index"], r.pop("_damaged", ()))
    if args.where:
        records = results.where(records, args.where)
    if args.best:
        # the winner is a finished training unless asked otherwise: a point that failed, or
        # was queued again, may hold a better value of a run that is not done
        chose_states = any(w.partition("=")[0].strip() == "state" for w in args.where)
        if not chose_states:
            records = [r for r in records if r.get("state") == "completed"]
            if not records:
                raise UsageError(f"no point has completed yet, so none is the best by {args.best!r}; "
                                 f"--where state=STATE ranks the points in another state")
        ranking = results.rank(records, args.best)
        if not isinstance(ranking.records[0].get(ranking.key), (int, float)):
            raise UsageError(f"no {'' if chose_states else 'completed '}point reported {args.best!r} yet")
        among = "the points --where chose" if chose_states else f"the {len(records)} completed point(s)"
        print(f"ptslurm: {ranking.note()}; among {among}", file=sys.stderr)
        print(ranking.records[0]["storage_dir"])
        save_cache()
        return 0
    if args.sort:
        ranking = results.rank(records, args.sort)
        print(f"ptslurm: {ranking.note()}", file=sys.stderr)
        records = ranking.records
    if args.columns:
        records = results.select_columns(records, args.columns.split(","))
    text = render.records(records, args.format, one_sweep=len(dirs) == 1)
    if args.output:

        try:
            Path(args.output).write_text(text)
        except OSError as exc:
            raise UsageError(f"cannot write -o {args.output!r} ({exc.strerror or exc}); give a file in a "
                             f"folder you can write") from None
        print(f"wrote {len(records)} rows to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    save_cache()
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from ..submit import lifecycle

    sweep_dir, manifest = _sweep(args)
    chosen = _selected(args, sweep_dir, manifest)
    if not chosen and _filtered(args):
        print("no point matches --state/--where: nothing cancelled")
        return 0
    done = lifecycle.cancel(sweep_dir, chosen)
    print(f"cancelled {len(done)} point(s)" + (f": {', '.join(map(str, done))}" if done else
                                               " (nothing was queued or running)"))
    return 0


def cmd_resubmit(args: argparse.Namespace) -> int:
    from ..submit import lifecycle
    from ..read import results
    from ..records import RETRYABLE

    sweep_dir, manifest = _sweep(args)
    if not (args.failed or args.points or _filtered(args)):
        raise UsageError("say which points: --failed, --points LIST, --state STATES or --where KEY=VALUE")
    if args.failed:
        indices = _selected(args, sweep_dir, manifest,
                            [r.index for r in sweep_states(sweep_dir, manifest) if r.state in RETRYABLE])
    else:
        indices = _selected(args, sweep_dir, manifest)
    if not indices:
        print("nothing to resubmit: " + ("no point matches --state/--where" if _filtered(args) and not args.failed
                                         else "no point failed"), file=sys.stderr)
        return 0
    changes = _resource_changes(args)
    jobs = lifecycle.resubmit(sweep_dir, indices, refresh_code=args.refresh_code, keep_code=args.keep_code,
                              resources=changes)
    if changes:
        from ..records.manifests import read_manifest

        asked = sorted({lifecycle.describe_request(read_manifest(sweep_dir).resources_of(i)) for i in jobs})
        print(f"the resubmitted points ask for: {'; '.join(asked)}")
    shared = {j: sum(1 for x in jobs.values() if x == j) for j in jobs.values()}
    print(f"resubmitted {len(jobs)} point(s): " + ", ".join(f"{i} ({j}" + (f", shared by {shared[j]} points)"
                                                                         if shared[j] > 1 else ")")
                                                            for i, j in sorted(jobs.items())))
    if schedulers.of(manifest.executor).keeps_queue and any(manifest.resources_of(i).points_per_job > 1 for i in jobs):
        print("packed points are packed again among the resubmitted ones (--points-per-job of their group); "
              "resubmit one point alone to give it a job of its own")
    return 0




def cmd_plot(args: argparse.Namespace) -> int:
    from . import plot

    sweep_dir, _ = _sweep(args)
    output = Path(args.output) if args.output else sweep_dir / f"{args.metric.replace('/', '_')}.png"
    fig = plot.plot(sweep_dir, args.metric, output)
    print(f"wrote {output} ({len(fig.axes[0].get_legend_handles_labels()[0])} curves)")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from . import render
    from ..read import results
    from ..records import manifests, storage

    root = storage.resolve_root(args.root)
    rows = []
    for sweep_dir in results.sweeps_under(root):
        try:
            manifest = manifests.read_manifest(sweep_dir)
        except PtslurmError as exc:
            rows.append([sweep_dir.name, "?", "?", "?", f"unreadable: {exc}"])
            continue
        if args.experiment and manifest.experiment.name != args.experiment:
            continue
        rows.append(render.sweep_row(manifest, sweep_states(sweep_dir, manifest)))
    if not rows:
        print(f"no sweeps under {root}" + (f" of experiment {args.experiment!r}" if args.experiment else ""))
        return 0
    print(render.sweeps(rows))
    return 0


def cmd_completion(args: argparse.Namespace) -> int:
    from .completion import script

    sys.stdout.write(script(args.shell))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from ..records import manifests
    from ..job.housekeeping import delete

    sweep_dir = manifests.find_sweep(args.sweep, args.root)
    paths = delete(sweep_dir, yes=args.yes)
    for path in paths:
        print(("deleted " if args.yes else "would delete ") + str(path))
    if not args.yes:
        print(f"ptslurm: nothing was deleted; to delete these {len(paths)} folders: "
              f"ptslurm delete {sweep_dir} --yes", file=sys.stderr)
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from ..plan.profile import init

    for path in init(Path(args.directory), force=args.force):
        print(f"wrote {path}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from ..submit import lifecycle

    sweep_dir, manifest = _sweep(args)
    try:
        lifecycle.run_here(sweep_dir, manifest, args.point, pdb=args.pdb, refresh_code=args.refresh_code,
                        keep_code=args.keep_code)
    except PtslurmError:
        raise
    except Exception as exc:  # the run's own failure: its traceback was printed by sacred
        print(f"ptslurm: point {args.point} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_hold(args: argparse.Namespace, release: bool = False) -> int:
    from ..submit import lifecycle

    sweep_dir, manifest = _sweep(args)
    jobs = lifecycle.hold(sweep_dir, manifest, _selected(args, sweep_dir, manifest), release=release)
    verb = "released" if release else "held"
    print(f"{verb} {len(jobs)} job(s)" + (f": {', '.join(jobs)}" if jobs else " (no chosen point is queued)"))
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    return cmd_hold(args, release=True)


def cmd_note(args: argparse.Namespace) -> int:
    from ..records import locks, manifests

    sweep_dir, manifest = _sweep(args)
    if args.text is None:
        print(manifest.note or "(no note)")
        return 0
    text = _one_line(args.text, "the note") if args.text else None
    manifests.require_own(sweep_dir, "notes")
    with locks.manifest_lock(sweep_dir):
        current = manifests.read_manifest(sweep_dir)
        manifests.ManifestBook(sweep_dir, current).save(current.replace(note=text))
    print(f"{manifest.name}: " + (f"note set: {text}" if text else "note removed"))
    return 0
