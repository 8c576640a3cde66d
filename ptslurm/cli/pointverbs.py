"""The verbs that read one point's (or the failed points') files: ``logs``, ``failures``,
``show`` and ``command``: their options and what they print."""
import argparse
import sys
import time
import typing as tp

from .argvalues import TAIL_DEFAULT, TAIL_FROM_MB
from .shared import filters, selected, sweep_arg, sweep_of


def add_parsers(sub: tp.Any) -> None:
    """This module's verbs and their options."""
    lo = sub.add_parser("logs", help="a point's captured output (and traceback when it failed)",
                        description="What a point's run printed (sacred's cout.txt of the attempt, logging "
                                    "included), else the scheduler's or the local log; the traceback of a "
                                    "failed attempt.",
                        epilog="Example: ptslurm logs tiny-c21eec89 3 --attempt 1")
    sweep_arg(lo)
    lo.add_argument("point", type=int, help="point index (see `ptslurm status`)")
    lo.add_argument("--attempt", type=int, help="attempt number, from 1 (default: the latest)")
    lo.add_argument("--rank", type=int, default=0, help="a rank of a distributed point (default 0, whose "
                                                        "output sacred captures)")
    lo.add_argument("--follow", "-f", action="store_true", help="print the live log (all attempts) and keep "
                                                                 "printing until the point ends")
    lo.add_argument("--tail", "-n", type=int, metavar="N",
                    help=f"only the last N lines (default: all, or the last {TAIL_DEFAULT} of a log over "
                         f"{TAIL_FROM_MB} MB; 0: all)")
    lo.set_defaults(run=cmd_logs)

    fa = sub.add_parser("failures", help="every failed point of a sweep, grouped by error",
                        description="The points that failed, timed out or were given up on, grouped by "
                                    "their error, with the user's part of one traceback per group (as seml's "
                                    "print-fail-trace).",
                        epilog="Example: ptslurm failures tiny-c21eec89")
    sweep_arg(fa)
    filters(fa, states=False)
    fa.set_defaults(run=cmd_failures)

    sh = sub.add_parser("show", help="print one point's config",
                        description="One point's config as its job builds it: the resolved config.json of its "
                                    "latest attempt, else its updates, named configs and seed from the manifest.",
                        epilog="Example: ptslurm show tiny-c21eec89 3")
    sweep_arg(sh)
    sh.add_argument("point", type=int, help="point index (see `ptslurm status`)")
    sh.set_defaults(run=cmd_show)

    cm = sub.add_parser("command", help="the shell command that runs one point by hand, outside ptslurm",
                        description="Print `python EXP with ...`: the point's named configs and updates in "
                                    "sacred's syntax and its seed, so that the command builds the point's config "
                                    "(the storage dir is left to the experiment).",
                        epilog="Example: ptslurm command tiny-c21eec89 3 --snapshot")
    sweep_arg(cm)
    cm.add_argument("point", type=int, help="point index (see `ptslurm status`)")
    cm.add_argument("--snapshot", action="store_true",
                    help="run the code the point ran (its snapshot) instead of the experiment as it is now")
    cm.set_defaults(run=cmd_command)


def cmd_logs(args: argparse.Namespace) -> int:
    import os

    from ..records import Cause
    from ..submit import lifecycle
    from .. import records
    from ..records import TERMINAL, State

    sweep_dir, manifest = sweep_of(args)
    entry = manifest.point(args.point)
    path, chosen, note = lifecycle.log_paths(sweep_dir, manifest, args.point, args.attempt, live=args.follow,
                                          rank=args.rank)
    if note:
        print(note, file=sys.stderr)
    from ..read import logs

    try:
        size = os.path.getsize(path)
    except OSError:
        size = 0
    tail = args.tail
    if tail is None and size > TAIL_FROM_MB * 1e6 and not args.follow:
        tail = TAIL_DEFAULT
        print(f"ptslurm: {path} is {size / 1e6:.0f} MB: showing its last {tail} lines (--tail 0 for all)",
              file=sys.stderr)
    offset = logs.tail_offset(path, tail) if tail else 0
    start = offset
    seen, frames = logs.Recent(), logs.Frames()
    while True:
        offset = logs.stream(path, offset, sys.stdout, seen, frames)
        if not args.follow or records.read_status(entry.path).state in TERMINAL:
            break
        time.sleep(1)
    if chosen is not None and chosen.traceback and chosen.state in (State.FAILED, State.REQUEUED) \
            and chosen.cause == Cause.FAILED:
        if offset == start:
            print(f"(no captured output at {path})")
        if seen.has_traceback_of(chosen.error):  # sacred printed it already: once is enough
            print(f"--- attempt {chosen.attempt} failed: {chosen.error} (traceback above) ---")
        else:
            print(f"--- attempt {chosen.attempt} failed ---")
            sys.stdout.write(logs.user_traceback(chosen.traceback))
    elif offset == start:
        print(f"(no output yet for point {args.point}: {path})")
    return 0


def cmd_failures(args: argparse.Namespace) -> int:
    from ..read.state import failure_groups, sweep_states
    from ..read import logs

    sweep_dir, manifest = sweep_of(args)
    chosen = set(selected(args, sweep_dir, manifest))
    groups = failure_groups(r for r in sweep_states(sweep_dir, manifest) if r.index in chosen)
    if not groups:
        print(f"no point of {manifest.name} failed")
        return 0
    for why, rows in groups:
        states = sorted({str(r.state) for r in rows})
        print(f"{len(rows)} point(s) {'/'.join(states)}: {why}")
        print(f"  points {', '.join(str(r.index) for r in rows)}")
        first = rows[0].latest
        if first is not None and first.traceback:
            for line in logs.user_traceback(first.traceback).rstrip().splitlines():
                print(f"    {line}")
        print(f"  see: ptslurm logs {sweep_dir} {rows[0].index}; then: ptslurm resubmit {sweep_dir} --points "
              f"{','.join(str(r.index) for r in rows)}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    import json

    from ..submit import lifecycle
    from . import render

    sweep_dir, manifest = sweep_of(args)
    config, source = lifecycle.point_config(manifest, args.point)
    print(render.point_header(args.point, manifest, source), file=sys.stderr)
    print(json.dumps(config, indent=2, sort_keys=False))
    return 0


def cmd_command(args: argparse.Namespace) -> int:
    from ..submit import lifecycle

    _, manifest = sweep_of(args)
    print(lifecycle.point_command(manifest, args.point, snapshot_code=args.snapshot))
    return 0
