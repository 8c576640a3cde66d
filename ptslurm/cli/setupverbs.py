"""The verbs that set a user up: ``init`` (a profile and an experiment skeleton) and
``completion`` (the shell's completion script)."""
import argparse
import sys
import typing as tp
from pathlib import Path


def add_parsers(sub: tp.Any) -> None:
    """This module's verbs and their options."""
    cp = sub.add_parser("completion", help="print a shell completion script",
                        description="Print the completion script of bash or zsh: commands, options, sweep "
                                    "names and point indices.",
                        epilog='Example: eval "$(ptslurm completion bash)"   # in ~/.bashrc')
    cp.add_argument("shell", choices=["bash", "zsh"], help="the shell to complete in")
    cp.set_defaults(run=cmd_completion)

    ini = sub.add_parser("init", help="write a cluster profile and an experiment skeleton",
                         description="Write ptslurm.yaml (cluster profile) and experiment.py (a sacred "
                                     "experiment skeleton) into DIR.",
                         epilog="Example: ptslurm init . && ptslurm sweep experiment.py with 'lr=[1e-3,1e-4]'")
    ini.add_argument("directory", nargs="?", default=".", help="where to write the files (default: .)")
    ini.add_argument("--force", action="store_true", help="overwrite existing files")
    ini.set_defaults(run=cmd_init)


def cmd_completion(args: argparse.Namespace) -> int:
    from .completion import script

    sys.stdout.write(script(args.shell))
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from ..plan.profile import init

    for path in init(Path(args.directory), force=args.force):
        print(f"wrote {path}")
    return 0
