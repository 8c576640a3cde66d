"""The CLI starts fast: neither torch nor sacred is imported for --help or argument errors,
and ``import ptslurm`` is cheap."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "sacred", "submitit", "numpy", "yaml", "optuna", "tensorboard", "plotly")


@pytest.mark.parametrize("code", [
    "import ptslurm.cli, sys\ntry:\n    ptslurm.cli.main(['--help'])\nexcept SystemExit:\n    pass",
    "import ptslurm.cli, sys\ntry:\n    ptslurm.cli.main(['sweep', '--help'])\nexcept SystemExit:\n    pass",
    "import ptslurm.cli, sys\ntry:\n    ptslurm.cli.main(['report', '--help'])\nexcept SystemExit:\n    pass",
    "import ptslurm",
])
def test_start_up_imports_no_heavy_module(code):
    probe = code + "\nimport sys, json\nsys.stdout = sys.__stdout__\nprint('MODULES=' + json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    modules = json.loads(out.split("MODULES=")[1])
    loaded = [m for m in HEAVY if m in modules]
    assert loaded == [], f"start-up imported {loaded}"


@pytest.mark.fast
def test_the_public_names_are_pinned_resolvable_and_typed():
    """``__all__`` is the public API: each name resolves, and type checkers see its real
    type (the TYPE_CHECKING imports beside the lazy ``__getattr__``), not Any."""
    import ptslurm

    assert ptslurm.__all__ == ["__version__", "PtslurmError", "Interrupted", "get_storage_dir", "get_new_storage_dir",
                               "should_stop", "report_progress", "active_run", "distributed", "init_process_group",
                               "Configurable", "Model", "Trainer", "Adam", "SGD", "Batches", "dump_config", "collect",
                               "to_frame", "Client", "Sweep"]
    for name in ptslurm.__all__:
        assert getattr(ptslurm, name) is not None
    source = (Path(ptslurm.__file__)).read_text()
    typed = source.split("if _tp.TYPE_CHECKING:", 1)[1].split("def __getattr__", 1)[0]
    lazy = set(ptslurm._LAZY)
    assert all(name in typed for name in lazy), sorted(n for n in lazy if n not in typed)


@pytest.mark.fast
@pytest.mark.parametrize("argv", [["--help"], ["sweep", "--help"], ["status", "--help"], ["promote", "--help"]])
def test_help_loads_only_the_parser(argv):
    """`ptslurm --help` (and a verb's) loads the parser and the verb modules, which hold each
    verb's options, and nothing of what the verbs use when they run: the pinned list; a new
    import on the way to --help fails here."""
    code = ("import atexit, sys\n"
            "def dump():\n"
            "    sys.__stderr__.write('MODULES=' + repr(sorted(sys.modules)))\n"
            "atexit.register(dump)\n"
            f"sys.argv[1:] = {argv!r}\n"
            "from ptslurm.cli import entry_point\n"
            "entry_point()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and "usage: ptslurm" in proc.stdout, proc.stderr
    import ast

    modules = set(ast.literal_eval(proc.stderr.split("MODULES=")[1]))
    verbs = {f"ptslurm.cli.{m}" for m in ("sweepverb", "readverbs", "lifeverbs", "pointverbs", "searchverbs",
                                           "setupverbs", "shared", "argvalues")}
    assert {m for m in modules if m.split(".")[0] == "ptslurm"} == {"ptslurm", "ptslurm.cli", "ptslurm.errors"} | verbs
    slow = {"subprocess", "inspect", "socket", "tempfile", "getpass", "orjson", "uuid", "dataclasses",
            "filelock", "yaml", "platform", "datetime", "json"} & modules
    assert not slow, f"--help imported {sorted(slow)}"
