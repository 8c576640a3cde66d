"""mypy over ptslurm/ with setup.cfg's settings (the core strictly: test_architecture checks
which modules). In the full suite, not the fast tier: a cold mypy run takes minutes under load
and would gate every inner-loop and mutant run."""
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ptslurm"


def test_the_package_type_checks():
    """mypy (the test extra) over ptslurm/ with setup.cfg's settings: the core strictly."""
    proc = subprocess.run([sys.executable, "-m", "mypy", str(PACKAGE)], capture_output=True, text=True,
                          cwd=PACKAGE.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
