"""What several verbs share: the options they take alike (the sweep argument, --points,
--state, --where, the SLURM resources) and how those are read. Light at import, like every
verb module: ``ptslurm --help`` builds every verb's options."""
import argparse
import sys
import typing as tp

from ..errors import UsageError
from .argvalues import UNSET


def or_none(convert: tp.Callable[[str], tp.Any]) -> tp.Callable[[str], tp.Any]:
    def parse(text: str) -> tp.Any:
        return UNSET if text.strip().lower() == "none" else convert(text)

    parse.__name__ = getattr(convert, "__name__", "value")  # argparse names it in errors
    return parse


def add_resources(p: argparse.ArgumentParser,
                   title: str = "SLURM resources (per point; defaults from the profile)") -> None:
    g = p.add_argument_group(title)
    g.add_argument("--partition", "-p", type=or_none(str),
                   help="SLURM partition (default: the cluster's default partition; none: unset the profile's)")
    g.add_argument("--gpus", type=int, help="GPUs per node of a point (requested as --gres=gpu:N)")
    g.add_argument("--nodes", "-N", type=int, help="nodes per point (default 1); every node runs --tasks-per-node ranks")
    g.add_argument("--tasks-per-node", type=int, metavar="N",
                   help="ranks per node (default: one per GPU, one on CPU-only points); more than one rank "
                        "in all makes the point distributed (torch.distributed, NCCL on GPUs, gloo on CPUs)")
    g.add_argument("--cpus", type=or_none(int), help="CPUs per task (--cpus-per-task; none: the cluster's default)")
    g.add_argument("--mem", type=or_none(float), dest="mem_gb", metavar="GB",
                   help="memory per point in GB (none: the cluster's default, e.g. to drop the profile's)")
    g.add_argument("--time", "-t", type=or_none(str),
                   help="time limit in any form sbatch takes: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S (0-08:00 is 8 "
                        "hours; default: the partition's)")
    g.add_argument("--account", "-A", type=or_none(str), help="account to charge (sbatch --account)")
    g.add_argument("--qos", type=or_none(str), help="quality of service (sbatch --qos)")
    g.add_argument("--constraint", "-C", type=or_none(str), help="node features, e.g. a100 (sbatch --constraint)")
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


def sweep_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("sweep", help="sweep directory, or its name under the root")
    p.add_argument("--root", help="storage root for sweep names (default: $STORAGE_ROOT, else ~/ptslurm-runs)")


def filters(p: argparse.ArgumentParser, states: bool = True) -> None:
    if states:
        p.add_argument("--state", metavar="STATES", help="only points in these states, comma-separated "
                                                         "(e.g. failed,timeout)")
    p.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                   help="only points whose column KEY (a config key, state, result...) equals VALUE, as "
                        "`collect --where` (repeatable: all must hold), e.g. --where lr=0.001")


def sweep_of(args: argparse.Namespace) -> tp.Tuple[tp.Any, tp.Any]:
    """The sweep a verb names (its dir and manifest): ``SWEEP`` as a path or a name under ``--root``."""
    from ..records import manifests

    path = manifests.find_sweep(args.sweep, args.root)
    return path, manifests.read_manifest(path)


def selected(args: argparse.Namespace, sweep_dir: tp.Any, manifest: tp.Any,
             indices: tp.Optional[tp.List[int]] = None) -> tp.List[int]:
    """The points a verb acts on: ``--points`` (or ``indices``, default all), narrowed by
    ``--state`` (the states `status` shows) and ``--where`` (the columns `collect` shows)."""
    from ..read import results
    from ..read.state import sweep_states
    from ..submit import lifecycle

    chosen = lifecycle.select_points(manifest, getattr(args, "points", None)) if indices is None else indices
    if getattr(args, "state", None):
        wanted = wanted_states(args.state)
        states = sweep_states(sweep_dir, manifest)
        chosen = [i for i in chosen if states[i].state in wanted]
    if getattr(args, "where", None):
        records, _ = results.read_records([sweep_dir], getattr(args, "root", None))
        matching = {r["index"] for r in results.where(records, args.where)}
        chosen = [i for i in chosen if i in matching]
    return chosen


def wanted_states(text: str) -> tp.Set[str]:
    from ..records import State

    wanted = {s.strip().lower() for s in text.split(",") if s.strip()}
    known = {s.value for s in State}
    unknown = sorted(wanted - known)
    if unknown or not wanted:
        raise UsageError(f"--state {text!r}: unknown state {', '.join(unknown) or '(none given)'}; "
                         f"use {', '.join(sorted(known))}")
    return wanted


def filtered(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "state", None) or getattr(args, "where", None))


def warn_damaged(index: int, paths: tp.Iterable[str]) -> None:
    from .render import damaged

    for path in paths:
        print(f"ptslurm: warning: {damaged(index, path)}", file=sys.stderr)
