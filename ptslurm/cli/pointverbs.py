"""The verbs that read one point's (or the failed points') files: ``logs``, ``failures``,
``show`` and ``command``; called by ``cli.main`` like those of ``verbs``."""
import argparse
import json
import os
import sys
import time

from ..read.state import failure_groups, sweep_states
from ..records import Cause
from .argvalues import TAIL_DEFAULT, TAIL_FROM_MB
from .verbs import _selected, _sweep


def cmd_logs(args: argparse.Namespace) -> int:
    from ..submit import lifecycle
    from .. import records
    from ..records import TERMINAL, State

    sweep_dir, manifest = _sweep(args)
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
    from ..read import logs, results
    from . import render

    sweep_dir, manifest = _sweep(args)
    chosen = set(_selected(args, sweep_dir, manifest))
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


def cmd_command(args: argparse.Namespace) -> int:
    from ..submit import lifecycle

    _, manifest = _sweep(args)
    print(lifecycle.point_command(manifest, args.point, snapshot_code=args.snapshot))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from ..submit import lifecycle
    from . import render

    sweep_dir, manifest = _sweep(args)
    config, source = lifecycle.point_config(manifest, args.point)
    print(render.point_header(args.point, manifest, source), file=sys.stderr)
    print(json.dumps(config, indent=2, sort_keys=False))
    return 0
