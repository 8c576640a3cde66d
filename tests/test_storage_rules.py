"""Rules of the submit side's files and flags, each a bug nothing else caught (issue 34): a
file removed from or added to a code snapshot fails its check, edited or not; giving back a
killed submission's claims never touches a dir that holds files or that another submission
claimed; a fractional --mem is converted in SLURM's units (1 GB = 1024 MB)."""
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptslurm.schedulers import backends
from ptslurm import records
from ptslurm.records import claims, snapshot, writes
from ptslurm.errors import SnapshotError

pytestmark = pytest.mark.fast


@pytest.mark.parametrize("gb, flag", [(None, None), (1, "1G"), (64.0, "64G"), (1.5, "1536M"), (0.25, "256M")])
def test_mem_is_given_to_sbatch_in_its_units(gb, flag):
    assert backends.mem_flag(gb) == flag


@pytest.fixture
def code(tmp_path):
    src = tmp_path / "src"
    for rel in ("exp.py", "pkg/__init__.py", "pkg/model.py"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(rel)
    lay = snapshot.Layout(root=src, experiment=Path("exp.py"), workdir=Path("."))
    dest = tmp_path / "snap" / "code"
    return dest, snapshot.copy(lay, snapshot.files(lay), dest)


def test_an_untouched_snapshot_passes_its_check(code):
    snapshot.verify(*code, "fix")


def test_a_file_removed_from_the_snapshot_fails_its_check(code):
    dest, digest = code
    (dest / "pkg" / "model.py").unlink()
    with pytest.raises(SnapshotError, match="pkg/model.py' was edited or removed; fix"):
        snapshot.verify(dest, digest, "fix")


def test_a_file_added_to_the_snapshot_fails_its_check(code):
    dest, digest = code
    (dest / "pkg" / "extra.py").write_text("import os")
    with pytest.raises(SnapshotError, match="extra.py"):
        snapshot.verify(dest, digest, "fix")


def test_an_edited_hash_list_fails_the_check(code):
    dest, digest = code
    listing = snapshot.hash_file(dest)
    listing.write_text(listing.read_text().replace("pkg/model.py", "pkg/other.py"))
    with pytest.raises(SnapshotError, match="hash list .* changed since submission"):
        snapshot.verify(dest, digest, "fix")


def test_giving_back_claims_removes_only_this_submissions_empty_dirs(tmp_path):
    parent = tmp_path / "exp"
    dirs = claims.allocate_dirs(parent, 4, owner="sweep-a")
    (dirs[1] / "checkpoints").mkdir()  # the job already wrote here
    (dirs[2] / records.CLAIM).write_text("sweep-b")  # another submission's
    assert claims.release_claims(parent, "sweep-a") == 2
    assert [d.exists() for d in dirs] == [False, True, True, False]
    assert (dirs[1] / records.CLAIM).read_text() == "sweep-a", "a dir with files keeps its claim marker"
    assert sorted(os.listdir(dirs[1])) == sorted([records.CLAIM, "checkpoints"])


@settings(deadline=None, max_examples=200)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text("ab", max_size=3) | st.integers(-3, 3), inner, max_size=3), max_leaves=10))
def test_a_manifest_reads_back_as_written_whatever_values_its_points_hold(value):
    import json
    import math

    def same(a, b):
        if isinstance(a, float) and math.isnan(a):
            return isinstance(b, float) and math.isnan(b)
        if isinstance(a, dict):
            return isinstance(b, dict) and list(map(str, a)) == list(b) and all(map(same, a.values(), b.values()))
        if isinstance(a, list):
            return isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
        return type(a) is type(b) and a == b

    data = {"schema": 1, "points": [{"updates": {"v": value}}]}
    text = writes.json_bytes(data)
    assert text.endswith(b"\n") and b'\n  "points"' in text, "indented, one value per line"
    assert same(data, json.loads(text)), text


@pytest.mark.parametrize("count", [5, 200])  # one by one; in threads
def test_claiming_skips_numbers_another_creator_won_and_marks_every_dir_it_returns(tmp_path, monkeypatch, count):
    parent = tmp_path / "exp"
    parent.mkdir()
    for taken in (2, 4, 90, 199):  # made by another creator after this one listed the parent
        (parent / str(taken)).mkdir()
    monkeypatch.setattr(claims, "_next_number", lambda _: 1)
    dirs = claims.allocate_dirs(parent, count, owner="sweep-a")
    numbers = [int(d.name) for d in dirs]
    assert len(numbers) == count and numbers == sorted(numbers) and not {2, 4, 90, 199} & set(numbers)
    assert numbers == [n for n in range(1, count + 5) if n not in (2, 4, 90, 199)][:count]
    assert all((d / ".ptslurm-claim").read_text() == "sweep-a" for d in dirs)
    assert sorted(p.name for p in parent.iterdir() if p.name.isdigit()) == sorted(map(str, numbers + [2, 4, 90, 199]))


@pytest.mark.parametrize("count, fail_at", [(5, 3), (100, 50)])  # one by one; in threads
def test_a_claim_that_fails_midway_gives_back_every_dir_it_made(tmp_path, monkeypatch, count, fail_at):
    import builtins
    import errno
    import itertools
    import threading

    calls, guard = itertools.count(1), threading.Lock()

    def full_after(path, *args, **kwargs):
        with guard:
            n = next(calls)
        if n >= fail_at:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return builtins.open(path, *args, **kwargs)

    parent = tmp_path / "exp"
    parent.mkdir()
    monkeypatch.setattr(claims, "open", full_after, raising=False)
    with pytest.raises(OSError, match="No space left"):
        claims.allocate_dirs(parent, count, owner="sweep-a")
    assert [p.name for p in parent.iterdir() if p.name.isdigit()] == []


def test_dirs_left_half_made_by_a_killed_claimer_are_given_back_and_nothing_else(tmp_path):
    """A claimer killed between ``mkdir`` and its whole marker leaves a dir nobody's marker
    names: the next give-back removes it (sticky bit = not yet whole); finished claims of
    other sweeps, a plain storage dir and a dir with files stay."""
    parent = tmp_path / "exp"
    kept = claims.allocate_dirs(parent, 2, owner="sweep-b") + [claims.get_new_storage_dir("exp", str(tmp_path))]
    assert not any(os.stat(d).st_mode & claims.HALF_MADE for d in kept), "a whole claim loses the mark"
    no_marker, half_marker, with_files = (parent / str(n) for n in (10, 11, 12))
    for d in (no_marker, half_marker, with_files):
        os.mkdir(d, claims.HALF_MADE | 0o700)
    (half_marker / records.CLAIM).write_text("/some/sw")  # killed mid-write
    (with_files / "result.txt").write_text("1")
    assert claims.release_claims(parent, "sweep-a") == 2
    assert not no_marker.exists() and not half_marker.exists()
    assert all(d.exists() for d in kept + [with_files])


def test_a_claimer_killed_at_random_moments_leaves_no_dir_behind_once_given_back(tmp_path):
    """SIGKILL a process claiming 2,000 dirs (8 threads) at random moments: after the
    give-back of its sweep, no numbered dir is left (the killed submission's re-run)."""
    import random
    import signal
    import subprocess
    import sys
    import time

    parent, rng = tmp_path / "exp", random.Random()
    parent.mkdir()
    code = ("import sys; from ptslurm.records import claims; from pathlib import Path; print('go', flush=True);"
            "claims.allocate_dirs(Path(sys.argv[1]), 2000, owner='sweep-a')")
    killed = released = 0
    for _ in range(8):
        proc = subprocess.Popen([sys.executable, "-c", code, str(parent)], stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline() == b"go\n"
        time.sleep(rng.uniform(0.0, 0.15))
        killed += proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        released += claims.release_claims(parent, "sweep-a")
        assert [p.name for p in parent.iterdir() if p.name.isdigit()] == []
    assert killed >= 4 and released, "the claimer ended before it was killed, or before it claimed"


class Factory:
    """A class a config names (padertorch's ``factory`` keys)."""


@pytest.mark.parametrize("value, written", [
    (Factory, f"{__name__}.Factory"),
    (len, "len"),  # a builtin: its bare name
    (Path("/data/x"), "/data/x"),
    ({3}, [3]),
    ((1, 2), [1, 2]),
    (frozenset(), []),
    (float("nan"), None),  # json writes NaN as sacred does: read back by the json module
    (object.__new__(type("Opaque", (), {"__str__": lambda self: "opaque!"})), "opaque!"),
])
def test_a_config_value_json_cannot_hold_is_written_as_its_name_or_text(tmp_path, value, written):
    import math

    writes.atomic_write_json(tmp_path / "c.json", {"x": value, "bad key": {1: "a"}})
    text = (tmp_path / "c.json").read_text()
    back = records.read_json(tmp_path / "c.json")
    if isinstance(value, float):
        assert "NaN" in text and math.isnan(back["x"])
    else:
        assert back["x"] == written
    assert back["bad key"] == {"1": "a"} and text.endswith("\n")


def test_an_array_like_is_written_as_its_list(tmp_path):
    import numpy

    writes.atomic_write_json(tmp_path / "c.json", {"x": numpy.arange(3), "bad": {2: 1}})
    assert records.read_json(tmp_path / "c.json")["x"] == [0, 1, 2]


def test_job_files_lose_group_and_other_write_and_nothing_else(tmp_path):
    from ptslurm.records import storage

    (tmp_path / "job.pkl").write_text("x")
    os.chmod(tmp_path / "job.pkl", 0o666)
    (tmp_path / "run.sh").write_text("x")
    os.chmod(tmp_path / "run.sh", 0o775)
    (tmp_path / "sub").mkdir(mode=0o777)
    os.chmod(tmp_path / "sub", 0o777)
    os.symlink(tmp_path / "run.sh", tmp_path / "link")
    storage.no_group_write(tmp_path)
    modes = {p.name: stat.S_IMODE(os.lstat(p).st_mode) for p in tmp_path.iterdir() if not p.is_symlink()}
    assert modes == {"job.pkl": 0o644, "run.sh": 0o755, "sub": 0o777}, "only files: a folder is not a job file"
    storage.no_group_write(tmp_path / "missing")  # nothing there: nothing to do, no error


def test_a_lock_file_of_another_user_is_named_with_its_owner(tmp_path, monkeypatch):
    from ptslurm.records import locks

    lock = tmp_path / ".manifest.lock"
    lock.write_text("")
    monkeypatch.setattr(locks, "user_name", lambda uid: f"user{uid}")
    assert str(locks.lock_error(lock)) == (f"lock file {str(lock)!r} belongs to user{os.stat(lock).st_uid}: ptslurm "
                                           f"cannot take it; use another --root")
    assert "belongs to another user:" in str(locks.lock_error(tmp_path / "gone"))
