"""Loaded by every Python child of a test while mutmut collects which tests reach which
function (tests/mutation/children.py puts this folder on PYTHONPATH): the functions the
child ran are written out at its exit, so a test that runs ptslurm's command line in a
subprocess counts as reaching them."""
import atexit
import os


def _write_hits() -> None:
    try:
        from mutmut.state import state
    except ImportError:
        return
    hits = state()._stats
    folder = os.environ.get("MUTMUT_CHILD_HITS")
    if hits and folder:
        path = os.path.join(folder, f"{os.getpid()}.{id(hits)}")
        with open(path + ".part", "w") as fh:
            fh.write("\n".join(sorted(hits)))
        os.replace(path + ".part", path + ".hits")


def _load_config() -> None:
    """mutmut reads its config from the folder it runs in, once, when a function is first
    hit; a child runs elsewhere (a snapshot, a storage dir), so it is read here, there."""
    try:
        here = os.getcwd()
        os.chdir(os.environ["MUTMUT_CHILD_ROOT"])
    except OSError:  # a folder gone already: mutmut reads its defaults
        return
    try:
        from mutmut.configuration import config

        config()
    finally:
        os.chdir(here)


if os.environ.get("MUTANT_UNDER_TEST") == "stats" and os.environ.get("MUTMUT_CHILD_HITS"):
    _load_config()
    atexit.register(_write_hits)
