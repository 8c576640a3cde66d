"""The module boundaries README's architecture section promises, read from the source: one
module starts programs, one adapter per library touches its internals, the Trainer sees the
job only through the runtime, and the records are fully typed (mypy, in CI)."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast

PACKAGE = Path(__file__).resolve().parent.parent / "ptslurm"


def imports(module: str, top_level: bool = False) -> set:
    """Every module name ``ptslurm/<module>.py`` imports, at any depth or (``top_level``) at
    import time only (relative ones as ``ptslurm.x``)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    out = set()
    for node in (tree.body if top_level else ast.walk(tree)):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ("ptslurm." + (node.module or "")).rstrip(".") if node.level else node.module
            out.add(base)
            if node.level and not node.module:
                out.update(f"ptslurm.{alias.name}" for alias in node.names)
    return out


MODULES = sorted(p.stem for p in PACKAGE.glob("*.py"))


def users(prefix: str) -> set:
    return {m for m in MODULES if any(i == prefix or i.startswith(prefix + ".") for i in imports(m))}


def test_only_programs_starts_programs():
    assert users("subprocess") == {"programs"}


def test_only_the_scheduler_backends_call_the_schedulers_commands():
    """sbatch, squeue, sacct, scontrol and scancel are reached through ``schedulers`` (every
    question and order) and ``backends`` (submission): the fake stands in for both."""
    assert users("ptslurm.commands") == {"schedulers", "backends"}


def test_no_module_outside_the_backends_asks_which_scheduler_runs_a_sweep():
    """Code asks the scheduler (``schedulers.of(executor)``) instead of branching on its name
    (``--executor auto``, the user's word, may still be read as such)."""
    import re

    name = r"""(Executor\.(SLURM|LOCAL)|["'](slurm|local)["'])"""
    branching = {m for m in MODULES if m not in ("schedulers", "backends") and re.search(
        rf"executor\s*[!=]=\s*{name}|{name}\s*[!=]=\s*[\w.]*executor", (PACKAGE / f"{m}.py").read_text())}
    assert not branching, branching


def test_only_the_adapters_import_sacred_and_submitit():
    assert users("sacred") == {"sacred_adapter"}
    assert users("submitit") == {"submitit_adapter"}


def test_the_trainer_sees_the_job_only_through_the_runtime():
    assert "ptslurm.job" not in imports("trainer") and "ptslurm.runtime" in imports("trainer")
    assert not imports("runtime") & {"sacred", "ptslurm.job", "ptslurm.sweep"}
    assert "torch" not in imports("runtime", top_level=True)  # only init_process_group needs it


def test_nothing_below_the_cli_prints_or_parses_arguments():
    # the parser, and the verbs it calls with its arguments
    assert users("argparse") == {"cli", "verbs", "searchverbs"}


def test_no_module_is_over_500_lines():
    long = {m: n for m in MODULES if (n := len((PACKAGE / f"{m}.py").read_text().splitlines())) > 500}
    assert not long, f"split these along their concerns: {long}"


STRICT = ("records", "recordkit", "state", "plan", "submission", "lifecycle", "sweep", "backends", "schedulers",
          "runtime")


def test_the_core_is_checked_as_mypy_strict_checks_it():
    """setup.cfg gives the core modules the flags of ``mypy --strict`` (the run above applies
    them): the records, the state function, the plan, the submission protocol, the life cycle,
    the backends and the runtime."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(PACKAGE.parent / "setup.cfg")
    flags = {"disallow_untyped_defs", "disallow_incomplete_defs", "disallow_any_generics", "disallow_untyped_calls",
             "disallow_untyped_decorators", "disallow_subclassing_any", "warn_return_any", "no_implicit_reexport",
             "strict_equality"}
    strict = set()
    for section in cfg.sections():
        if section.startswith("mypy-") and all(cfg.getboolean(section, f, fallback=False) for f in flags):
            strict |= {m.strip().removeprefix("ptslurm.") for m in section[len("mypy-"):].split(",")}
    assert set(STRICT) <= strict, sorted(set(STRICT) - strict)


def internal_graph() -> dict:
    """module -> the ptslurm modules it imports anywhere (function-local imports included)."""
    graph = {}
    for m in MODULES:
        found = set()
        for name in imports(m):
            if name.startswith("ptslurm."):
                part = name.split(".")[1]
                if part in MODULES and part != m:
                    found.add(part)
        graph[m] = found
    return graph


def reachable(graph: dict, start: str) -> set:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_import_graph_has_no_cycle():
    graph = internal_graph()
    cycles = sorted(m for m in MODULES if m in reachable(graph, m))
    assert not cycles, f"modules on an import cycle: {cycles}"


def test_the_read_side_cannot_reach_a_submission():
    """status, collect, list and ptslurm.collect() read through results: it reaches neither
    the backends, the submission code nor the job; it asks the scheduler (``schedulers``)
    only the questions that read (squeue, sacct, scontrol ping) and calls no command itself."""
    import re

    graph = internal_graph()
    for start in ("state", "results", "reportdata"):
        reach = reachable(graph, start) | {start}
        assert not reach & {"backends", "submission", "lifecycle", "sweep", "job", "submitit_adapter", "waves",
                            "housekeeping", "verbs", "cli"}, (start, reach)
        for module in reach - {"schedulers", "commands", "programs"}:
            text = (PACKAGE / f"{module}.py").read_text()
            assert not re.search(r"\b(commands|programs)\.", text), module
            used = set(re.findall(r"\b(?:asker|scheduler|schedulers\.of\([^)]*\))\.([a-z_]+)\(", text))
            assert used <= {"queue_states", "accounting_history", "slurm_available"}, (module, used)


ON_DISK_NAMES = {"manifest.json", "ptslurm_status.json", "ptslurm_intent.json", "ptslurm_lease.json", "config.json",
                 "run.json", "cout.txt", "metrics.json", "collect_cache.json", "checkpoints", ".ptslurm-claim",
                 ".ptslurm.lock"}  # (not "sacred" and "sweeps": also a library's name and an argument's)
SLURM_STATES = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "SUSPENDED", "COMPLETING"}


def constants(module: str) -> set:
    """The string constants of a module's code (docstrings and f-string text left out)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef))
            and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docs}


def test_records_owns_every_on_disk_name_and_slurms_state_table():
    """A file's name, or which SLURM states mean waiting or on a node, is spelled once: in
    records (the fake scheduler's own queue aside)."""
    spelled = {m: constants(m) & (ON_DISK_NAMES | SLURM_STATES) for m in MODULES if m != "records"}
    spelled["backends"] -= {"PENDING"}  # FakeCluster's jobs: its queue, not a reading of SLURM's
    assert not {m: s for m, s in spelled.items() if s}, spelled


def test_only_point_paths_joins_a_storage_dirs_file_names():
    """A storage dir's files are found by role (``records.PointPaths``), not by joining names."""
    import re

    joins = {m for m in MODULES if m != "records" and re.search(
        r"/ (records\.)?(STATUS|INTENT|LEASE|CONFIG|CHECKPOINTS|SACRED|WORK)\b", (PACKAGE / f"{m}.py").read_text())}
    assert not joins, joins


def test_every_error_class_is_in_errors():
    defined = {m: [n.name for n in ast.walk(ast.parse((PACKAGE / f"{m}.py").read_text()))
                   if isinstance(n, ast.ClassDef) and n.name.endswith(("Error", "Held"))] for m in MODULES}
    assert {m: c for m, c in defined.items() if c and m != "errors"} == {}
