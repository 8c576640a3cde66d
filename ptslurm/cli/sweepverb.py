"""``ptslurm sweep``: its options, the verb (words -> ``submit.sweep.run``) and what it prints
as the sweep goes (``Printer``)."""
import argparse
import sys
import typing as tp

from .shared import add_resources

SWEEP_EPILOG = """\
updates after `with` use sacred's syntax; a list value is a sweep axis:
  ptslurm sweep exp.py with 'lr=[1e-3,1e-4]' 'batch_size=[16,32]'     # 2x2 grid
  ptslurm sweep exp.py with 'layers=[[64,64]]'                         # a literal list
  ptslurm sweep exp.py with 'trainer.optimizer.lr=[1e-3,1e-4]'         # dotted keys
  ptslurm sweep exp.py with base '[small,large]'                       # named configs: fixed, axis
  ptslurm sweep exp.py -f sweep.yaml with 'seed=[1,2,3]'               # file + command line
Order: the first axis varies slowest (sweep file axes, then command-line axes).
Without SLURM on the machine the points run locally (-j N at a time)."""


def add_parsers(sub: tp.Any) -> None:
    """This module's verbs and their options."""
    sw = sub.add_parser("sweep", help="expand a grid and run every point (SLURM job arrays or locally)",
                        description="Expand a grid of sacred config updates and run every point in its own "
                                    "storage dir. Usage: ptslurm sweep [OPTIONS] EXPERIMENT [with UPDATE ...]",
                        epilog=SWEEP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sw.set_defaults(takes_updates=True)
    sw.add_argument("experiment", help="the sacred script (a .py file defining one Experiment)")
    sw.add_argument("-f", "--file", dest="sweep_file", help="YAML sweep file (fixed, grid, zip, random, "
                                                            "named_configs, subgrids)")
    sw.add_argument("--name", help="sweep name (default: <experiment>-<hash of the spec>; the same command "
                                   "again submits nothing new)")
    sw.add_argument("--root", help="storage root (default: $STORAGE_ROOT, else ~/ptslurm-runs)")
    sw.add_argument("--storage-key", help="config key that receives each point's storage dir "
                                          "(default: trainer.storage_dir, else storage_dir, if the config has it)")
    sw.add_argument("--executor", choices=["auto", "slurm", "local"],
                    help="where to run (default: slurm when a controller answers, else local)")
    sw.add_argument("-j", "--jobs", type=int, help="local executor: points run in parallel (default 1)")
    sw.add_argument("--keep-duplicates", action="store_true",
                    help="run points that repeat an earlier point exactly (default: dropped, with a note)")
    sw.add_argument("--profile", help="cluster profile YAML (default: ./ptslurm.yaml, "
                                      "~/.config/ptslurm/profile.yaml)")
    sw.add_argument("--dry-run", action="store_true", help="print points, storage dirs and the batch script; "
                                                           "create and submit nothing")
    sw.add_argument("--wait", action="store_true", help="block until all points end; exit 1 if any failed")
    sw.add_argument("--json", action="store_true", help="print a machine-readable summary")
    sw.add_argument("--max-points", type=int, default=None, metavar="N",
                    help="refuse sweeps of more than N points (default 10000), counted before expanding")
    sw.add_argument("--max-snapshot-mb", type=float, default=None, metavar="MB",
                    help="cap on the code snapshot (default 100); exclude data with .ptslurmignore")
    sw.add_argument("--note", metavar="TEXT", help="a one-line description of the sweep, shown by `ptslurm list`")
    sw.add_argument("--notify", metavar="COMMAND",
                    help="a shell command run once when every point has ended (by the job that ends last, no "
                         "daemon), with PTSLURM_SWEEP, PTSLURM_SWEEP_NAME and PTSLURM_COUNTS set, e.g. "
                         "--notify 'mail -s \"$PTSLURM_SWEEP_NAME: $PTSLURM_COUNTS\" me@lab.org < /dev/null'")
    sw.add_argument("--halving", metavar="FIELD=VALUE,...",
                    help="successive halving, as a sweep file's halving: section (fields given here win), e.g. "
                         "--halving budget=steps,min=2,max=18,eta=3,metric=loss[,promotion=async][,brackets=3]")
    add_resources(sw)
    sw.set_defaults(run=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    import json

    from .. import schedulers
    from .requests import one_line, resources
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
        experiment=args.experiment, with_tokens=tuple(args.updates), sweep_file=args.sweep_file,
        name=args.name, root=args.root or prof.get("root"), storage_key=key or None,
        executor=args.executor or prof.get("executor") or "auto",
        jobs=args.jobs if args.jobs is not None else prof.get("jobs") or 1,
        resources=resources(args, prof, prof_path), dry_run=args.dry_run, argv=tuple(args.argv),
        max_snapshot_mb=args.max_snapshot_mb if args.max_snapshot_mb is not None else snapshot.DEFAULT_MAX_MB,
        max_points=args.max_points if args.max_points is not None else grid.DEFAULT_MAX_POINTS,
        keep_duplicates=args.keep_duplicates, note=one_line(args.note, "--note"),
        notify=one_line(args.notify, "--notify"), halving=args.halving,
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
