"""The verbs of a sweep's life cycle: ``cancel``, ``resubmit``, ``run``, ``hold``, ``release``,
``delete`` and ``note``: their options and what they print (``submit.lifecycle`` does the work)."""
import argparse
import sys
import typing as tp

from ..errors import PtslurmError, UsageError
from .shared import add_resources, filtered, filters, selected, sweep_arg, sweep_of


def add_parsers(sub: tp.Any) -> None:
    """This module's verbs and their options."""
    ca = sub.add_parser("cancel", help="cancel the jobs of a sweep (or of some points)",
                        description="Cancel the points that are queued or running (one scancel for all of "
                                    "them); their storage dirs keep every checkpoint, so `ptslurm resubmit` "
                                    "resumes them later.",
                        epilog="Example: ptslurm cancel tiny-c21eec89 --points 3,5-7")
    sweep_arg(ca)
    ca.add_argument("--points", metavar="LIST", help="indices and ranges, e.g. 0,2,5-7 (default: all)")
    filters(ca)
    ca.set_defaults(run=cmd_cancel)

    re_ = sub.add_parser("resubmit", help="queue chosen points again, resuming in their own storage dirs",
                         description="Queue ended points again, each into its own storage dir: they resume "
                                     "from their latest checkpoint with the same config and seed. The code is "
                                     "the sweep's snapshot unless --refresh-code takes the experiment's current "
                                     "code.",
                         epilog="Example: ptslurm resubmit tiny-c21eec89 --failed --refresh-code\n"
                                "         ptslurm resubmit tiny-c21eec89 --points 3 --time 2-00:00:00 --mem 64",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    sweep_arg(re_)
    which = re_.add_mutually_exclusive_group()
    which.add_argument("--failed", action="store_true", help="points that failed, timed out, were preempted "
                                                            "too often or were lost")
    which.add_argument("--points", metavar="LIST", help="indices and ranges, e.g. 0,2,5-7")
    filters(re_)
    code = re_.add_mutually_exclusive_group()
    code.add_argument("--refresh-code", action="store_true",
                      help="the points run a new snapshot of the experiment's current code (the earlier "
                           "snapshots stay for the points that ran them)")
    code.add_argument("--keep-code", action="store_true",
                      help="the points run the code they ran before, although the experiment changed")
    add_resources(re_, "SLURM resources the points ask for from now on (default: what they asked before)")
    re_.set_defaults(run=cmd_resubmit)

    ru = sub.add_parser("run", help="run one point in the foreground, for debugging",
                        description="Run one point of a sweep here, in the foreground, in its storage dir and "
                                    "with its config and seed, the way `python exp.py with ...` would (an attempt "
                                    "like any other: it resumes from the point's checkpoints). Refused while the "
                                    "point is queued or running.",
                        epilog="Example: ptslurm run tiny-c21eec89 3 --pdb")
    sweep_arg(ru)
    ru.add_argument("point", type=int, help="point index (see `ptslurm status`)")
    ru.add_argument("--pdb", action="store_true", help="enter the debugger where the run fails")
    ru_code = ru.add_mutually_exclusive_group()
    ru_code.add_argument("--refresh-code", action="store_true", help="run a new snapshot of the current code")
    ru_code.add_argument("--keep-code", action="store_true",
                         help="run the point's snapshot although the experiment changed")
    ru.set_defaults(run=cmd_run)

    for verb, what in (("hold", "keep queued points from starting (scontrol hold)"),
                       ("release", "let held points start again (scontrol release)")):
        ho = sub.add_parser(verb, help=what,
                            description=f"{what[0].upper() + what[1:]}; `status` shows held points as "
                                        f"'pending (held)'. A job shared by packed points is held as a whole.",
                            epilog=f"Example: ptslurm {verb} tiny-c21eec89 --where lr=0.1")
        sweep_arg(ho)
        ho.add_argument("--points", metavar="LIST", help="indices and ranges, e.g. 0,2,5-7 (default: all)")
        filters(ho)
        ho.set_defaults(run=cmd_hold if verb == "hold" else cmd_release)

    no = sub.add_parser("note", help="set (or show) a sweep's one-line note, after the fact",
                        description="Set the sweep's note (seml's `description set`), shown by `ptslurm list`; "
                                    "without TEXT, print it. An empty TEXT ('') removes it.",
                        epilog="Example: ptslurm note tiny-c21eec89 'baseline: lr study, first try'")
    sweep_arg(no)
    no.add_argument("text", nargs="?", help="the note (one line)")
    no.set_defaults(run=cmd_note)

    de = sub.add_parser("delete", help="remove a sweep and its points' storage dirs",
                        description="Remove a sweep's folder and the storage dirs of its points (checkpoints "
                                    "and results included). Refused while any point is queued, running or "
                                    "waiting, and for a sweep of another user. Without --yes it only lists "
                                    "what would go.",
                        epilog="Example: ptslurm delete tiny-c21eec89 --yes")
    sweep_arg(de)
    de.add_argument("--yes", action="store_true", help="really delete (default: list what would be deleted)")
    de.set_defaults(run=cmd_delete)


def cmd_cancel(args: argparse.Namespace) -> int:
    from ..submit import lifecycle

    sweep_dir, manifest = sweep_of(args)
    chosen = selected(args, sweep_dir, manifest)
    if not chosen and filtered(args):
        print("no point matches --state/--where: nothing cancelled")
        return 0
    done = lifecycle.cancel(sweep_dir, chosen)
    print(f"cancelled {len(done)} point(s)" + (f": {', '.join(map(str, done))}" if done else
                                               " (nothing was queued or running)"))
    return 0


def cmd_resubmit(args: argparse.Namespace) -> int:
    from .. import schedulers
    from ..read.state import sweep_states
    from .requests import resource_changes
    from ..submit import lifecycle
    from ..records import RETRYABLE

    sweep_dir, manifest = sweep_of(args)
    if not (args.failed or args.points or filtered(args)):
        raise UsageError("say which points: --failed, --points LIST, --state STATES or --where KEY=VALUE")
    if args.failed:
        indices = selected(args, sweep_dir, manifest,
                            [r.index for r in sweep_states(sweep_dir, manifest) if r.state in RETRYABLE])
    else:
        indices = selected(args, sweep_dir, manifest)
    if not indices:
        print("nothing to resubmit: " + ("no point matches --state/--where" if filtered(args) and not args.failed
                                         else "no point failed"), file=sys.stderr)
        return 0
    changes = resource_changes(args)
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


def cmd_run(args: argparse.Namespace) -> int:
    from ..submit import lifecycle

    sweep_dir, manifest = sweep_of(args)
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

    sweep_dir, manifest = sweep_of(args)
    jobs = lifecycle.hold(sweep_dir, manifest, selected(args, sweep_dir, manifest), release=release)
    verb = "released" if release else "held"
    print(f"{verb} {len(jobs)} job(s)" + (f": {', '.join(jobs)}" if jobs else " (no chosen point is queued)"))
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    return cmd_hold(args, release=True)


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


def cmd_note(args: argparse.Namespace) -> int:
    from .requests import one_line
    from ..records import locks, manifests

    sweep_dir, manifest = sweep_of(args)
    if args.text is None:
        print(manifest.note or "(no note)")
        return 0
    text = one_line(args.text, "the note") if args.text else None
    manifests.require_own(sweep_dir, "notes")
    with locks.manifest_lock(sweep_dir):
        current = manifests.read_manifest(sweep_dir)
        manifests.ManifestBook(sweep_dir, current).save(current.replace(note=text))
    print(f"{manifest.name}: " + (f"note set: {text}" if text else "note removed"))
    return 0
