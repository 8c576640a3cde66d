"""The verbs that read: ``status``, ``collect``, ``list``, ``plot`` and ``report``: their
options and what they print. They never write a record or submit a job."""
import argparse
import sys
import time
import typing as tp
from pathlib import Path

from ..errors import PtslurmError, UsageError
from .shared import sweep_arg, sweep_of, warn_damaged, wanted_states


def add_parsers(sub: tp.Any) -> None:
    """This module's verbs and their options."""
    st = sub.add_parser("status", help="one row per point: state, attempts, progress, heartbeat, job",
                        description="State of every point, from the files, reconciled with one squeue/sacct call.",
                        epilog="Example: ptslurm status tiny-c21eec89 --watch")
    sweep_arg(st)
    st.add_argument("--json", action="store_true", help="machine-readable rows")
    st.add_argument("--watch", action="store_true", help="refresh in place until every point has ended")
    st.add_argument("--interval", type=float, default=5.0, metavar="S", help="--watch refresh interval")
    st.add_argument("--state", metavar="STATES", help="only points in these states, comma-separated "
                                                      "(e.g. failed,timeout)")
    st.set_defaults(run=cmd_status)

    co = sub.add_parser("collect", help="results of one or more sweeps: varied keys, state, metrics",
                        description="One row per point: varied config values, state, result, final and best "
                                    "value of every sacred metric, storage dir. Best is the lowest value, or the "
                                    "highest for names like accuracy/score/f1.",
                        epilog="Example: ptslurm collect tiny-c21eec89 --sort loss --format md")
    co.add_argument("sweeps", nargs="+", metavar="SWEEP", help="sweep directories or names")
    co.add_argument("--root", help="storage root for sweep names (default: $STORAGE_ROOT, else ~/ptslurm-runs)")
    co.add_argument("--sort", metavar="METRIC[:min|:max]",
                    help="best first by METRIC (or result:min|max); the direction comes from the name "
                         "(README: best means) unless given")
    co.add_argument("--best", metavar="METRIC[:min|:max]",
                    help="print only the winning point's storage dir; among the completed points unless "
                         "--where state=... chooses others")
    co.add_argument("--columns", "--metrics", dest="columns", metavar="PATTERNS",
                    help="only these columns (comma-separated names or globs, e.g. 'lr,loss/*'; "
                         "index, state and storage_dir stay)")
    co.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                    help="only points whose column KEY (a config key, state, result...) equals VALUE "
                         "(repeatable: all must hold), e.g. --where state=completed --where lr=0.001")
    co.add_argument("--format", choices=["table", "csv", "json", "md"], default="table",
                    help="output format (default: an aligned table)")
    co.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    co.add_argument("--no-cache", action="store_true", help="read every file again (records are cached in the "
                                                            "sweep dir while their files do not change)")
    co.set_defaults(run=cmd_collect)

    li = sub.add_parser("list", help="the sweeps under a root with their counts by state",
                        description="Every sweep under the storage root: name, experiment, executor, "
                                    "creation time and its points counted by state.",
                        epilog="Example: ptslurm list ~/ptslurm-runs")
    li.add_argument("root", nargs="?", help="default: $STORAGE_ROOT, else ~/ptslurm-runs")
    li.add_argument("--experiment", "-e", metavar="NAME", help="only the sweeps of this experiment")
    li.set_defaults(run=cmd_list)

    pl = sub.add_parser("plot", help="learning curves of all points in one figure (needs matplotlib)",
                        description="One curve per point of a sacred metric over its steps, all attempts "
                                    "joined, written as a PNG.",
                        epilog="Example: ptslurm plot tiny-c21eec89 --metric loss -o loss.png")
    sweep_arg(pl)
    pl.add_argument("--metric", required=True, help="a sacred metric name, e.g. loss (`ptslurm collect` "
                                                    "lists them)")
    pl.add_argument("-o", "--output", default=None, metavar="FILE.png", help="default: <sweep>/<metric>.png")
    pl.set_defaults(run=cmd_plot)

    rp = sub.add_parser("report", help="one self-contained HTML page of a sweep (needs plotly)",
                        description="The points table (sortable, filterable), every metric's curves with the "
                                    "steps where an attempt resumed, the varied keys against the ranking "
                                    "metric, each point's attempts as SLURM ran them, the failures grouped by "
                                    "error and the resources used, in one HTML file that opens offline.",
                        epilog="Example: ptslurm report tiny-c21eec89 -o tiny.html --watch")
    sweep_arg(rp)
    rp.add_argument("--metric", default=None, help="the metric that ranks the points, as collect --best takes "
                                                   "it (loss, acc:max); default: the first of a known direction")
    rp.add_argument("-o", "--output", default=None, metavar="FILE.html", help="default: <sweep>/report.html")
    rp.add_argument("--watch", action="store_true", help="rewrite the file as the sweep runs, until it has ended")
    rp.add_argument("--every", type=float, default=30.0, metavar="SECONDS", help="with --watch (default: 30)")
    rp.set_defaults(run=cmd_report)


def cmd_status(args: argparse.Namespace) -> int:
    import json

    from .. import schedulers
    from ..read.state import ended, status_rows, sweep_states
    from ..records import gc_paused
    from . import render
    from ..records import manifests

    sweep_dir, manifest = sweep_of(args)

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
                rows = [r for r in rows if r.state in wanted_states(args.state)]
            if not warned:
                for r in rows:
                    if r.damaged:
                        warn_damaged(r.index, r.damaged)
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


def _waves_stalled(sweep_dir, manifest, states) -> bool:
    from ..submit import submission  # the submission side loads only for a sweep in waves

    return submission.waves_stalled(sweep_dir, manifest, states)


def cmd_collect(args: argparse.Namespace) -> int:
    from . import render
    from ..read import results
    from ..records import manifests

    dirs = [manifests.find_sweep(s, args.root) for s in args.sweeps]
    records, save_cache = results.read_records(dirs, args.root, use_cache=not args.no_cache)
    for r in records:
        warn_damaged(r["index"], r.pop("_damaged", ()))
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


def cmd_list(args: argparse.Namespace) -> int:
    from ..read.state import sweep_states
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


def cmd_plot(args: argparse.Namespace) -> int:
    from . import plot

    sweep_dir, _ = sweep_of(args)
    output = Path(args.output) if args.output else sweep_dir / f"{args.metric.replace('/', '_')}.png"
    fig = plot.plot(sweep_dir, args.metric, output)
    print(f"wrote {output} ({len(fig.axes[0].get_legend_handles_labels()[0])} curves)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import watch, write

    sweep_dir, _ = sweep_of(args)
    if args.every <= 0:
        raise UsageError(f"--every must be a positive number of seconds, not {args.every:g}")
    output = Path(args.output) if args.output else sweep_dir / "report.html"
    if args.watch:
        watch(sweep_dir, output, args.metric, args.every)
    else:
        write(sweep_dir, output, args.metric)
        print(f"wrote {output} ({output.stat().st_size / 1e6:.1f} MB); open it in a browser, offline or not")
    return 0
