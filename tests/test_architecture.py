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


def path_of(module: str) -> Path:
    """The file of a module named as below (``records``: records/__init__.py, ``job.point``)."""
    folder = PACKAGE / module.replace(".", "/")
    return folder / "__init__.py" if folder.is_dir() else folder.with_suffix(".py")


def package_of(module: str) -> str:
    """The package a module's relative imports start from ('' for ptslurm itself)."""
    return module if path_of(module).name == "__init__.py" else module.rpartition(".")[0]


def imports(module: str, top_level: bool = False) -> set:
    """Every module name a module imports, at any depth or (``top_level``) at import time
    only, absolute (``from ..records import storage``: ptslurm.records, ptslurm.records.storage)."""
    tree = ast.parse(path_of(module).read_text())
    out = set()
    for node in (tree.body if top_level else ast.walk(tree)):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = ["ptslurm"] + [p for p in package_of(module).split(".") if p]
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module
            modules = {f"{base}.{alias.name}" for alias in node.names if base.startswith("ptslurm")
                       and path_of(f"{base}.{alias.name}".removeprefix("ptslurm").lstrip(".")).exists()}
            out |= modules or {base}  # `from . import storage` imports storage; `from .x import f`, x
    return out


MODULES = sorted(".".join(p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__").removesuffix(
    "__init__") for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def users(prefix: str) -> set:
    return {m for m in MODULES if any(i == prefix or i.startswith(prefix + ".") for i in imports(m))}


def test_only_programs_starts_programs():
    assert users("subprocess") == {"programs"}


def test_only_the_scheduler_backends_call_the_schedulers_commands():
    """sbatch, squeue, sacct, scontrol and scancel are reached through ``schedulers`` (every
    question and order) and ``backends`` (submission): the fake stands in for both."""
    assert users("ptslurm.schedulers.commands") == {"schedulers", "schedulers.backends"}


def test_no_module_outside_the_backends_asks_which_scheduler_runs_a_sweep():
    """Code asks the scheduler (``schedulers.of(executor)``) instead of branching on its name
    (``--executor auto``, the user's word, may still be read as such)."""
    import re

    name = r"""(Executor\.(SLURM|LOCAL)|["'](slurm|local)["'])"""
    branching = {m for m in MODULES if m.partition(".")[0] != "schedulers" and re.search(
        rf"executor\s*[!=]=\s*{name}|{name}\s*[!=]=\s*[\w.]*executor", path_of(m).read_text())}
    assert not branching, branching


def test_only_the_adapters_import_sacred_and_submitit():
    assert users("sacred") == {"plan.sacred_adapter"}
    assert users("submitit") == {"schedulers.submitit_adapter"}


def test_the_trainer_sees_the_job_only_through_the_runtime():
    assert "ptslurm.job.point" not in imports("train.trainer") and "ptslurm.job.runtime" in imports("train.trainer")
    assert not imports("job.runtime") & {"sacred", "ptslurm.job.point", "ptslurm.submit.sweep"}
    assert "torch" not in imports("job.runtime", top_level=True)  # only init_process_group needs it


def test_nothing_below_the_cli_prints_or_parses_arguments():
    # the parser, and the verbs it calls with its arguments
    assert {m.partition(".")[0] for m in users("argparse")} == {"cli"}


def test_no_module_is_over_500_lines():
    long = {m: n for m in MODULES if (n := len(path_of(m).read_text().splitlines())) > 500}
    assert not long, f"split these along their concerns: {long}"


STRICT = ("records", "records.recordkit", "read.state", "plan.make", "submit.submission", "submit.lifecycle",
          "submit.sweep", "schedulers.backends", "schedulers", "job.runtime")


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
            part = name.removeprefix("ptslurm.")
            if name.startswith("ptslurm.") and part in MODULES and part != m:
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
    """status, collect, list and ptslurm.collect() read through ``read/``: it reaches only the
    records, the read side and the scheduler's questions (``schedulers``, never the backends
    that submit); it asks only the questions that read (squeue, sacct, scontrol ping) and
    calls no command itself."""
    import re

    graph = internal_graph()
    for start in [m for m in MODULES if m.startswith("read.")]:
        reach = reachable(graph, start) | {start}
        allowed = {"errors", "programs", "schedulers", "schedulers.commands", "schedulers.slurmtext"}
        assert {m for m in reach if m not in allowed and m.partition(".")[0] not in ("records", "read")} == set(), start
        for module in reach - {"schedulers", "schedulers.commands", "programs"}:
            text = path_of(module).read_text()
            assert not re.search(r"\b(commands|programs)\.", text), module
            used = set(re.findall(r"\b(?:asker|scheduler|schedulers\.of\([^)]*\))\.([a-z_]+)\(", text))
            assert used <= {"queue_states", "accounting_history", "slurm_available"}, (module, used)


# the folders of the flow, lowest first: a module imports from its own folder or one above it
# in this list (errors and programs, which every layer uses, sit below them all)
LAYERS = ("records", "schedulers", "read", "plan", "job", "submit", "train", "api", "cli")


def layer(module: str) -> int:
    top = module.partition(".")[0]
    if top in ("errors", "programs"):
        return -1
    return LAYERS.index(top) if top in LAYERS else len(LAYERS)  # ptslurm/__init__ and __main__: the top


def test_every_module_lives_in_a_folder_of_the_flow():
    loose = {m for m in MODULES if "." not in m and m not in LAYERS + ("errors", "programs", "", "__main__")}
    assert not loose, f"put these in the folder of their stage: {sorted(loose)}"


def test_imports_point_down_the_flow():
    """records <- schedulers <- read <- plan <- job <- submit <- train <- api <- cli: nothing
    imports a folder above its own (function-local imports included)."""
    graph = internal_graph()
    upward = sorted((m, t) for m, targets in graph.items() for t in targets if layer(t) > layer(m))
    assert not upward, f"imports against the flow: {upward}"


def test_user_code_importing_the_runtime_pays_for_nothing_else():
    """``ptslurm.job`` and ``ptslurm.train`` stay empty packages: user code imports
    ``ptslurm.job.runtime`` (should_stop, get_storage_dir) and the Trainer inside every job."""
    for package in ("job", "train", "plan", "read", "submit"):
        assert not imports(package), package


ON_DISK_NAMES = {"manifest.json", "ptslurm_status.json", "ptslurm_intent.json", "ptslurm_lease.json", "config.json",
                 "run.json", "cout.txt", "metrics.json", "collect_cache.json", "checkpoints", ".ptslurm-claim",
                 ".ptslurm.lock"}  # (not "sacred" and "sweeps": also a library's name and an argument's)
SLURM_STATES = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "SUSPENDED", "COMPLETING"}


def constants(module: str) -> set:
    """The string constants of a module's code (docstrings and f-string text left out)."""
    tree = ast.parse(path_of(module).read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef))
            and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docs}


def test_records_owns_every_on_disk_name_and_slurms_state_table():
    """A file's name, or which SLURM states mean waiting or on a node, is spelled once: in
    records (the fake scheduler's own queue aside)."""
    spelled = {m: constants(m) & (ON_DISK_NAMES | SLURM_STATES) for m in MODULES if m != "records"}
    spelled["schedulers.backends"] -= {"PENDING"}  # FakeCluster's jobs: its queue, not a reading of SLURM's
    assert not {m: s for m, s in spelled.items() if s}, spelled


def test_only_point_paths_joins_a_storage_dirs_file_names():
    """A storage dir's files are found by role (``records.PointPaths``), not by joining names."""
    import re

    joins = {m for m in MODULES if m != "records" and re.search(
        r"/ (records\.)?(STATUS|INTENT|LEASE|CONFIG|CHECKPOINTS|SACRED|WORK)\b", path_of(m).read_text())}
    assert not joins, joins


def test_every_error_class_is_in_errors():
    defined = {m: [n.name for n in ast.walk(ast.parse(path_of(m).read_text()))
                   if isinstance(n, ast.ClassDef) and n.name.endswith(("Error", "Held"))] for m in MODULES}
    assert {m: c for m, c in defined.items() if c and m != "errors"} == {}


def test_each_verbs_options_live_with_the_verb():
    """A verb's options are added by the module that runs it (its ``add_parsers``), and the
    parser module adds none of its own."""
    import argparse
    import importlib

    from ptslurm.cli import build_parser

    parser = build_parser()
    verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert len(verbs) > 20
    for name, sub in verbs.items():
        run = sub.get_default("run")
        assert run.__name__ == "cmd_" + name.replace("-", "_"), name
        alone = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(run.__module__).add_parsers(alone)
        assert name in alone.choices, f"{name}'s options are not added by {run.__module__}, which runs it"
    assert "add_argument(" not in (PACKAGE / "cli" / "__init__.py").read_text().replace(
        'parser.add_argument("--version"', "")
