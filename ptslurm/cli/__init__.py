"""Command line: the parser and exit codes. Each verb, its options and what it prints live in
a verb module (``sweepverb``, ``readverbs``, ``lifeverbs``, ``pointverbs``, ``searchverbs``,
``setupverbs``); nothing outside ``cli`` prints or exits.

Start-up imports neither torch nor sacred: the verb modules are light at import (``--help``
builds every verb's options) and each verb imports what it needs when it runs.
"""
import argparse
import os
import sys
import typing as tp

from .. import __version__
from ..errors import PtslurmError, UsageError


def build_parser() -> argparse.ArgumentParser:
    """The parser of every verb: each verb module adds its own verbs and their options
    (``add_parsers``), with the function that runs each (``run``)."""
    from . import lifeverbs, pointverbs, readverbs, searchverbs, setupverbs, sweepverb

    parser = argparse.ArgumentParser(
        prog="ptslurm",
        description="Run sacred experiment sweeps on SLURM (or locally), one storage dir per point.",
        epilog="Example: ptslurm sweep examples/tiny.py with 'lr=[1e-3,1e-4]' 'batch_size=[16,32]'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ptslurm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for verbs in (sweepverb, readverbs, lifeverbs, pointverbs, searchverbs, setupverbs):  # --help's order
        verbs.add_parsers(sub)
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
        if args.command and updates and not getattr(args, "takes_updates", False):
            raise UsageError(f"`ptslurm {args.command}` takes no config updates: `with` belongs after "
                             f"`ptslurm sweep EXPERIMENT` or `ptslurm extend SWEEP`")
        if args.command:
            args.argv, args.updates = argv, updates
            return tp.cast(int, args.run(args))
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
