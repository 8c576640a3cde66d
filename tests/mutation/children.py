"""Child processes under mutmut. ptslurm's fast tests run the command line, the pre-flight and
local points in child processes, which would import ptslurm from the install (the editable
finder points at the source, not at mutmut's copy) and so never run a mutant, and mutmut's
coverage run sees only the functions a test calls in its own process (every mutant of a verb
or of the job side read "no tests"). Under mutmut (the tests import ptslurm from a ``mutants``
folder), children get that folder first on PYTHONPATH: they run the mutant that mutmut's
MUTANT_UNDER_TEST (in their environment) names. While mutmut collects (MUTANT_UNDER_TEST=stats)
each child also loads ``childsite/sitecustomize``, which writes the functions it ran to a
folder; after each test they are added to what mutmut records for that test."""
import os
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


class ChildHits:
    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="ptslurm-mutmut-hits-"))
        os.environ["MUTMUT_CHILD_HITS"] = str(self.folder)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_teardown(self, item, nextitem):
        """Before mutmut's own teardown hook files this test's hits."""
        from mutmut.state import state

        for path in self.folder.glob("*.hits"):
            state()._stats.update(n for n in path.read_text().splitlines() if n)
            path.unlink()


def register(config) -> None:
    import ptslurm

    home = Path(ptslurm.__file__).resolve().parent.parent
    if home.name != "mutants" or config.pluginmanager.has_plugin("ptslurm-mutmut-child-hits"):
        return
    first = [str(home)]
    if os.environ.get("MUTANT_UNDER_TEST") == "stats":
        first.insert(0, str(HERE / "childsite"))
        os.environ["MUTMUT_CHILD_ROOT"] = str(home.parent)
        config.pluginmanager.register(ChildHits(), "ptslurm-mutmut-child-hits")
    rest = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in first]
    os.environ["PYTHONPATH"] = os.pathsep.join(first + rest)
