"""Command line: argument parsing, printing and exit codes; nothing else prints or exits.

Start-up imports neither torch nor sacred: subcommands import what they need when they run.
"""
import argparse
import json
import os
import sys
import time
import typing as tp

from . import __version__
from .errors import PtslurmError, UsageError

SWEEP_EPILOG = """\
updates after `with` use sacred's syntax; a list value is a sweep axis:
  ptslurm sweep exp.py with 'lr=[1e-3,1e-4]' 'batch_size=[16,32]'     # 2x2 grid
  ptslurm sweep exp.py with 'layers=[[64,64]]'                         # a literal list
  ptslurm sweep exp.py with 'trainer.optimizer.lr=[1e-3,1e-4]'         # dotted keys
  ptslurm sweep exp.py with base '[small,large]'                       # named configs: fixed, axis
  ptslurm sweep exp.py -f sweep.yaml with 'seed=[1,2,3]'               # file + command line
Order: the first axis varies slowest (sweep file axes, then command-line axes).
Without SLURM on the machine the points run locally (-j N at a time)."""


UNSET = object()  # `none` given for a resource option: unset the profile's value


def _or_none(convert: tp.Callable[[str], tp.Any]) -> tp.Callable[[str], tp.Any]:
    def parse(text: str) -> tp.Any:
        return UNSET if text.strip().lower() == "none" else convert(text)

    parse.__name__ = getattr(convert, "__name__", "value")  # argparse names it in errors
    return parse


def _add_resources(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("SLURM resources (per point; defaults from the profile)")
    g.add_argument("--partition", "-p", type=_or_none(str),
                   help="SLURM partition (default: the cluster's default partition; none: unset the profile's)")
    g.add_argument("--gpus", type=int, help="GPUs per node of a point (requested as --gres=gpu:N)")
    g.add_argument("--nodes", "-N", type=int, help="nodes per point (default 1); every node runs --tasks-per-node ranks")
    g.add_argument("--tasks-per-node", type=int, metavar="N",
                   help="ranks per node (default: one per GPU, one on CPU-only points); more than one rank "
                        "in all makes the point distributed (torch.distributed, NCCL on GPUs, gloo on CPUs)")
    g.add_argument("--cpus", type=_or_none(int), help="CPUs per task (--cpus-per-task; none: the cluster's default)")
    g.add_argument("--mem", type=_or_none(float), dest="mem_gb", metavar="GB",
                   help="memory per point in GB (none: the cluster's default, e.g. to drop the profile's)")
    g.add_argument("--time", "-t", type=_or_none(str),
                   help="time limit in any form sbatch takes: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S (0-08:00 is 8 "
                        "hours; default: the partition's)")
    g.add_argument("--account", "-A", type=_or_none(str), help="account to charge (sbatch --account)")
    g.add_argument("--qos", type=_or_none(str), help="quality of service (sbatch --qos)")
    g.add_argument("--constraint", "-C", type=_or_none(str), help="node features, e.g. a100 (sbatch --constraint)")
    g.add_argument("--array-parallelism", type=int, metavar="N", help="at most N points of an array run at once")
    g.add_argument("--signal-delay", type=int, dest="signal_delay_s", metavar="S",
                   help="ask SLURM for a signal S seconds before the time limit (default 120)")
    g.add_argument("--max-requeues", type=int, metavar="N",
                   help="stops (time limit, preemption) in a row WITHOUT progress, and failures, that are "
                        "requeued (default 3); a stop after progress is always requeued")
    g.add_argument("--max-attempts", type=int, metavar="N",
                   help="optional cap on a point's attempts per submission (default: none)")
    g.add_argument("--sbatch", action="append", default=[], metavar="KEY=VALUE",
                   help="any other sbatch option, e.g. --sbatch mail-type=END or --sbatch exclusive (repeatable); "
                        "options ptslurm sets itself are refused, naming the ptslurm option to use")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptslurm",
        description="Run sacred experiment sweeps on SLURM (or locally), one storage dir per point.",
        epilog="Example: ptslurm sweep examples/tiny.py with 'lr=[1e-3,1e-4]' 'batch_size=[16,32]'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ptslurm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sw = sub.add_parser("sweep", help="expand a grid and run every point (SLURM job arrays or locally)",
                        description="Expand a grid of sacred config updates and run every point in its own "
                                    "storage dir. Usage: ptslurm sweep [OPTIONS] EXPERIMENT [with UPDATE ...]",
                        epilog=SWEEP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    _add_resources(sw)

    def sweep_arg(p):
        p.add_argument("sweep", help="sweep directory, or its name under the root")
        p.add_argument("--root", help="storage root for sweep names (default: $STORAGE_ROOT, else ~/ptslurm-runs)")

    st = sub.add_parser("status", help="one row per point: state, attempts, progress, heartbeat, job",
                        description="State of every point, from the files, reconciled with one squeue/sacct call.",
                        epilog="Example: ptslurm status tiny-c21eec89 --watch")
    sweep_arg(st)
    st.add_argument("--json", action="store_true", help="machine-readable rows")
    st.add_argument("--watch", action="store_true", help="refresh in place until every point has ended")
    st.add_argument("--interval", type=float, default=5.0, metavar="S", help="--watch refresh interval")
    st.add_argument("--state", metavar="STATES", help="only points in these states, comma-separated "
                                                      "(e.g. failed,timeout)")

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
    co.add_argument("--best", metavar="METRIC[:min|:max]", help="print only the winning point's storage dir")
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

    ca = sub.add_parser("cancel", help="cancel the jobs of a sweep (or of some points)",
                        description="Cancel the points that are queued or running (one scancel for all of "
                                    "them); their storage dirs keep every checkpoint, so `ptslurm resubmit` "
                                    "resumes them later.",
                        epilog="Example: ptslurm cancel tiny-c21eec89 --points 3,5-7")
    sweep_arg(ca)
    ca.add_argument("--points", metavar="LIST", help="indices and ranges, e.g. 0,2,5-7 (default: all)")

    re_ = sub.add_parser("resubmit", help="queue chosen points again, resuming in their own storage dirs",
                         description="Queue ended points again, each into its own storage dir: they resume "
                                     "from their latest checkpoint with the same config and seed. The code is "
                                     "the sweep's snapshot unless --refresh-code takes the experiment's current "
                                     "code.",
                         epilog="Example: ptslurm resubmit tiny-c21eec89 --failed --refresh-code")
    sweep_arg(re_)
    which = re_.add_mutually_exclusive_group(required=True)
    which.add_argument("--failed", action="store_true", help="points that failed, timed out, were preempted "
                                                            "too often or were lost")
    which.add_argument("--points", metavar="LIST", help="indices and ranges, e.g. 0,2,5-7")
    code = re_.add_mutually_exclusive_group()
    code.add_argument("--refresh-code", action="store_true",
                      help="the points run a new snapshot of the experiment's current code (the earlier "
                           "snapshots stay for the points that ran them)")
    code.add_argument("--keep-code", action="store_true",
                      help="the points run the code they ran before, although the experiment changed")

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

    fa = sub.add_parser("failures", help="every failed point of a sweep, grouped by error",
                        description="The points that failed, timed out or were given up on, grouped by "
                                    "their error, with the user's part of one traceback per group (as seml's "
                                    "print-fail-trace).",
                        epilog="Example: ptslurm failures tiny-c21eec89")
    sweep_arg(fa)

    pl = sub.add_parser("plot", help="learning curves of all points in one figure (needs matplotlib)",
                        description="One curve per point of a sacred metric over its steps, all attempts "
                                    "joined, written as a PNG.",
                        epilog="Example: ptslurm plot tiny-c21eec89 --metric loss -o loss.png")
    sweep_arg(pl)
    pl.add_argument("--metric", required=True, help="a sacred metric name, e.g. loss (`ptslurm collect` "
                                                    "lists them)")
    pl.add_argument("-o", "--output", default=None, metavar="FILE.png", help="default: <sweep>/<metric>.png")

    li = sub.add_parser("list", help="the sweeps under a root with their counts by state",
                        description="Every sweep under the storage root: name, experiment, executor, "
                                    "creation time and its points counted by state.",
                        epilog="Example: ptslurm list ~/ptslurm-runs")
    li.add_argument("root", nargs="?", help="default: $STORAGE_ROOT, else ~/ptslurm-runs")
    li.add_argument("--experiment", "-e", metavar="NAME", help="only the sweeps of this experiment")

    de = sub.add_parser("delete", help="remove a sweep and its points' storage dirs",
                        description="Remove a sweep's folder and the storage dirs of its points (checkpoints "
                                    "and results included). Refused while any point is queued, running or "
                                    "waiting, and for a sweep of another user. Without --yes it only lists "
                                    "what would go.",
                        epilog="Example: ptslurm delete tiny-c21eec89 --yes")
    sweep_arg(de)
    de.add_argument("--yes", action="store_true", help="really delete (default: list what would be deleted)")

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

    sh = sub.add_parser("show", help="print one point's config",
                        description="One point's config as its job builds it: the resolved config.json of its "
                                    "latest attempt, else its updates, named configs and seed from the manifest.",
                        epilog="Example: ptslurm show tiny-c21eec89 3")
    sweep_arg(sh)
    sh.add_argument("point", type=int, help="point index (see `ptslurm status`)")

    cp = sub.add_parser("completion", help="print a shell completion script",
                        description="Print the completion script of bash or zsh: commands, options, sweep "
                                    "names and point indices.",
                        epilog='Example: eval "$(ptslurm completion bash)"   # in ~/.bashrc')
    cp.add_argument("shell", choices=["bash", "zsh"], help="the shell to complete in")

    ini = sub.add_parser("init", help="write a cluster profile and an experiment skeleton",
                         description="Write ptslurm.yaml (cluster profile) and experiment.py (a sacred "
                                     "experiment skeleton) into DIR.",
                         epilog="Example: ptslurm init . && ptslurm sweep experiment.py with 'lr=[1e-3,1e-4]'")
    ini.add_argument("directory", nargs="?", default=".", help="where to write the files (default: .)")
    ini.add_argument("--force", action="store_true", help="overwrite existing files")
    return parser


def shape(parser: argparse.ArgumentParser) -> tp.Dict[str, tp.Tuple[tp.List[str], tp.Set[str]]]:
    """Each command's --options and those that take a value (for shell completion)."""
    out: tp.Dict[str, tp.Tuple[tp.List[str], tp.Set[str]]] = {}
    for action in parser._actions:  # argparse keeps its subcommands here
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                names = sorted(o for a in sub._actions for o in a.option_strings if o.startswith("--"))
                valued = {o for a in sub._actions if a.option_strings and a.nargs != 0 for o in a.option_strings}
                out[name] = (names, valued)
    return out


def split_with(argv: tp.List[str]) -> tp.Tuple[tp.List[str], tp.List[str]]:
    """Separate the sacred updates after ``with`` from ptslurm's own options, which may
    follow them (``... with 'lr=[1,2]' --gpus 1``)."""
    if "with" not in argv:
        return argv, []
    i = argv.index("with")
    head, tail = argv[:i], argv[i + 1:]
    updates = []
    while tail and not (tail[0].startswith("-") and len(tail[0]) > 1 and not tail[0][1].isdigit()):
        updates.append(tail.pop(0))
    return head + tail, updates


def _resources(args, prof: dict, prof_path=None):
    from .profile import parse_time
    from .spec import Resources

    res = dict(prof.get("resources") or {})
    from_profile = f"profile {prof_path}"
    origins = {key: from_profile for key, value in res.items() if value is not None and key != "sbatch_args"}
    for key in ("partition", "gpus", "cpus", "nodes", "tasks_per_node", "mem_gb", "account", "qos", "constraint",
                "array_parallelism", "signal_delay_s", "max_requeues", "max_attempts"):
        value = getattr(args, key)
        if value is UNSET:  # `--mem none`: drop the profile's value, the cluster's default applies
            res[key] = None
            origins.pop(key, None)
        elif value is not None:
            res[key] = value
            origins[key] = "command line"
    if args.time is not None:
        res["time"] = None if args.time is UNSET else args.time
        origins["time"] = "command line"
    extra = dict(res.pop("sbatch_args", None) or {})
    origins.update({key: from_profile for key in extra})
    for item in args.sbatch:
        key, sep, value = item.partition("=")
        if not key.strip().lstrip("-"):
            raise UsageError(f"--sbatch {item!r}: expected KEY=VALUE or a FLAG, e.g. --sbatch mail-type=END")
        name = key.strip().lstrip("-")
        extra[name] = value if sep else True  # `--sbatch exclusive`: a flag
        origins[name] = "command line"
    timeout = parse_time(res.pop("time", None))
    res["origins"] = origins
    return Resources(timeout_min=timeout, sbatch_args=extra, **res)  # sweep.check_resources checks the values


def _one_line(text: tp.Optional[str], option: str) -> tp.Optional[str]:
    if text is None:
        return None
    if not text.strip() or len(text) > 1000 or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise UsageError(f"{option} takes one line of text (at most 1000 characters, no newlines or tabs)")
    return text


def cmd_sweep(args: argparse.Namespace, argv: tp.List[str], updates: tp.List[str]) -> int:
    from . import profile as profiles
    from . import render
    from . import sweep as sweeps

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
        max_snapshot_mb=args.max_snapshot_mb if args.max_snapshot_mb is not None else sweeps.snapshot.DEFAULT_MAX_MB,
        max_points=args.max_points if args.max_points is not None else sweeps.grid.DEFAULT_MAX_POINTS,
        keep_duplicates=args.keep_duplicates, note=_one_line(args.note, "--note"),
        notify=_one_line(args.notify, "--notify"),
    )
    outcome = sweeps.run(request, wait=args.wait, events=Printer())
    if args.dry_run:
        p = outcome.plan
        if args.json:
            print(json.dumps(render.dry_run_json(p), indent=2))
        elif p.executor == "slurm":
            from .executor import SlurmBackend

            print(render.dry_run(p, SlurmBackend(p.sweep_dir, p.request.resources, p.name).batch_script(len(p.points)),
                                 None))
        else:
            from .executor import LocalBackend

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
    from . import storage

    path = storage.find_sweep(args.sweep, args.root)
    return path, storage.read_manifest(path)


def _warn_damaged(index: int, paths: tp.Iterable[str]) -> None:
    from .render import damaged

    for path in paths:
        print(f"ptslurm: warning: {damaged(index, path)}", file=sys.stderr)


def cmd_status(args: argparse.Namespace) -> int:
    from . import render, results, storage
    from . import sweep as sweeps

    sweep_dir, manifest = _sweep(args)
    from . import commands

    if manifest.executor == "slurm" and not commands.slurm_available():
        print("ptslurm: warning: the SLURM controller did not answer: states come from the files alone "
              "(a job that ended without a word still shows as running or queued)", file=sys.stderr)
    warned = False
    while True:
        states = sweeps.sweep_states(sweep_dir, manifest)
        if sweeps.top_up(sweep_dir, manifest, states):  # the only write `status` makes
            manifest = storage.read_manifest(sweep_dir)
            states = sweeps.sweep_states(sweep_dir, manifest)
        rows = results.status_rows(manifest, states)
        if args.state:
            rows = [r for r in rows if r.state in _states(args.state)]
        if not warned:
            for r in rows:
                _warn_damaged(r.index, r.damaged)
            warned = True
        if args.json:
            print(json.dumps([r.to_json() for r in rows], indent=2))
        else:
            text = render.status(manifest, rows)
            if args.watch and sys.stdout.isatty():
                sys.stdout.write("\033[H\033[J")
            print(text, flush=True)
        if not args.watch or results.ended(rows):
            return 0
        time.sleep(args.interval)


def _states(text: str) -> tp.Set[str]:
    from .records import State

    wanted = {s.strip().lower() for s in text.split(",") if s.strip()}
    known = {s.value for s in State}
    unknown = sorted(wanted - known)
    if unknown or not wanted:
        raise UsageError(f"--state {text!r}: unknown state {', '.join(unknown) or '(none given)'}; "
                         f"use {', '.join(sorted(known))}")
    return wanted


def cmd_collect(args: argparse.Namespace) -> int:
    from . import render, results, storage

    dirs = [storage.find_sweep(s, args.root) for s in args.sweeps]
    records, save_cache = results.read_records(dirs, args.root, use_cache=not args.no_cache)
    for r in records:
        _warn_damaged(r["index"], r.pop("_damaged", ()))
    if args.where:
        records = results.where(records, args.where)
    if args.best:
        ranking = results.rank(records, args.best)
        if not isinstance(ranking.records[0].get(ranking.key), (int, float)):
            raise UsageError(f"no point reported {args.best!r} yet")
        print(f"ptslurm: {ranking.note()}", file=sys.stderr)
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
        from pathlib import Path

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
    from . import sweep as sweeps

    sweep_dir, manifest = _sweep(args)
    done = sweeps.cancel(sweep_dir, sweeps.select_points(manifest, args.points))
    print(f"cancelled {len(done)} point(s)" + (f": {', '.join(map(str, done))}" if done else
                                               " (nothing was queued or running)"))
    return 0


def cmd_resubmit(args: argparse.Namespace) -> int:
    from . import sweep as sweeps
    from .records import RETRYABLE

    sweep_dir, manifest = _sweep(args)
    if args.failed:
        indices = [r.index for r in sweeps.sweep_states(sweep_dir, manifest) if r.state in RETRYABLE]
    else:
        indices = sweeps.select_points(manifest, args.points)
    if not indices:
        print("nothing to resubmit: no point failed", file=sys.stderr)
        return 0
    jobs = sweeps.resubmit(sweep_dir, indices, refresh_code=args.refresh_code, keep_code=args.keep_code)
    print(f"resubmitted {len(jobs)} point(s): " + ", ".join(f"{i} ({j})" for i, j in sorted(jobs.items())))
    return 0


TAIL_DEFAULT = 1000  # lines of a big log that `logs` shows unless told otherwise
TAIL_FROM_MB = 10


def cmd_logs(args: argparse.Namespace) -> int:
    from . import records
    from . import sweep as sweeps
    from .records import TERMINAL, State

    sweep_dir, manifest = _sweep(args)
    entry = manifest.point(args.point)
    path, chosen, note = sweeps.log_paths(sweep_dir, manifest, args.point, args.attempt, live=args.follow,
                                          rank=args.rank)
    if note:
        print(note, file=sys.stderr)
    from . import logs

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
            and chosen.cause == "failed":
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
    from . import logs, render
    from . import sweep as sweeps

    sweep_dir, manifest = _sweep(args)
    groups: tp.Dict[str, tp.List[tp.Any]] = {}
    for row in sweeps.sweep_states(sweep_dir, manifest):
        why = render.why(row)
        if why:
            groups.setdefault(why, []).append(row)
    if not groups:
        print(f"no point of {manifest.name} failed")
        return 0
    for why, rows in sorted(groups.items(), key=lambda item: -len(item[1])):
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


def cmd_plot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import results

    sweep_dir, _ = _sweep(args)
    output = Path(args.output) if args.output else sweep_dir / f"{args.metric.replace('/', '_')}.png"
    fig = results.plot(sweep_dir, args.metric, output)
    print(f"wrote {output} ({len(fig.axes[0].get_lines())} curves)")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from . import render, results, storage
    from . import sweep as sweeps

    root = storage.resolve_root(args.root)
    rows = []
    for sweep_dir in results.sweeps_under(root):
        try:
            manifest = storage.read_manifest(sweep_dir)
        except PtslurmError as exc:
            rows.append([sweep_dir.name, "?", "?", "?", f"unreadable: {exc}"])
            continue
        if args.experiment and manifest.experiment.name != args.experiment:
            continue
        rows.append(render.sweep_row(manifest, sweeps.sweep_states(sweep_dir, manifest)))
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
    from . import storage
    from .housekeeping import delete

    sweep_dir = storage.find_sweep(args.sweep, args.root)
    paths = delete(sweep_dir, yes=args.yes)
    for path in paths:
        print(("deleted " if args.yes else "would delete ") + str(path))
    if not args.yes:
        print(f"ptslurm: nothing was deleted; to delete these {len(paths)} folders: "
              f"ptslurm delete {sweep_dir} --yes", file=sys.stderr)
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .profile import init

    for path in init(Path(args.directory), force=args.force):
        print(f"wrote {path}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from . import sweep as sweeps

    sweep_dir, manifest = _sweep(args)
    try:
        sweeps.run_here(sweep_dir, manifest, args.point, pdb=args.pdb, refresh_code=args.refresh_code,
                        keep_code=args.keep_code)
    except PtslurmError:
        raise
    except Exception as exc:  # the run's own failure: its traceback was printed by sacred
        print(f"ptslurm: point {args.point} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from . import render
    from . import sweep as sweeps

    sweep_dir, manifest = _sweep(args)
    config, source = sweeps.point_config(manifest, args.point)
    print(render.point_header(args.point, manifest, source), file=sys.stderr)
    print(json.dumps(config, indent=2, sort_keys=False))
    return 0


def _parse(parser: argparse.ArgumentParser, rest: tp.List[str], updates: tp.List[str]):
    """argparse, with a hint for sacred updates given without `with`."""
    args, extra = parser.parse_known_args(rest)
    if extra:
        looks_like_updates = args.command == "sweep" and not updates and all(
            not e.startswith("-") for e in extra)
        if looks_like_updates:
            raise UsageError(f"unrecognized arguments: {' '.join(extra)}; config updates go after `with`: "
                             f"ptslurm sweep {args.experiment} with {' '.join(extra)}")
        parser.parse_args(rest)  # argparse's own message and exit code 2
    return args


def main(argv: tp.Optional[tp.List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv[:1] == ["__complete"]:  # the shell asks (see `ptslurm completion`): candidates, one a line
        from .completion import candidates

        try:
            print("\n".join(candidates(shape(parser), int(argv[1]), argv[2:])))
        except (IndexError, ValueError):
            pass
        return 0
    rest, updates = split_with(argv)
    try:
        args = _parse(parser, rest, updates)
        if args.command == "sweep":
            return cmd_sweep(args, argv, updates)
        commands = {"init": cmd_init, "status": cmd_status, "collect": cmd_collect, "cancel": cmd_cancel,
                    "resubmit": cmd_resubmit, "logs": cmd_logs, "failures": cmd_failures, "plot": cmd_plot, "list": cmd_list,
                    "run": cmd_run, "show": cmd_show, "delete": cmd_delete, "completion": cmd_completion}
        if args.command in commands:
            return commands[args.command](args)
        if updates:
            raise UsageError("`with` belongs after `ptslurm sweep EXPERIMENT`")
        parser.print_help()
        return 2
    except PtslurmError as exc:  # one line, whatever the message quotes (a value with a newline)
        message = exc.message.replace("\r", "\\r").replace("\n", "\\n")
        print(f"ptslurm: error: {message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("ptslurm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`ptslurm status X | head`): stop quietly, as cat does
        return 141
    except OSError as exc:
        import errno

        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise
        where = f" on {exc.filename}" if exc.filename else ""
        print(f"ptslurm: error: {(exc.strerror or str(exc)).lower()}{where}; free space or choose another --root, then run the "
              f"command again", file=sys.stderr)
        return 2


def entry_point() -> None:
    try:
        code = main()
        sys.stdout.flush()  # a closed pipe shows here, not as "Exception ignored" at exit
    except BrokenPipeError:
        code = 141
    if code == 141:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    sys.exit(code)
