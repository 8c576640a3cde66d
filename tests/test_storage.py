"""Storage dirs, atomic files, manifests and the code snapshot, on tmp_path (including paths
with spaces, quotes and ';')."""
import json
import multiprocessing
import os
from pathlib import Path
import signal
import subprocess
import sys

import pytest

from ptslurm.records import claims, manifests, storage, writes
from ptslurm.errors import ManifestError, StorageError
from ptslurm.records.spec import Point, Resources

pytestmark = pytest.mark.fast  # in-process rules, seconds (the inner loop runs them)

ODD = "odd dir 'q' ; x"


def _allocate(args):
    parent, count = args
    return [str(p) for p in claims.allocate_dirs(parent, count)]


def test_32_processes_allocating_at_once_never_share_a_directory(tmp_path):
    parent = tmp_path / ODD / "exp"
    jobs = [(parent, 1 + i % 3) for i in range(32)]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(32) as pool:
        got = pool.map(_allocate, jobs)
    flat = [d for chunk in got for d in chunk]
    assert len(flat) == sum(c for _, c in jobs)
    assert len(set(flat)) == len(flat), "two callers received the same directory"
    on_disk = sorted(int(p.name) for p in parent.iterdir() if p.is_dir())
    assert on_disk == list(range(1, len(flat) + 1)), "numbers must be dense: no directory lost"


def test_allocation_skips_numbers_taken_meanwhile(tmp_path, monkeypatch):
    parent = tmp_path / "exp"
    parent.mkdir()
    (parent / "1").mkdir()
    real_mkdir = os.mkdir

    def racing_mkdir(path, *a, **k):
        if Path(path).name == "2" and not os.path.exists(path):
            real_mkdir(path)  # another host wins number 2 between listing and mkdir
        return real_mkdir(path, *a, **k)

    monkeypatch.setattr(os, "mkdir", racing_mkdir)
    got = claims.allocate_dirs(parent, 2)
    assert [p.name for p in got] == ["3", "4"]


def test_predict_matches_allocate_and_creates_nothing(tmp_path):
    parent = tmp_path / "exp"
    assert claims.predict_dirs(parent, 2) == [parent / "1", parent / "2"]
    assert not parent.exists()
    assert claims.allocate_dirs(parent, 2) == [parent / "1", parent / "2"]


def test_atomic_write_survives_a_killed_writer(tmp_path):
    target = tmp_path / ODD / "manifest.json"
    target.parent.mkdir()
    writes.atomic_write_json(target, {"version": "old"})
    code = (f"import ptslurm.records.writes as s, os, pathlib\n"
            f"s.os.replace = lambda *a: os.kill(os.getpid(), 9)\n"
            f"s.atomic_write_json(pathlib.Path({str(target)!r}), {{'version': 'new' * 100000}})\n")
    proc = subprocess.run([sys.executable, "-c", code])
    assert proc.returncode == -signal.SIGKILL
    assert json.loads(target.read_text()) == {"version": "old"}


def test_manifest_round_trip_and_errors(tmp_path):
    sweep = tmp_path / ODD
    sweep.mkdir()
    point = Point(3, {"lr": 0.1, "trainer.model.layers": [64, 64]}, ("big",), ("lr",))
    data = {"schema": 1, "name": "s", "points": [dict(point.to_json(), storage_dir="/x", job_id="7_3")],
            "resources": Resources(gpus=2, timeout_min=90, sbatch_args={"mail-type": "END"}).to_json()}
    (sweep / "manifest.json").write_text(json.dumps(data))
    back = manifests.read_manifest(sweep)
    assert back.points[0].to_point() == point and back.points[0].job_id == "7_3"
    assert back.resources == Resources(gpus=2, timeout_min=90, sbatch_args={"mail-type": "END"})
    manifests.write_manifest(sweep, back)
    assert manifests.read_manifest(sweep) == back
    assert manifests.find_sweep(str(sweep)) == sweep.resolve()

    (sweep / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="corrupt"):
        manifests.read_manifest(sweep)
    (sweep / "manifest.json").unlink()
    with pytest.raises(ManifestError, match="missing"):
        manifests.find_sweep(str(sweep))
    with pytest.raises(StorageError, match="no sweep 'nope'"):
        manifests.find_sweep("nope", root=str(tmp_path))


def test_root_checks(tmp_path, monkeypatch):
    monkeypatch.setenv("STORAGE_ROOT", str(tmp_path / "env root"))
    assert storage.resolve_root(None) == tmp_path / "env root"
    assert storage.resolve_root(str(tmp_path / "x")) == tmp_path / "x"
    monkeypatch.delenv("STORAGE_ROOT")
    assert storage.resolve_root(None) == storage.Path(os.path.expanduser("~/ptslurm-runs"))
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StorageError, match="not a directory"):
        storage.check_root_writable(blocker / "root")
    storage.check_root_writable(tmp_path / "new" / "deep")
    assert not (tmp_path / "new").exists()


def test_snapshot_layout_widens_to_parent_sys_path_inserts_that_supplied_modules(tmp_path):
    from ptslurm.records import snapshot

    proj = tmp_path / ODD
    (proj / "exps").mkdir(parents=True)
    (proj / "common").mkdir()
    (proj / "unused").mkdir()
    (proj / "exps" / "exp.py").write_text("")
    (proj / "common" / "helpers.py").write_text("")
    before = ["/usr/lib/python3"]
    after = [str(proj / "unused"), str(proj / "common")] + before
    lay = snapshot.layout(proj / "exps" / "exp.py", before, after,
                          [str(proj / "common" / "helpers.py"), "_classes.py", "relative/_ops.py"])
    assert (lay.root, str(lay.experiment), str(lay.workdir)) == (proj, "exps/exp.py", "exps")
    alone = snapshot.layout(proj / "exps" / "exp.py", before, after, [])
    assert alone.root == proj / "exps", "a sys.path entry that supplied no module does not widen it"


def test_snapshot_files_keep_code_and_data_and_leave_out_the_rest(tmp_path):
    from ptslurm.records import snapshot

    src = tmp_path / ODD
    for rel in ("exp.py", "pkg/__init__.py", "pkg/model.py", "data/values.txt", "conf/a.yaml",
                "venv/pyvenv.cfg", "venv/lib/x.py", ".git/HEAD", "__pycache__/exp.pyc", "checkpoints/ckpt_1.pth",
                "ckpt_2.pth", "runs/sweeps/s/manifest.json", "st/ptslurm_status.json", "big/x.bin",
                "sub/keep.py", "sub/skip.log"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text("x")
    (src / "notes.py").mkdir()  # a folder named like a module
    (src / ".ptslurmignore").write_text("big/\n")
    (src / "sub" / ".gitignore").write_text("*.log\n")
    lay = snapshot.Layout(root=src, experiment=snapshot.Path("exp.py"), workdir=snapshot.Path("."))
    got = [rel for rel, _ in snapshot.files(lay, skip=[src / "runs"], must=["big/x.bin"])]
    assert got == ["big/x.bin", "conf/a.yaml", "data/values.txt", "exp.py", "pkg/__init__.py", "pkg/model.py",
                   "sub/keep.py"]
    code = tmp_path / "snap" / "code"
    digest = snapshot.copy(lay, snapshot.files(lay), code)
    snapshot.verify(code, digest, "fix")
    (code / "pkg" / "model.py").write_text("changed")
    with pytest.raises(snapshot.SnapshotError, match="pkg/model.py' was edited or removed; fix"):
        snapshot.verify(code, digest, "fix")


@pytest.mark.parametrize("count", [3, 100])  # one by one; in threads
def test_a_full_disk_while_claiming_leaves_no_claimed_folder(small_tmpfs, count):
    """The claim marker cannot be written on a full disk: the folders this call made are
    given back, so no empty, unclaimed storage dir stays (release_claims could not find it)."""
    import errno

    from ptslurm.records import claims

    disk = small_tmpfs("64k")
    parent = disk / "exp"
    parent.mkdir()
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    with pytest.raises(OSError):
        claims.allocate_dirs(parent, count, owner="/some/sweep")
    assert [p.name for p in parent.iterdir() if p.name.isdigit()] == []
