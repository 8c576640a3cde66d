"""The CLI starts fast: neither torch nor sacred is imported for --help or argument errors,
and ``import ptslurm`` is cheap."""
import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "sacred", "submitit", "numpy", "yaml")


@pytest.mark.parametrize("code", [
    "import ptslurm.cli, sys\ntry:\n    ptslurm.cli.main(['--help'])\nexcept SystemExit:\n    pass",
    "import ptslurm.cli, sys\ntry:\n    ptslurm.cli.main(['sweep', '--help'])\nexcept SystemExit:\n    pass",
    "import ptslurm",
])
def test_start_up_imports_no_heavy_module(code):
    probe = code + "\nimport sys, json\nsys.stdout = sys.__stdout__\nprint('MODULES=' + json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    modules = json.loads(out.split("MODULES=")[1])
    loaded = [m for m in HEAVY if m in modules]
    assert loaded == [], f"start-up imported {loaded}"
