"""Shell completion: ``ptslurm completion bash|zsh`` prints a script that asks
``ptslurm __complete CWORD WORDS...`` for candidates: commands, options, sweep names under
the root, point indices of a sweep. Imported only when completing, so ``--help`` stays light."""
import json
import os
import typing as tp
from pathlib import Path

from ..records import MANIFEST, SWEEPS

BASH = """\
# ptslurm completion (bash): eval "$(ptslurm completion bash)" in ~/.bashrc
_ptslurm_complete() {
    local IFS=$'\\n'
    local candidates
    candidates="$(ptslurm __complete "$COMP_CWORD" "${COMP_WORDS[@]}" 2>/dev/null)"
    COMPREPLY=($(compgen -W "$candidates" -- "${COMP_WORDS[COMP_CWORD]}"))
}
complete -o default -F _ptslurm_complete ptslurm
"""
ZSH = "# ptslurm completion (zsh): eval \"$(ptslurm completion zsh)\" in ~/.zshrc\n" \
      "autoload -U +X bashcompinit && bashcompinit\n" + BASH.split("\n", 1)[1]

POINT_COMMANDS = ("logs", "run", "show", "command")  # their second positional is a point index


def script(shell: str) -> str:
    return {"bash": BASH, "zsh": ZSH}[shell]


Shape = tp.Dict[str, tp.Tuple[tp.List[str], tp.Set[str]]]  # command -> (its --options, those taking a value)


def _root(words: tp.Sequence[str]) -> Path:
    from ..records.storage import resolve_root

    for i, word in enumerate(words):
        if word == "--root" and i + 1 < len(words):
            return resolve_root(words[i + 1])
        if word.startswith("--root="):
            return resolve_root(word.split("=", 1)[1])
    return resolve_root(None)


def _sweep_names(root: Path) -> tp.List[str]:
    try:
        return sorted(p.name for p in (root / SWEEPS).iterdir() if (p / MANIFEST).is_file())
    except OSError:
        return []


def _points(root: Path, sweep: str) -> tp.List[str]:
    folder = Path(sweep) if os.sep in sweep else root / SWEEPS / sweep
    try:
        points = json.loads((folder / MANIFEST).read_text()).get("points") or []
    except (OSError, ValueError, AttributeError):
        return []
    return [str(i) for i in range(len(points))]


def candidates(shape: Shape, cword: int, words: tp.Sequence[str]) -> tp.List[str]:
    """What may stand at ``words[cword]`` (``words[0]`` is the program); ``shape``: the
    command line's commands and options (``cli.shape``)."""
    words = list(words) + [""] * max(0, cword + 1 - len(words))
    if cword <= 1:
        return sorted(shape) + ["--help", "--version"]
    command = words[1]
    if command not in shape:
        return []
    current, before = words[cword], words[2:cword]
    names, valued = shape[command]
    if current.startswith("-"):
        return names
    if before and before[-1] in valued:
        if before[-1] == "--state":
            from ..records import State

            return [s.value for s in State]
        return []  # a value: the shell completes file names
    if command in ("sweep", "init", "list"):
        return []  # files and folders: the shell's own completion
    positionals = [w for i, w in enumerate(before) if not w.startswith("-") and not (i and before[i - 1] in valued)]
    root = _root(words)
    if command == "collect" or not positionals:
        return _sweep_names(root)
    if command in POINT_COMMANDS and len(positionals) == 1:
        return _points(root, positionals[0])
    return []
