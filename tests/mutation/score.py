"""The mutation score of ptslurm's core against the fast tier, from mutmut's results.

Run by ``tests/mutation/run.sh`` after ``mutmut run``. The scope: the modules in setup.cfg's
``[mutmut] only_mutate``: every module with logic (the ones left out, and why, are listed at
the top of ``equivalents.txt``). Killed = killed, timed out or crashed the tests. Equivalent
mutants (no behaviour can tell them apart) are listed with the reason in ``equivalents.txt``
and left out of the count. The score of the last whole run is checked in (``score.txt``); a
lower one fails, and so does a module below 90 %.
"""
import json
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
KILLED = {"killed", "timeout", "segfault"}  # a mutant that crashes the tests is caught
TARGET = 90.0  # per module (issue 34)


def module_and_function(name: str):
    module, _, rest = name.partition(".x")
    function = re.sub(r"__mutmut_\d+$", "", rest).split("ǁ")[-1].lstrip("_") if "ǁ" in rest else \
        re.sub(r"__mutmut_\d+$", "", rest).lstrip("_")
    return module.replace("ptslurm.", ""), function


def equivalents() -> dict:
    """name or glob pattern -> why no test can tell the mutant from the code."""
    out = {}
    for line in (HERE / "equivalents.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, why = line.partition("#")
            if not why.strip():
                raise SystemExit(f"equivalents.txt: {name.strip()} has no reason")
            out[name.strip()] = why.strip()
    return out


def is_equivalent(name: str, equal: dict) -> bool:
    import fnmatch

    return name in equal or any(fnmatch.fnmatchcase(name, pattern) for pattern in equal if "*" in pattern)


def main() -> int:
    lines = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], capture_output=True,
                           text=True, check=True).stdout.splitlines()
    results = dict(ln.strip().rsplit(": ", 1) for ln in lines if ": " in ln)
    equal = equivalents()
    unknown = sorted(p for p in equal if not any(n == p or ("*" in p and __import__("fnmatch").fnmatchcase(n, p))
                                                  for n in results))
    by_module = defaultdict(Counter)
    survivors = []
    try:  # which functions the tests reach now (a "no tests" result older than them is not run)
        stats = json.loads(Path("mutants/mutmut-stats.json").read_text())["tests_by_mangled_function_name"]
    except (OSError, ValueError, KeyError):
        stats = {}

    def reached(name: str) -> bool:
        return bool(stats.get(re.sub(r"__mutmut_\d+$", "", name)))

    for name, status in sorted(results.items()):
        module = module_and_function(name)[0]
        if is_equivalent(name, equal):
            by_module[module]["equivalent"] += 1
            continue
        if status == "not checked" or (status == "no tests" and reached(name)):
            by_module[module]["unrun"] += 1  # a stopped run had not reached it (since then, tests reach it)
            continue
        by_module[module]["all"] += 1
        if status in KILLED:
            by_module[module]["killed"] += 1
        else:
            survivors.append(f"{name}: {status}")
            by_module[module]["untested"] += status == "no tests"
    if "--unkilled" in sys.argv:  # for run.sh --resume: the mutants to run again against the current tests
        print("\n".join(line.split(": ")[0] for line in survivors))
        return 0
    total = Counter()
    table = ["| module | mutants | equivalent | killed | survivors (no test reaches) | score |",
             "|---|---|---|---|---|---|"]
    below = []
    print(f"{'module':<28} {'killed':>7} {'of':>6} {'score':>7}")
    for module, c in sorted(by_module.items()):
        total.update(c)
        score = 100 * c["killed"] / max(c["all"], 1)
        print(f"{module:<28} {c['killed']:>7} {c['all']:>6} {score:>6.1f}%" + (f"  ({c['unrun']} not run)" if c["unrun"] else ""))
        if c["unrun"] and not c["all"]:
            table.append(f"| {module} | not run ({c['unrun']} mutants) | | | | |")
            continue
        if score < TARGET:
            below.append(module)
        table.append(f"| {module} | {c['all'] + c['equivalent']} | {c['equivalent']} | {c['killed']} | "
                     f"{c['all'] - c['killed']} ({c['untested']}) | {score:.1f} %"
                     + (f" ({c['unrun']} not run)" if c["unrun"] else "") + " |")
    score = 100 * total["killed"] / max(total["all"], 1)
    print(f"{'all':<28} {total['killed']:>7} {total['all']:>6} {score:>6.1f}%  ({total['equivalent']} equivalent "
          f"mutants left out, tests/mutation/equivalents.txt)" + (f"; {total['unrun']} not run" if total["unrun"] else ""))
    table.append(f"| **all** | {total['all'] + total['equivalent']} | {total['equivalent']} | {total['killed']} | "
                 f"{total['all'] - total['killed']} ({total['untested']}) | **{score:.1f} %** |")
    (HERE / "table.md").write_text("\n".join(table) + "\n")  # README's table, as this run measured it
    (HERE / "survivors.txt").write_text("\n".join(survivors) + "\n")
    print(f"survivors: tests/mutation/survivors.txt ({len(survivors)})")
    if unknown:
        print(f"equivalents.txt names mutants mutmut no longer makes: {unknown[:5]}")
    if below:
        print(f"below {TARGET:.0f} % of their non-equivalent mutants: {', '.join(below)}")
    try:  # the last whole run's score; none recorded yet for this scope: nothing to fall from
        recorded = float((HERE / "score.txt").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        recorded = 0.0
    if "--record" in sys.argv and not total["unrun"]:
        (HERE / "score.txt").write_text(f"{score:.1f} % of {total['all']} non-equivalent mutants killed by the fast tier\n")
    elif score + 0.05 < recorded:
        print(f"the score fell from {recorded:.1f}% (tests/mutation/score.txt) to {score:.1f}%")
        return 1
    return 1 if below else 0


if __name__ == "__main__":
    sys.exit(main())
