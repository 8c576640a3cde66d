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


def _add_resources(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("SLURM resources (per point; defaults from the profile)")
    g.add_argument("--partition", "-p", help="SLURM partition (default: the cluster's default partition)")
    g.add_argument("--gpus", type=int, help="GPUs per point (requested as --gres=gpu:N)")
    g.add_argument("--cpus", type=int, help="CPUs per point (--cpus-per-task)")
    g.add_argument("--mem", type=float, dest="mem_gb", metavar="GB", help="memory per point in GB")
    g.add_argument("--time", "-t", help="time limit: minutes, H:MM:SS or D-HH:MM:SS (default: the partition's)")
    g.add_argument("--account", "-A", help="account to charge (sbatch --account)")
    g.add_argument("--qos", help="quality of service (sbatch --qos)")
    g.add_argument("--constraint", "-C", help="node features, e.g. a100 (sbatch --constraint)")
    g.add_argument("--array-parallelism", type=int, metavar="N", help="at most N points of an array run at once")
    g.add_argument("--signal-delay", type=int, dest="signal_delay_s", metavar="S",
                   help="ask SLURM for a signal S seconds before the time limit (default 120)")
    g.add_argument("--max-requeues", type=int, metavar="N", help="requeues allowed per point (default 3)")
    g.add_argument("--sbatch", action="append", default=[], metavar="KEY=VALUE",
                   help="any other sbatch option, e.g. --sbatch mail-type=END (repeatable)")


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

    co = sub.add_parser("collect", help="results of one or more sweeps: varied keys, state, metrics",
                        description="One row per point: varied config values, state, result, final and best "
                                    "value of every sacred metric, storage dir. Best is the lowest value, or the "
                                    "highest for names like accuracy/score/f1.",
                        epilog="Example: ptslurm collect tiny-c21eec89 --sort loss --format md")
    co.add_argument("sweeps", nargs="+", metavar="SWEEP", help="sweep directories or names")
    co.add_argument("--root", help="storage root for sweep names (default: $STORAGE_ROOT, else ~/ptslurm-runs)")
    co.add_argument("--sort", metavar="METRIC", help="best first by METRIC (or 'result')")
    co.add_argument("--best", metavar="METRIC", help="print only the winning point's storage dir")
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
    re_.add_argument("--refresh-code", action="store_true", help="snapshot the experiment file again "
                                                                 "(after fixing a bug) before resubmitting")

    lo = sub.add_parser("logs", help="a point's captured output (and traceback when it failed)",
                        description="What a point's run printed (sacred's cout.txt of the attempt, logging "
                                    "included), else the scheduler's or the local log; the traceback of a "
                                    "failed attempt.",
                        epilog="Example: ptslurm logs tiny-c21eec89 3 --attempt 1")
    sweep_arg(lo)
    lo.add_argument("point", type=int, help="point index (see `ptslurm status`)")
    lo.add_argument("--attempt", type=int, help="attempt number, from 1 (default: the latest)")
    lo.add_argument("--follow", "-f", action="store_true", help="print the live log (all attempts) and keep "
                                                                 "printing until the point ends")

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

    ru = sub.add_parser("run", help="run one point in the foreground, for debugging",
                        description="Run one point of a sweep here, in the foreground, in its storage dir and "
                                    "with its config and seed, the way `python exp.py with ...` would (an attempt "
                                    "like any other: it resumes from the point's checkpoints). Refused while the "
                                    "point is queued or running.",
                        epilog="Example: ptslurm run tiny-c21eec89 3 --pdb")
    sweep_arg(ru)
    ru.add_argument("point", type=int, help="point index (see `ptslurm status`)")
    ru.add_argument("--pdb", action="store_true", help="enter the debugger where the run fails")

    sh = sub.add_parser("show", help="print one point's config",
                        description="One point's config as its job builds it: the resolved config.json of its "
                                    "latest attempt, else its updates, named configs and seed from the manifest.",
                        epilog="Example: ptslurm show tiny-c21eec89 3")
    sweep_arg(sh)
    sh.add_argument("point", type=int, help="point index (see `ptslurm status`)")

    ini = sub.add_parser("init", help="write a cluster profile and an experiment skeleton",
                         description="Write ptslurm.yaml (cluster profile) and experiment.py (a sacred "
                                     "experiment skeleton) into DIR.",
                         epilog="Example: ptslurm init . && ptslurm sweep experiment.py with 'lr=[1e-3,1e-4]'")
    ini.add_argument("directory", nargs="?", default=".", help="where to write the files (default: .)")
    ini.add_argument("--force", action="store_true", help="overwrite existing files")
    return parser


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


def _resources(args, prof: dict):
    from .profile import parse_time
    from .spec import Resources

    res = dict(prof.get("resources") or {})
    for key in ("partition", "gpus", "cpus", "mem_gb", "account", "qos", "constraint",
                "array_parallelism", "signal_delay_s", "max_requeues"):
        value = getattr(args, key)
        if value is not None:
            res[key] = value
    if args.time is not None:
        res["time"] = args.time
    extra = dict(res.pop("sbatch_args", None) or {})
    for item in args.sbatch:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--sbatch {item!r}: expected KEY=VALUE, e.g. --sbatch mail-type=END")
        extra[key.strip().lstrip("-")] = value
    timeout = parse_time(res.pop("time", None))
    for key in ("gpus", "cpus", "array_parallelism", "max_requeues"):
        if res.get(key) is not None and (not isinstance(res[key], int) or res[key] < 0):
            raise UsageError(f"--{key.replace('_', '-')} must be a non-negative integer, got {res[key]!r}")
    return Resources(timeout_min=timeout, sbatch_args=extra, **res)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def cmd_sweep(args, argv: tp.List[str], updates: tp.List[str]) -> int:
    from . import profile as profiles
    from . import sweep as sweeps

    started = time.perf_counter()
    prof = profiles.load(profiles.find(args.profile))
    key = args.storage_key if args.storage_key is not None else prof.get("storage_key")
    jobs = args.jobs if args.jobs is not None else prof.get("jobs") or 1
    request = sweeps.SweepRequest(
        experiment=args.experiment, with_tokens=tuple(updates), sweep_file=args.sweep_file,
        name=args.name, root=args.root or prof.get("root"), storage_key=key or None,
        executor=args.executor or prof.get("executor") or "auto", jobs=jobs,
        resources=_resources(args, prof), dry_run=args.dry_run, argv=tuple(argv),
        max_snapshot_mb=args.max_snapshot_mb if args.max_snapshot_mb is not None else sweeps.snapshot.DEFAULT_MAX_MB,
        max_points=args.max_points if args.max_points is not None else sweeps.grid.DEFAULT_MAX_POINTS,
    )
    plan = sweeps.plan(request)
    try:
        return _sweep_planned(args, plan, started)
    finally:
        plan.discard()


def _sweep_planned(args, plan, started: float) -> int:
    from . import sweep as sweeps

    request = plan.request
    timing = {"preflight": time.perf_counter() - started}
    for warning in plan.warnings:
        print(f"ptslurm: warning: {warning}", file=sys.stderr)
    if args.dry_run:
        return _dry_run(plan, args.json)
    manifest = sweeps.existing(plan)
    if manifest is not None and manifest.get("state") == "submitting" and manifest.get("executor") == "slurm":
        # an interrupted submission (killed, ssh dropped): finish it, exactly once
        backend = sweeps.slurm_backend(plan)
        before = sum(1 for e in manifest["points"] if e.get("job_id"))
        adopted = sweeps.submit(plan, plan.sweep_dir, manifest, backend)
        queued = len(manifest["points"]) - before - adopted
        print(f"ptslurm: finished the interrupted submission of {plan.name!r}: {before} point(s) were recorded, "
              f"{adopted} adopted from the queue, {queued} queued now", file=sys.stderr)
        return _finish(args, plan.sweep_dir, manifest, sbatch_calls=backend.sbatch_calls)
    if manifest is not None and manifest.get("executor") == "local":
        rows = sweeps.sweep_states(plan.sweep_dir, manifest)
        runner_gone = not sweeps.results._alive(manifest.get("runner") or {})
        left = [r["index"] for r in rows if runner_gone and r["state"] in ("lost", "interrupted")]
        if left:
            print(f"ptslurm: running the {_plural(len(left), 'point')} an interrupted run left (resuming from "
                  f"their checkpoints)", file=sys.stderr)
            sweeps.resubmit(plan.sweep_dir, left)
            manifest = sweeps.storage.read_manifest(plan.sweep_dir)
            return _finish(args, plan.sweep_dir, manifest, sbatch_calls=0,
                           rows=sweeps.sweep_states(plan.sweep_dir, manifest))
    if manifest is not None:
        print(f"ptslurm: sweep {plan.name!r} already exists with this spec: nothing new to submit",
              file=sys.stderr)
        return _finish(args, plan.sweep_dir, manifest, sbatch_calls=0, already=True)
    n = len(plan.points)
    if plan.executor == "slurm":
        backend = sweeps.slurm_backend(plan)
        note = sweeps.time_limit_note(request.resources)
        backend.validate(n)
        t_create = time.perf_counter()
        sweep_dir, manifest = sweeps.create(plan)
        sweeps.submit(plan, sweep_dir, manifest, backend)
        timing["submit"] = time.perf_counter() - t_create
        arrays = sorted({e["job_id"].split("_")[0] for e in manifest["points"] if e["job_id"]})
        now = sum(1 for e in manifest["points"] if e["job_id"])
        print(f"ptslurm: queued {_plural(now, 'point')} of {plan.experiment_name!r} as "
              f"{len(arrays)} job array{'s' if len(arrays) != 1 else ''} ({', '.join(arrays)})", file=sys.stderr)
        if manifest.get("waves"):
            print(f"ptslurm: the cluster lets you queue {manifest['waves']['limit']} jobs: the other "
                  f"{n - now} points wait and are submitted in waves as these end (job "
                  f"{manifest['waves'].get('job') or '-'} submits the next)", file=sys.stderr)
        if note:
            print(f"ptslurm: {note}", file=sys.stderr)
        return _finish(args, sweep_dir, manifest, sbatch_calls=backend.sbatch_calls, timing=timing)
    sweep_dir, manifest = sweeps.create(plan)
    print(f"ptslurm: no SLURM here: running {_plural(n, 'point')} of {plan.experiment_name!r} "
          f"locally, {request.jobs} at a time" if request.executor == "auto" else
          f"ptslurm: running {_plural(n, 'point')} locally, {request.jobs} at a time", file=sys.stderr)
    progress = Progress(n)
    rows = sweeps.run_local(plan, sweep_dir, manifest, on_change=progress.show)
    progress.show(rows, final=True)
    return _finish(args, sweep_dir, manifest, sbatch_calls=0, rows=rows)


def _finish(args, sweep_dir, manifest, sbatch_calls, rows=None, already=False, timing=None) -> int:
    from . import sweep as sweeps

    if args.wait and rows is None:
        progress = Progress(len(manifest["points"]))
        while True:
            manifest = sweeps.storage.read_manifest(sweep_dir)  # waves add job ids as they go
            rows = sweeps.sweep_states(sweep_dir, manifest)
            done = all(r["state"] in sweeps.results.TERMINAL for r in rows)
            progress.show(rows, final=done)
            if done:
                break
            time.sleep(float(os.environ.get("PTSLURM_POLL_S", "2")))
    if args.json:
        state = manifest["state"]
        if rows is not None:
            ended = all(r["state"] in sweeps.results.TERMINAL for r in rows)
            ok = all(r["state"] == "completed" for r in rows)
            state = ("completed" if ok else "ended") if ended else "running"
        summary = {"sweep_dir": str(sweep_dir), "name": manifest["name"], "executor": manifest["executor"],
                   "state": state, "already_submitted": already, "sbatch_calls": sbatch_calls,
                   "timing_s": {k: round(v, 3) for k, v in (timing or {}).items()},
                   "points": [{"index": e["index"], "storage_dir": e["storage_dir"], "job_id": e["job_id"],
                               "updates": e["updates"], "named_configs": e["named_configs"],
                               "seed": e.get("seed")}
                              for e in manifest["points"]]}
        if rows is not None:
            states = {r["index"]: r["state"] for r in rows}
            for p in summary["points"]:
                p["state"] = states.get(p["index"])
        print(json.dumps(summary, indent=2))
    else:
        print(sweep_dir)
    if rows is not None:
        sweeps.check_finished(rows, sweep_dir)
    return 0


class Progress:
    """One line of counts and a bar; rewritten in place on a terminal, printed on change
    otherwise (CI logs)."""

    def __init__(self, total: int):
        self.total = total
        self.last = ""
        self.tty = sys.stderr.isatty()

    def show(self, rows, final: bool = False) -> None:
        from .results import TERMINAL, counts

        c = counts(rows)
        done = sum(v for k, v in c.items() if k in TERMINAL)
        width = 24
        bar = "#" * (width * done // max(self.total, 1))
        text = f"[{bar:<{width}}] {done}/{self.total}  " + "  ".join(f"{k} {v}" for k, v in c.items())
        if text == self.last:
            if final and self.tty:
                sys.stderr.write("\n")
            return
        self.last = text
        if self.tty:
            sys.stderr.write("\r\033[K" + text + ("\n" if final else ""))
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()


def _dry_run(plan, as_json: bool) -> int:
    from .executor import LocalBackend, SlurmBackend

    sweep_dir = plan.sweep_dir
    if as_json:
        print(json.dumps({"name": plan.name, "sweep_dir": str(sweep_dir), "executor": plan.executor,
                          "points": [{"index": p.index, "updates": p.updates, "named_configs": list(p.named_configs),
                                      "storage_dir": str(d)} for p, d in zip(plan.points, plan.predicted_dirs)]},
                         indent=2))
        return 0
    varied = list(plan.points[0].varied) if plan.points else []
    header = ["#"] + varied + ["storage dir (would be)"]
    rows = [[str(p.index)] + [_cell(p.varied_values().get(k, ""), k) for k in varied] + [str(d)]
            for p, d in zip(plan.points, plan.predicted_dirs)]
    print(f"sweep {plan.name!r}: {len(plan.points)} points of experiment {plan.experiment_name!r} "
          f"({plan.executor}); sweep dir would be {sweep_dir}")
    print(format_table(header, rows, max_width=200))
    if plan.storage_key:
        print(f"each point's storage dir is injected as {plan.storage_key}")
    if plan.executor == "slurm":
        print("\nbatch script (one per job array):\n")
        print(SlurmBackend(sweep_dir, plan.request.resources, plan.name).batch_script(len(plan.points)))
    else:
        print("\nlocal command per point:\n")
        import shlex

        print(" ".join(shlex.quote(c) for c in LocalBackend(sweep_dir, plan.request.jobs).command("INDEX")))
        print(f"(in {plan.workdir})")
    print("dry run: nothing was created or submitted")
    return 0


def _cell(value, key: str = "") -> str:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return " ".join(value)
    if key == "named_configs":  # names, as collect shows them
        return str(value)
    return repr(value) if isinstance(value, str) else str(value)


def format_table(header: tp.Sequence[str], rows: tp.Sequence[tp.Sequence[str]], max_width: int = 40,
                 total_width: int = 100) -> str:
    """Aligned columns, cells cut at ``max_width``; a table wider than ``total_width`` is
    printed in blocks of columns, each repeating the first column (as pandas does)."""
    cut = lambda s: s if len(s) <= max_width else s[: max_width - 1] + "…"
    table = [[cut(str(c)) for c in header]] + [[cut(str(c)) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    blocks, current, used = [], [0], widths[0]
    for i in range(1, len(header)):
        if used + 2 + widths[i] > total_width and len(current) > 1:
            blocks.append(current)
            current, used = [0], widths[0]
        current.append(i)
        used += 2 + widths[i]
    blocks.append(current)
    out = []
    for cols in blocks:
        lines = ["  ".join(r[i].ljust(widths[i]) for i in cols).rstrip() for r in table]
        lines.insert(1, "  ".join("-" * widths[i] for i in cols))
        out.append("\n".join(lines))
    return "\n\n".join(out)


def _sweep(args):
    from . import storage

    path = storage.find_sweep(args.sweep, args.root)
    return path, storage.read_manifest(path)


def _age(text) -> str:
    import datetime

    if not text:
        return "-"
    try:
        then = datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return "-"
    secs = max(0, int(time.time() - then))
    return f"{secs}s ago" if secs < 120 else f"{secs // 60}m ago" if secs < 7200 else f"{secs // 3600}h ago"


def _duration(secs: float) -> str:
    secs = int(secs)
    return f"{secs // 3600}:{secs % 3600 // 60:02d}:{secs % 60:02d}"


def render_status(manifest, rows) -> str:
    from .results import TERMINAL, counts

    varied = list(manifest.get("varied", []))
    header = ["#"] + varied + ["state", "att", "progress", "heartbeat", "elapsed", "job"]
    table = []
    for r in rows:
        progress = "-" if r["iteration"] is None else f"it {r['iteration']}" + (
            f" ep {r['epoch']}" if r.get("epoch") is not None else "")
        # an ended point has no heartbeat to watch: show when it ended
        beat = f"ended {_age(r['ended'])}" if r["state"] in TERMINAL and r.get("ended") else \
            "-" if r["state"] in TERMINAL else _age(r["heartbeat"])
        table.append([str(r["index"])] + [_cell(r["varied"].get(k, ""), k) for k in varied] +
                     [r["state"], str(r["attempts"]), progress, beat, _duration(r["elapsed_s"]),
                      r["job_id"] or "-"])
    c = counts(rows)
    done = sum(v for k, v in c.items() if k in TERMINAL)
    bar = "#" * (30 * done // max(len(rows), 1))
    summary = f"[{bar:<30}] {done}/{len(rows)} ended  " + "  ".join(f"{k} {v}" for k, v in c.items())
    width = max(12, 60 // max(len(varied), 1))
    return f"sweep {manifest['name']} ({manifest.get('executor')})\n" + format_table(header, table, max_width=width) + \
        "\n" + summary


def warn_damaged(index, paths) -> None:
    """One line per damaged file: which file, and what the command did about it."""
    for path in paths or ():
        print(f"ptslurm: warning: {path} is damaged (truncated, or not what ptslurm or sacred wrote); "
              f"point {index} is shown without what it held", file=sys.stderr)


def cmd_status(args) -> int:
    from . import results
    from . import sweep as sweeps

    sweep_dir, manifest = _sweep(args)
    warned = False
    while True:
        rows = results.status_rows(manifest, sweeps.sweep_states(sweep_dir, manifest))
        if not warned:
            for r in rows:
                warn_damaged(r["index"], r.get("damaged"))
            warned = True
        finished = all(r["state"] in results.TERMINAL for r in rows)
        if args.json:
            print(json.dumps([{k: v for k, v in r.items() if k != "status"} for r in rows], indent=2))
        else:
            text = render_status(manifest, rows)
            if args.watch and sys.stdout.isatty():
                sys.stdout.write("\033[H\033[J")
            print(text, flush=True)
        if not args.watch or finished:
            return 0
        time.sleep(args.interval)


def cmd_collect(args) -> int:
    import csv
    import io

    from . import results, storage

    dirs = [storage.find_sweep(s, args.root) for s in args.sweeps]
    records, save_cache = results.read_records(dirs, args.root, use_cache=not args.no_cache)
    for r in records:
        warn_damaged(r["index"], r.pop("_damaged", None))
    if args.best:
        ranked = results.sort_records(records, args.best)
        key = f"{args.best}/best" if f"{args.best}/best" in ranked[0] else args.best
        if not isinstance(ranked[0].get(key), (int, float)):
            raise UsageError(f"no point reported {args.best!r} yet")
        print(ranked[0]["storage_dir"])
        save_cache()
        return 0
    if args.sort:
        records = results.sort_records(records, args.sort)
    columns = []
    for r in records:
        columns += [k for k in r if k not in columns]
    if len(dirs) == 1 and "sweep" in columns:
        columns.remove("sweep")
    out = io.StringIO()
    if args.format == "json":
        json.dump([{k: r.get(k) for k in columns} for r in records], out, indent=2)
        out.write("\n")
    elif args.format == "csv":
        writer = csv.writer(out)
        writer.writerow(columns)
        writer.writerows([r.get(k) for k in columns] for r in records)
    else:
        cells = [[_fmt(r.get(k)) for k in columns] for r in records]
        if args.format == "md":
            out.write("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n")
            out.writelines("| " + " | ".join(c) + " |\n" for c in cells)
        else:
            shown = [c for c in columns if c != "storage_dir"]
            idx = [columns.index(c) for c in shown]
            out.write(format_table(shown, [[row[i] for i in idx] for row in cells], max_width=30) + "\n")
    if args.output:
        from pathlib import Path

        Path(args.output).write_text(out.getvalue())
        print(f"wrote {len(records)} rows to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(out.getvalue())
    save_cache()
    return 0


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def cmd_cancel(args) -> int:
    from . import sweep as sweeps

    sweep_dir, manifest = _sweep(args)
    done = sweeps.cancel(sweep_dir, sweeps.select_points(manifest, args.points))
    print(f"cancelled {len(done)} point(s)" + (f": {', '.join(map(str, done))}" if done else
                                               " (nothing was queued or running)"))
    return 0


def cmd_resubmit(args) -> int:
    from . import sweep as sweeps

    sweep_dir, manifest = _sweep(args)
    if args.failed:
        rows = sweeps.sweep_states(sweep_dir, manifest)
        indices = [r["index"] for r in rows if r["state"] in sweeps.RETRYABLE]
    else:
        indices = sweeps.select_points(manifest, args.points)
    if not indices:
        print("nothing to resubmit: no point failed", file=sys.stderr)
        return 0
    if not args.refresh_code:
        changed = sweeps.changed_code(manifest, sweep_dir)
        if changed:
            more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
            print(f"ptslurm: warning: {', '.join(changed[:3])}{more} changed since submission; the points rerun "
                  f"the submitted code (add --refresh-code to take the new code)", file=sys.stderr)
    jobs = sweeps.resubmit(sweep_dir, indices, refresh_code=args.refresh_code)
    print(f"resubmitted {len(jobs)} point(s): " + ", ".join(f"{i} ({j})" for i, j in sorted(jobs.items())))
    return 0


def cmd_logs(args) -> int:
    from . import results
    from . import sweep as sweeps

    sweep_dir, manifest = _sweep(args)
    n = len(manifest["points"])
    if not 0 <= args.point < n:
        raise UsageError(f"point {args.point} is out of range: sweep {manifest['name']!r} has points 0-{n - 1}")
    path, status = sweeps.log_paths(sweep_dir, manifest, args.point, args.attempt, live=args.follow)
    if status.get("note"):
        print(status["note"], file=sys.stderr)
    offset = 0
    while True:
        try:
            with open(path) as fh:
                fh.seek(offset)
                chunk = fh.read()
                offset = fh.tell()
        except (OSError, TypeError):
            chunk = ""
        sys.stdout.write(chunk)
        sys.stdout.flush()
        state = results.read_status(manifest["points"][args.point]["storage_dir"]).get("state", "pending")
        if not args.follow or state in results.TERMINAL:
            break
        time.sleep(1)
    attempts = status.get("attempts", [])
    chosen = attempts[(args.attempt or len(attempts)) - 1] if attempts else {}
    if chosen.get("traceback") and chosen.get("state") in ("failed", "requeued") and chosen.get("cause") == "failed":
        if not offset:
            print(f"(no captured output at {path})")
        print(f"--- attempt {chosen['attempt']} failed ---")
        sys.stdout.write(chosen["traceback"])
    elif not offset:
        print(f"(no output yet for point {args.point}: {path})")
    return 0


def cmd_plot(args) -> int:
    from pathlib import Path

    from . import results

    sweep_dir, _ = _sweep(args)
    output = Path(args.output) if args.output else sweep_dir / f"{args.metric.replace('/', '_')}.png"
    fig = results.plot(sweep_dir, args.metric, output)
    print(f"wrote {output} ({len(fig.axes[0].get_lines())} curves)")
    return 0


def cmd_list(args) -> int:
    from . import results, storage
    from . import sweep as sweeps

    root = storage.resolve_root(args.root)
    rows = []
    for sweep_dir in results.sweeps_under(root):
        try:
            manifest = storage.read_manifest(sweep_dir)
        except PtslurmError as exc:
            rows.append([sweep_dir.name, "?", "?", "?", f"unreadable: {exc}"])
            continue
        c = results.counts(sweeps.sweep_states(sweep_dir, manifest))
        rows.append([manifest["name"], manifest["experiment"]["name"], manifest.get("executor", "?"),
                     manifest.get("created", "?")[:16], "  ".join(f"{k} {v}" for k, v in c.items())])
    if not rows:
        print(f"no sweeps under {root}")
        return 0
    print(format_table(["sweep", "experiment", "executor", "created", "points"], rows, max_width=40))
    return 0


def cmd_init(args) -> int:
    from pathlib import Path

    from .profile import init

    for path in init(Path(args.directory), force=args.force):
        print(f"wrote {path}")
    return 0


def cmd_run(args) -> int:
    from . import sweep as sweeps

    sweep_dir, manifest = _sweep(args)
    try:
        sweeps.run_here(sweep_dir, manifest, args.point, pdb=args.pdb)
    except PtslurmError:
        raise
    except Exception as exc:  # the run's own failure: its traceback was printed by sacred
        print(f"ptslurm: point {args.point} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_show(args) -> int:
    from . import sweep as sweeps

    sweep_dir, manifest = _sweep(args)
    config, source = sweeps.point_config(manifest, args.point)
    print(f"# point {args.point} of {manifest['name']}: {source}", file=sys.stderr)
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
    import warnings

    # sacred 0.8 imports pkg_resources; its deprecation notice would break one-line errors
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    parser = build_parser()
    rest, updates = split_with(argv)
    try:
        args = _parse(parser, rest, updates)
        if args.command == "sweep":
            return cmd_sweep(args, argv, updates)
        commands = {"init": cmd_init, "status": cmd_status, "collect": cmd_collect, "cancel": cmd_cancel,
                    "resubmit": cmd_resubmit, "logs": cmd_logs, "plot": cmd_plot, "list": cmd_list,
                    "run": cmd_run, "show": cmd_show}
        if args.command in commands:
            return commands[args.command](args)
        if updates:
            raise UsageError("`with` belongs after `ptslurm sweep EXPERIMENT`")
        parser.print_help()
        return 2
    except PtslurmError as exc:
        print(f"ptslurm: error: {exc.message}", file=sys.stderr)
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
        print(f"ptslurm: error: {exc.strerror.lower()}{where}; free space or choose another --root, then run the "
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
