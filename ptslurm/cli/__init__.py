"""Command line: argument parsing and exit codes (the verbs themselves, and what they print, are in
``verbs``, ``pointverbs``, ``searchverbs`` and ``report``); nothing else prints or exits.

Start-up imports neither torch nor sacred: subcommands import what they need when they run.
"""
import argparse
import json
import os
import sys
import time
import typing as tp

from .. import __version__
from .argvalues import TAIL_DEFAULT, TAIL_FROM_MB, UNSET
from ..errors import PtslurmError, UsageError

SWEEP_EPILOG = """\
updates after `with` use sacred's syntax; a list value is a sweep axis:
  ptslurm sweep exp.py with 'lr=[1e-3,1e-4]' 'batch_size=[16,32]'     # 2x2 grid
  ptslurm sweep exp.py with 'layers=[[64,64]]'                         # a literal list
  ptslurm sweep exp.py with 'trainer.optimizer.lr=[1e-3,1e-4]'         # dotted keys
  ptslurm sweep exp.py with base '[small,large]'                       # named configs: fixed, axis
  ptslurm sweep exp.py -f sweep.yaml with 'seed=[1,2,3]'               # file + command line
Order: the first axis varies slowest (sweep file axes, then command-line axes).
Without SLURM on the machine the points run locally (-j N at a time)."""




def _or_none(convert: tp.Callable[[str], tp.Any]) -> tp.Callable[[str], tp.Any]:
    def parse(text: str) -> tp.Any:
        return UNSET if text.strip().lower() == "none" else convert(text)

    parse.__name__ = getattr(convert, "__name__", "value")  # argparse names it in errors
    return parse


def _add_resources(p: argparse.ArgumentParser,
                   title: str = "SLURM resources (per point; defaults from the profile)") -> None:
    g = p.add_argument_group(title)
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
    g.add_argument("--points-per-job", type=int, metavar="N",
                   help="N points share one array task (its GPUs round-robin, its CPUs split evenly), each its "
                        "own process, storage dir and resume (default 1)")
    g.add_argument("--signal-delay", type=int, dest="signal_delay_s", metavar="S",
                   help="ask SLURM for a signal S seconds before the time limit (default 120)")
    g.add_argument("--max-requeues", type=int, metavar="N",
                   help="stops (time limit, preemption) in a row WITHOUT progress, and failures, that are "
                        "requeued (default 3); a stop after progress is always requeued")
    g.add_argument("--max-attempts", type=int, metavar="N",
                   help="optional cap on a point's attempts per submission (default: none)")
    g.add_argument("--setup", action="append", default=[], metavar="LINE",
                   help="a shell line the batch script runs before the job, e.g. --setup 'module load cuda/12' "
                        "(repeatable; after the profile's and the sweep file's; SLURM jobs only)")
    g.add_argument("--srun-arg", action="append", default=[], dest="srun_args", metavar="ARG",
                   help="an extra argument of the job's srun, e.g. --srun-arg=--cpu-bind=cores (repeatable)")
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
    sw.add_argument("--halving", metavar="FIELD=VALUE,...",
                    help="successive halving, as a sweep file's halving: section (fields given here win), e.g. "
                         "--halving budget=steps,min=2,max=18,eta=3,metric=loss[,promotion=async][,brackets=3]")
    _add_resources(sw)

    def sweep_arg(p):
        p.add_argument("sweep", help="sweep directory, or its name under the root")
        p.add_argument("--root", help="storage root for sweep names (default: $STORAGE_ROOT, else ~/ptslurm-runs)")

    def filters(p, states: bool = True):
        if states:
            p.add_argument("--state", metavar="STATES", help="only points in these states, comma-separated "
                                                             "(e.g. failed,timeout)")
        p.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                       help="only points whose column KEY (a config key, state, result...) equals VALUE, as "
                            "`collect --where` (repeatable: all must hold), e.g. --where lr=0.001")

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

    ca = sub.add_parser("cancel", help="cancel the jobs of a sweep (or of some points)",
                        description="Cancel the points that are queued or running (one scancel for all of "
                                    "them); their storage dirs keep every checkpoint, so `ptslurm resubmit` "
                                    "resumes them later.",
                        epilog="Example: ptslurm cancel tiny-c21eec89 --points 3,5-7")
    sweep_arg(ca)
    ca.add_argument("--points", metavar="LIST", help="indices and ranges, e.g. 0,2,5-7 (default: all)")
    filters(ca)

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
    _add_resources(re_, "SLURM resources the points ask for from now on (default: what they asked before)")

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
    sweep_arg(ex_)
    ex_.add_argument("--points", metavar="LIST", help="indices and ranges, e.g. 0,2,5-7 (default: all)")
    filters(ex_)
    ex_.add_argument("--budget-key", metavar="KEY", help="the config key that says how long a point trains "
                                                         "(default: the one the sweep declared)")
    pr = sub.add_parser("promote", help="successive halving: decide and queue the promotions due now",
                        description="Decide the promotions a sweep's `halving:` section calls for now (each recorded "
                                    "before it is carried out; a decision a killed decider left is finished), "
                                    "extend the promoted points to the next rung's budget and queue them; a "
                                    "local sweep runs them here. Also goes on with a search that `cancel` stopped.",
                        epilog="Example: ptslurm promote tiny-c21eec89")
    sweep_arg(pr)
    nw = sub.add_parser("next-wave", help="submit a sweep's next wave now (its wave job is gone)",
                        description="A sweep over the cluster's submit limit goes in waves, each submitted by a "
                                    "small wave job when the last one ended; the points' jobs submit it too when "
                                    "the wave job is gone. `status` says when points wait and no wave job is "
                                    "queued (cancelled, or killed after the last point ended): this submits the "
                                    "points that fit now, and a wave job for the rest.",
                        epilog="Example: ptslurm next-wave tiny-c21eec89")
    sweep_arg(nw)

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
    filters(fa, states=False)

    pl = sub.add_parser("plot", help="learning curves of all points in one figure (needs matplotlib)",
                        description="One curve per point of a sacred metric over its steps, all attempts "
                                    "joined, written as a PNG.",
                        epilog="Example: ptslurm plot tiny-c21eec89 --metric loss -o loss.png")
    sweep_arg(pl)
    pl.add_argument("--metric", required=True, help="a sacred metric name, e.g. loss (`ptslurm collect` "
                                                    "lists them)")
    pl.add_argument("-o", "--output", default=None, metavar="FILE.png", help="default: <sweep>/<metric>.png")

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

    for verb, what in (("hold", "keep queued points from starting (scontrol hold)"),
                       ("release", "let held points start again (scontrol release)")):
        ho = sub.add_parser(verb, help=what,
                            description=f"{what[0].upper() + what[1:]}; `status` shows held points as "
                                        f"'pending (held)'. A job shared by packed points is held as a whole.",
                            epilog=f"Example: ptslurm {verb} tiny-c21eec89 --where lr=0.1")
        sweep_arg(ho)
        ho.add_argument("--points", metavar="LIST", help="indices and ranges, e.g. 0,2,5-7 (default: all)")
        filters(ho)

    no = sub.add_parser("note", help="set (or show) a sweep's one-line note, after the fact",
                        description="Set the sweep's note (seml's `description set`), shown by `ptslurm list`; "
                                    "without TEXT, print it. An empty TEXT ('') removes it.",
                        epilog="Example: ptslurm note tiny-c21eec89 'baseline: lr study, first try'")
    sweep_arg(no)
    no.add_argument("text", nargs="?", help="the note (one line)")

    cm = sub.add_parser("command", help="the shell command that runs one point by hand, outside ptslurm",
                        description="Print `python EXP with ...`: the point's named configs and updates in "
                                    "sacred's syntax and its seed, so that the command builds the point's config "
                                    "(the storage dir is left to the experiment).",
                        epilog="Example: ptslurm command tiny-c21eec89 3 --snapshot")
    sweep_arg(cm)
    cm.add_argument("point", type=int, help="point index (see `ptslurm status`)")
    cm.add_argument("--snapshot", action="store_true",
                    help="run the code the point ran (its snapshot) instead of the experiment as it is now")

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


def _parse(parser: argparse.ArgumentParser, rest: tp.List[str], updates: tp.List[str]):
    """argparse, with a hint for sacred updates given without `with`."""
    args, extra = parser.parse_known_args(rest)
    if extra:
        looks_like_updates = args.command in ("sweep", "extend") and not updates and all(
            not e.startswith("-") for e in extra)
        if looks_like_updates:
            what = f"sweep {args.experiment}" if args.command == "sweep" else f"extend {args.sweep}"
            raise UsageError(f"unrecognized arguments: {' '.join(extra)}; config updates go after `with`: "
                             f"ptslurm {what} with {' '.join(extra)}")
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
        if args.command:
            from . import verbs  # only a command's run needs them: `--help` stays light
        if args.command == "sweep":
            return verbs.cmd_sweep(args, argv, updates)
        if args.command == "report":
            from . import report

            return report.cmd_report(args)
        if args.command in ("extend", "promote", "next-wave"):
            from . import searchverbs

            return tp.cast(int, getattr(searchverbs, "cmd_" + args.command.replace("-", "_"))(args, updates))
        if args.command in ("logs", "failures", "show", "command"):
            from . import pointverbs

            return tp.cast(int, getattr(pointverbs, "cmd_" + args.command)(args))
        if args.command:
            return tp.cast(int, getattr(verbs, "cmd_" + args.command)(args))
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
