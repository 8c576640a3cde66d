"""Rules of the submit side's files and flags, each a bug nothing else caught (issue 34): a
file removed from or added to a code snapshot fails its check, edited or not; giving back a
killed submission's claims never touches a dir that holds files or that another submission
claimed; a fractional --mem is converted in SLURM's units (1 GB = 1024 MB)."""
import os
from pathlib import Path

import pytest

from ptslurm import backends, snapshot, storage
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
    dirs = storage.allocate_dirs(parent, 4, owner="sweep-a")
    (dirs[1] / "checkpoints").mkdir()  # the job already wrote here
    (dirs[2] / storage.CLAIM).write_text("sweep-b")  # another submission's
    assert storage.release_claims(parent, "sweep-a") == 2
    assert [d.exists() for d in dirs] == [False, True, True, False]
    assert (dirs[1] / storage.CLAIM).read_text() == "sweep-a", "a dir with files keeps its claim marker"
    assert sorted(os.listdir(dirs[1])) == sorted([storage.CLAIM, "checkpoints"])
