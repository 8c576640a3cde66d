"""A shared STORAGE_ROOT (issue 20): what another user may have put there is refused or
harmless, and a group can read a colleague's results. As root, with a second Unix user
(useradd): chown stands for "the other user made it"."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLES, read_status, run_cli, tree

TINY = [EXAMPLES / "tiny.py", "with", "steps=5"]


def test_a_sweeps_folder_another_user_made_is_refused(tmp_path, no_slurm, other_user):
    root = tmp_path / "shared"
    (root / "sweeps").mkdir(parents=True)
    os.chown(root / "sweeps", other_user, -1)
    proc = run_cli("sweep", "--root", root, *TINY)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "belongs to ptslurm-other" in lines[0] and "--root" in lines[0], lines
    assert tree(root) == {"sweeps"}, "nothing was created"


def test_an_experiment_folder_another_user_made_is_refused(tmp_path, no_slurm, other_user):
    root = tmp_path / "shared"
    (root / "tiny").mkdir(parents=True)
    os.chown(root / "tiny", other_user, -1)
    proc = run_cli("sweep", "--root", root, *TINY)
    assert proc.returncode == 2 and "storage dirs would go under" in proc.stderr and "ptslurm-other" in proc.stderr
    assert tree(root) == {"tiny"}


@pytest.mark.parametrize("mode, refused", [(0o775, True), (0o777, True), (0o1777, False), (0o755, False)])
def test_a_root_others_may_write_is_refused_unless_sticky(tmp_path, no_slurm, mode, refused):
    root = tmp_path / "shared"
    root.mkdir()
    os.chmod(root, mode)
    proc = run_cli("sweep", "--json", "--root", root, *TINY)
    if refused:
        assert proc.returncode == 2 and "chmod go-w" in proc.stderr
        assert f"would go under '{root}', which is writable by" in proc.stderr, proc.stderr
        assert tree(root) == set()
    else:
        assert proc.returncode == 0, proc.stderr


def umask_cli(mask, *args):
    code = f"import os, sys, runpy; os.umask({mask}); sys.argv = ['ptslurm'] + sys.argv[1:]; " \
           f"runpy.run_module('ptslurm', run_name='__main__')"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          env=dict(os.environ))


def test_with_a_group_umask_control_files_stay_ours_and_results_are_shared(tmp_path, no_slurm):
    root = tmp_path / "runs"
    proc = umask_cli(0o002, "sweep", "--json", "--root", root, EXAMPLES / "train.py", "with",
                     "trainer.stop_trigger=(4,'iteration')")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    sweep_dir, storage_dir = Path(summary["sweep_dir"]), Path(summary["points"][0]["storage_dir"])
    mode = lambda p: os.stat(p).st_mode & 0o777  # noqa: E731
    again = umask_cli(0o002, "resubmit", sweep_dir, "--points", "0")  # takes the manifest's lock
    assert again.returncode == 0, again.stderr
    snapshot = [sweep_dir / "code", sweep_dir / "code.sha256", sweep_dir / ".manifest.lock",
                *(sweep_dir / "code").rglob("*")]
    for control in (sweep_dir / "manifest.json", storage_dir / "ptslurm_status.json", sweep_dir, storage_dir,
                    storage_dir.parent, root / "sweeps", *snapshot):
        assert not mode(control) & 0o022, f"{control} is writable by others ({oct(mode(control))})"
        assert mode(control) & 0o040, f"{control} is not readable by the group ({oct(mode(control))})"
    for result in (storage_dir / "config.json", next((storage_dir / "checkpoints").glob("ckpt_*.pth"))):
        assert mode(result) == 0o664, f"{result} ignores the umask ({oct(mode(result))})"


@pytest.fixture
def done_sweep(tmp_path, no_slurm):
    proc = run_cli("sweep", "--json", "--root", tmp_path / "runs", *TINY)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_an_intent_forged_by_another_user_is_ignored(done_sweep, other_user):
    storage_dir = Path(done_sweep["points"][0]["storage_dir"])
    forged = storage_dir / "ptslurm_intent.json"
    forged.write_text(json.dumps({"cancelled": True, "submission": 99}))
    os.chown(forged, other_user, -1)
    rows = json.loads(run_cli("status", done_sweep["sweep_dir"], "--json").stdout)
    assert rows[0]["state"] == "completed", "a forged cancel changed the point"


def test_a_lease_forged_by_another_user_does_not_block_the_attempt(done_sweep, other_user):
    storage_dir = Path(done_sweep["points"][0]["storage_dir"])
    lease = storage_dir / "ptslurm_lease.json"
    lease.write_text(json.dumps({"job_id": "local-1", "host": socket.gethostname(), "pid": 1, "token": "x",
                                 "heartbeat": "2099-01-01T00:00:00+00:00"}))
    os.chown(lease, other_user, -1)
    before = len(read_status(storage_dir)["attempts"])
    proc = run_cli("resubmit", done_sweep["sweep_dir"], "--points", "0", env={"PTSLURM_LEASE_WAIT_S": "2"})
    assert proc.returncode == 0, proc.stderr
    attempts = read_status(storage_dir)["attempts"]
    assert len(attempts) == before + 1 and attempts[-1]["state"] == "completed", "the forged lease blocked it"


def test_a_storage_dir_swapped_for_a_symlink_is_refused(done_sweep, tmp_path):
    storage_dir = Path(done_sweep["points"][0]["storage_dir"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.rename(storage_dir, tmp_path / "moved")
    os.symlink(elsewhere, storage_dir)
    proc = run_cli("resubmit", done_sweep["sweep_dir"], "--points", "0")
    assert list(elsewhere.iterdir()) == [], "the job wrote into the planted folder"
    assert proc.returncode == 2 and "not a folder of yours" in proc.stderr, proc.stderr


def test_a_255_digit_directory_does_not_break_allocation(tmp_path, no_slurm):
    root = tmp_path / "runs"
    (root / "tiny" / ("9" * 255)).mkdir(parents=True)
    proc = run_cli("sweep", "--json", "--root", root, *TINY)
    assert proc.returncode == 0, proc.stderr
    assert Path(json.loads(proc.stdout)["points"][0]["storage_dir"]).name == "1"


def _as_user(uid: int, call) -> str:
    """Run ``call()`` in a forked child as user ``uid`` (this process's modules, another
    user's rights); returns what it returned or raised, as text."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(read)
        try:
            os.setgroups([])
            os.setgid(100)
            os.setuid(uid)
            out = f"ok {call()!r}"
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            out = f"{type(exc).__name__}: {exc}"
        os.write(write, out.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as fh:
        text = fh.read()
    os.waitpid(pid, 0)
    return text


def test_a_lock_file_planted_in_a_shared_folder_stops_nobody(tmp_path, other_user, request):
    """Another user's `.ptslurm.lock` in a shared, sticky experiment folder (as in /tmp): the
    storage dirs are still allocated (the allocation lock is per user); a planted lock of the
    user's own name is a one-line error naming its owner, not a PermissionError traceback."""
    from ptslurm.records import claims, locks
    from ptslurm.errors import StorageError

    import pwd  # noqa: F401 - the child cannot import once it is the other user (the interpreter is root's)
    import encodings.ascii  # noqa: F401
    import secrets  # noqa: F401

    claims.allocate_dirs(tmp_path / "warm", 1)  # the same: every lazy import of the path done here
    locks.lock_error(tmp_path)
    import shutil
    import tempfile

    top = Path(tempfile.mkdtemp(prefix="ptslurm-shared-", dir="/tmp"))  # the other user must reach it
    request.addfinalizer(lambda: shutil.rmtree(top, ignore_errors=True))
    os.chmod(top, 0o755)
    shared = top / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    (shared / ".ptslurm.lock").write_text("")  # planted by root, the other user here
    got = _as_user(other_user, lambda: [p.name for p in claims.allocate_dirs(shared, 2)])
    assert got == "ok ['1', '2']", got
    (shared / f".ptslurm.lock.{other_user}").write_text("")  # planted under the victim's own name
    got = _as_user(other_user, lambda: [p.name for p in claims.allocate_dirs(shared, 1)])
    # taken anyway (the mkdir decides), or refused in one line naming the owner: never a traceback
    assert got == "ok ['3']" or (got.startswith(f"{StorageError.__name__}: lock file") and "belongs to root" in got
                                 and "--root" in got), got


def test_a_sweep_dir_another_user_made_under_the_name_is_named_as_theirs(tmp_path, no_slurm, other_user):
    root = tmp_path / "runs"
    (root / "sweeps" / "taken").mkdir(parents=True)
    (root / "sweeps" / "taken" / "theirs.txt").write_text("x")
    os.chown(root / "sweeps" / "taken", other_user, -1)
    proc = run_cli("sweep", "--root", root, "--name", "taken", *TINY)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "belongs to ptslurm-other" in lines[0] and "being created by another process" not in lines[0], lines
    assert (root / "sweeps" / "taken" / "theirs.txt").exists(), "another user's folder was removed"
