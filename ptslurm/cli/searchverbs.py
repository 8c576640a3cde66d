"""The command line's verbs that make a sweep go on: ``extend`` and ``promote`` (successive
halving and training longer; ``promote`` does the work) and ``next-wave`` (a sweep in waves
whose wave job is gone; ``submission.next_wave`` does the work). ``cli`` parses."""
import argparse
import sys
import typing as tp

from ..errors import UsageError


def cmd_extend(args: argparse.Namespace, updates: tp.Sequence[str]) -> int:
    from ..submit import promote
    from .verbs import _selected, _sweep

    if not updates:
        raise UsageError("give the budget's new value after `with`, e.g. ptslurm extend SWEEP with steps=3000")
    sweep_dir, manifest = _sweep(args)
    indices = _selected(args, sweep_dir, manifest)
    if not indices:
        print("nothing to extend: no point matches --state/--where", file=sys.stderr)
        return 0
    key, value, jobs = promote.extend(sweep_dir, indices, updates, args.budget_key)
    where = ", ".join(f"{i} ({j})" for i, j in jobs.items())
    print(f"extended {len(jobs)} point(s) to {key}={value!r}: {where}")
    return 0


def cmd_promote(args: argparse.Namespace, updates: tp.Sequence[str]) -> int:
    from ..submit import promote
    from .. import schedulers
    from .verbs import _sweep

    if updates:
        raise UsageError("`with` belongs after `ptslurm sweep EXPERIMENT` or `ptslurm extend SWEEP`")
    sweep_dir, manifest = _sweep(args)
    before = len(promote.read_log(sweep_dir)["decisions"])
    if not schedulers.of(manifest.executor).keeps_queue:  # the next rungs run here, in order
        promote.run_local(sweep_dir, 1, by="promote")
    else:
        promote.decide(sweep_dir, by="promote")
    log = promote.read_log(sweep_dir)
    for d in log["decisions"][before:]:
        print(f"promoted {len(d['points'])} point(s) of bracket {d['bracket']} from rung {d['rung']} to budget "
              f"{d['budget']}: {', '.join(map(str, d['points'])) or '-'}")
    if len(log["decisions"]) == before:
        print("no promotion is due now", file=sys.stderr)
    return 0


def cmd_next_wave(args: argparse.Namespace, updates: tp.Sequence[str]) -> int:
    from ..records import manifests
    from ..submit import submission
    from ..read.state import sweep_states
    from .verbs import _sweep

    if updates:
        raise UsageError("`with` belongs after `ptslurm sweep EXPERIMENT` or `ptslurm extend SWEEP`")
    sweep_dir, manifest = _sweep(args)
    manifests.require_own(sweep_dir, "submits waves for")
    if not manifest.waves:
        print("no point of this sweep waits for a wave", file=sys.stderr)
        return 0
    if not submission.waves_stalled(sweep_dir, manifest, sweep_states(sweep_dir, manifest)):
        print(f"the wave job {manifest.waves.get('job')} is queued: it submits the next wave when the points "
              f"it waits for have ended", file=sys.stderr)
        return 0
    print(f"submitted {submission.next_wave(sweep_dir)} waiting point(s)")
    return 0
