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
    g.add_argument("--partition", "-p")
    g.add_argument("--gpus", type=int, help="GPUs per point (requested as --gres=gpu:N)")
    g.add_argument("--cpus", type=int, help="CPUs per point (--cpus-per-task)")
    g.add_argument("--mem", type=float, dest="mem_gb", metavar="GB", help="memory per point in GB")
    g.add_argument("--time", "-t", help="time limit: minutes, H:MM:SS or D-HH:MM:SS")
    g.add_argument("--account", "-A")
    g.add_argument("--qos")
    g.add_argument("--constraint", "-C")
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
    _add_resources(sw)

    ini = sub.add_parser("init", help="write a cluster profile and an experiment skeleton",
                         description="Write ptslurm.yaml (cluster profile) and experiment.py (a sacred "
                                     "experiment skeleton) into DIR.",
                         epilog="Example: ptslurm init . && ptslurm sweep experiment.py with 'lr=[1e-3,1e-4]'")
    ini.add_argument("directory", nargs="?", default=".")
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


def cmd_sweep(args, argv: tp.List[str], updates: tp.List[str]) -> int:
    from . import profile as profiles
    from . import sweep as sweeps

    started = time.perf_counter()
    prof = profiles.load(profiles.find(args.profile))
    key = args.storage_key if args.storage_key is not None else prof.get("storage_key")
    request = sweeps.SweepRequest(
        experiment=args.experiment, with_tokens=tuple(updates), sweep_file=args.sweep_file,
        name=args.name, root=args.root or prof.get("root"), storage_key=key or None,
        executor=args.executor or prof.get("executor") or "auto", jobs=args.jobs or prof.get("jobs") or 1,
        resources=_resources(args, prof), dry_run=args.dry_run, argv=tuple(argv),
    )
    plan = sweeps.plan(request)
    timing = {"preflight": time.perf_counter() - started}
    for warning in plan.warnings:
        print(f"ptslurm: warning: {warning}", file=sys.stderr)
    if args.dry_run:
        return _dry_run(plan, args.json)
    manifest = sweeps.existing(plan)
    if manifest is not None:
        sweep_dir = storage_sweep_dir(plan)
        print(f"ptslurm: sweep {plan.name!r} already exists with this spec: nothing new to submit",
              file=sys.stderr)
        return _finish(args, sweep_dir, manifest, plan, sbatch_calls=0, already=True)
    if plan.executor == "slurm":
        sweeps.executors.SlurmBackend(storage_sweep_dir(plan), request.resources, plan.name).validate(len(plan.points))
    t_create = time.perf_counter()
    sweep_dir, manifest = sweeps.create(plan)
    if plan.executor == "slurm":
        backend = sweeps.submit(plan, sweep_dir, manifest)
        timing["submit"] = time.perf_counter() - t_create
        args.timing = timing
        arrays = sorted({e["job_id"].split("_")[0] for e in manifest["points"]})
        print(f"ptslurm: queued {len(plan.points)} points of {plan.experiment_name!r} as "
              f"{len(arrays)} job array{'s' if len(arrays) != 1 else ''} ({', '.join(arrays)})", file=sys.stderr)
        return _finish(args, sweep_dir, manifest, plan, sbatch_calls=backend.sbatch_calls + 1)
    print(f"ptslurm: no SLURM here: running {len(plan.points)} points of {plan.experiment_name!r} "
          f"locally, {request.jobs} at a time" if request.executor == "auto" else
          f"ptslurm: running {len(plan.points)} points locally, {request.jobs} at a time", file=sys.stderr)
    progress = Progress(len(plan.points))
    rows = sweeps.run_local(plan, sweep_dir, manifest, on_change=progress.show)
    progress.show(rows, final=True)
    return _finish(args, sweep_dir, manifest, plan, sbatch_calls=0, rows=rows)


def storage_sweep_dir(plan):
    from . import storage

    return storage.sweeps_dir(plan.root) / plan.name


def _finish(args, sweep_dir, manifest, plan, sbatch_calls, rows=None, already=False) -> int:
    from . import sweep as sweeps

    if args.wait and rows is None:
        progress = Progress(len(manifest["points"]))
        while True:
            rows = sweeps.sweep_states(sweep_dir, manifest)
            done = all(r["state"] in sweeps.results.TERMINAL for r in rows)
            progress.show(rows, final=done)
            if done:
                break
            time.sleep(float(os.environ.get("PTSLURM_POLL_S", "2")))
    if args.json:
        summary = {"sweep_dir": str(sweep_dir), "name": manifest["name"], "executor": manifest["executor"],
                   "state": manifest["state"], "already_submitted": already, "sbatch_calls": sbatch_calls,
                   "timing_s": {k: round(v, 3) for k, v in getattr(args, "timing", {}).items()},
                   "points": [{"index": e["index"], "storage_dir": e["storage_dir"], "job_id": e["job_id"],
                               "updates": e["updates"], "named_configs": e["named_configs"]}
                              for e in manifest["points"]]}
        if rows is not None:
            states = {r["index"]: r["state"] for r in rows}
            for p in summary["points"]:
                p["state"] = states.get(p["index"])
        print(json.dumps(summary, indent=2))
    else:
        print(sweep_dir)
    if rows is not None:
        sweeps.check_finished(rows)
    return 0


class Progress:
    """One line of counts and a bar; rewritten in place on a terminal, printed on change
    otherwise (CI logs)."""

    def __init__(self, total: int):
        self.total = total
        self.last = ""
        self.tty = sys.stderr.isatty()

    def show(self, rows, final: bool = False) -> None:
        from .results import counts

        c = counts(rows)
        done = sum(v for k, v in c.items() if k in ("completed", "failed", "cancelled", "timeout", "lost"))
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
    from .executor import SlurmBackend, LocalBackend
    from . import storage

    sweep_dir = storage.sweeps_dir(plan.root) / plan.name
    if as_json:
        print(json.dumps({"name": plan.name, "sweep_dir": str(sweep_dir), "executor": plan.executor,
                          "points": [{"index": p.index, "updates": p.updates, "named_configs": list(p.named_configs),
                                      "storage_dir": str(d)} for p, d in zip(plan.points, plan.predicted_dirs)]},
                         indent=2))
        return 0
    varied = list(plan.points[0].varied) if plan.points else []
    header = ["#"] + varied + ["storage dir (would be)"]
    rows = [[str(p.index)] + [_cell(p.varied_values().get(k, "")) for k in varied] + [str(d)]
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

        print(" ".join(shlex.quote(c) for c in LocalBackend(sweep_dir, plan.request.jobs).command(0)).replace(" 0", " INDEX"))
    print("dry run: nothing was created or submitted")
    return 0


def _cell(value) -> str:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return " ".join(value)
    return repr(value) if isinstance(value, str) else str(value)


def format_table(header: tp.Sequence[str], rows: tp.Sequence[tp.Sequence[str]], max_width: int = 40) -> str:
    cut = lambda s: s if len(s) <= max_width else s[: max_width - 1] + "…"
    table = [[cut(str(c)) for c in header]] + [[cut(str(c)) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cmd_init(args) -> int:
    from pathlib import Path

    from .profile import init

    for path in init(Path(args.directory), force=args.force):
        print(f"wrote {path}")
    return 0


def main(argv: tp.Optional[tp.List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    import warnings

    # sacred 0.8 imports pkg_resources; its deprecation notice would break one-line errors
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    parser = build_parser()
    rest, updates = split_with(argv)
    args = parser.parse_args(rest)
    try:
        if args.command == "sweep":
            return cmd_sweep(args, argv, updates)
        if args.command == "init":
            return cmd_init(args)
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


def entry_point() -> None:
    sys.exit(main())
