"""The command line's verbs that make a sweep go on: ``extend`` and ``promote`` (successive
halving and training longer; ``promote`` does the work) and ``next-wave`` (a sweep in waves
whose wave job is gone; ``submission.next_wave`` does the work). Their options are here too."""
import argparse
import sys
import typing as tp

from ..errors import UsageError
from .shared import filters, selected, sweep_arg, sweep_of


def add_parsers(sub: tp.Any) -> None:
    """This module's verbs and their options."""
    ex_ = sub.add_parser("extend", help="train ended points longer: resume them with a larger budget",
                         description="ptslurm extend SWEEP [options] with KEY=VALUE\n\n"
                                     "Continue ended points from their latest checkpoint with a larger value of\n"
                                     "the budget key, in the same storage dirs, as a new attempt running the code\n"
                                     "they ran; `show` prints each point's budget history. Only the budget key may\n"
                                     "change (anything else would not be the same training).",
                         epilog="Example: ptslurm extend tiny-c21eec89 --points 0-3 with steps=3000\n"
                                "         ptslurm extend run-1 --budget-key trainer.stop_trigger "
                                "with \"trainer.stop_trigger=(60000,'iteration')\"",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    ex_.set_defaults(takes_updates=True)
    sweep_arg(ex_)
    ex_.add_argument("--points", metavar="LIST", help="indices and ranges, e.g. 0,2,5-7 (default: all)")
    filters(ex_)
    ex_.add_argument("--budget-key", metavar="KEY", help="the config key that says how long a point trains "
                                                         "(default: the one the sweep declared)")
    ex_.set_defaults(run=cmd_extend)

    pr = sub.add_parser("promote", help="successive halving: decide and queue the promotions due now",
                        description="Decide the promotions a sweep's `halving:` section calls for now (each recorded "
                                    "before it is carried out; a decision a killed decider left is finished), "
                                    "extend the promoted points to the next rung's budget and queue them; a "
                                    "local sweep runs them here. Also goes on with a search that `cancel` stopped.",
                        epilog="Example: ptslurm promote tiny-c21eec89")
    sweep_arg(pr)
    pr.set_defaults(run=cmd_promote)

    nw = sub.add_parser("next-wave", help="submit a sweep's next wave now (its wave job is gone)",
                        description="A sweep over the cluster's submit limit goes in waves, each submitted by a "
                                    "small wave job when the last one ended; the points' jobs submit it too when "
                                    "the wave job is gone. `status` says when points wait and no wave job is "
                                    "queued (cancelled, or killed after the last point ended): this submits the "
                                    "points that fit now, and a wave job for the rest.",
                        epilog="Example: ptslurm next-wave tiny-c21eec89")
    sweep_arg(nw)
    nw.set_defaults(run=cmd_next_wave)


def cmd_extend(args: argparse.Namespace) -> int:
    from ..submit import promote

    if not args.updates:
        raise UsageError("give the budget's new value after `with`, e.g. ptslurm extend SWEEP with steps=3000")
    sweep_dir, manifest = sweep_of(args)
    indices = selected(args, sweep_dir, manifest)
    if not indices:
        print("nothing to extend: no point matches --state/--where", file=sys.stderr)
        return 0
    key, value, jobs = promote.extend(sweep_dir, indices, args.updates, args.budget_key)
    where = ", ".join(f"{i} ({j})" for i, j in jobs.items())
    print(f"extended {len(jobs)} point(s) to {key}={value!r}: {where}")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from ..submit import promote
    from .. import schedulers

    sweep_dir, manifest = sweep_of(args)
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


def cmd_next_wave(args: argparse.Namespace) -> int:
    from ..records import manifests
    from ..submit import submission
    from ..read.state import sweep_states

    sweep_dir, manifest = sweep_of(args)
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
