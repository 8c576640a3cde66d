"""Checkpoint files, rule by rule: where save puts them and with which permissions, which
link it moves, what retention keeps (keep 0 included), when a killed writer's temp file
goes, which checkpoint a resume loads and where its tensors are mapped, and what a refused
unpickling says."""
import os
import pickle
import warnings

import pytest
import torch

from ptslurm.train import checkpoint as ckpt
from ptslurm.records.storage import result_mode

pytestmark = pytest.mark.fast


def state(i: int) -> dict:
    return {"model": {"w": torch.tensor([float(i)])}, "iteration": i}


def test_save_makes_the_folder_with_the_umasks_mode_and_moves_only_latest(tmp_path):
    folder = tmp_path / "a" / "b" / "checkpoints"
    path = ckpt.save(state(3), folder, 3)
    assert path == folder / "ckpt_3.pth" and path.stat().st_mode & 0o777 == result_mode()
    assert os.readlink(folder / ckpt.LATEST) == "ckpt_3.pth"
    assert not (folder / ckpt.BEST_LOSS).exists(), "a checkpoint that is not the best became best"
    ckpt.save(state(4), folder, 4, best=True)
    assert os.readlink(folder / ckpt.BEST_LOSS) == "ckpt_4.pth" == os.readlink(folder / ckpt.LATEST)


def test_keep_zero_keeps_only_what_the_links_name(tmp_path):
    for i in (1, 2, 3):
        ckpt.save(state(i), tmp_path, i, keep=None, best=(i == 1))
    ckpt.prune(tmp_path, keep=0)
    assert sorted(p.name for p in tmp_path.glob("ckpt_*.pth") if not p.is_symlink()) == ["ckpt_1.pth", "ckpt_3.pth"]
    ckpt.save(state(4), tmp_path, 4, keep=1)
    assert sorted(n for _, n in [(i, p.name) for i, p in ckpt.numbered(tmp_path)]) == ["ckpt_1.pth", "ckpt_4.pth"]


@pytest.mark.parametrize("age_s, removed", [(10, False), (60, False), (60.5, True), (120, True)])
def test_a_killed_writers_temp_file_goes_after_a_minute(tmp_path, age_s, removed):
    """A minute older than the folder's last change (a live writer's temp file is newer)."""
    ckpt.save(state(1), tmp_path, 1)
    stale = tmp_path / ".ckpt_1.pth.x.tmp"
    stale.write_bytes(b"partial")
    folder_time = int(os.path.getmtime(tmp_path)) + 1
    os.utime(stale, (folder_time - age_s, folder_time - age_s))
    os.utime(tmp_path, (folder_time, folder_time))
    ckpt.prune(tmp_path, keep=5)
    assert stale.exists() is not removed


def test_resume_takes_what_latest_names_and_maps_its_tensors(tmp_path):
    for i in (3, 5):
        ckpt.save(state(i), tmp_path, i, keep=None)
    ckpt.link(tmp_path, ckpt.LATEST, tmp_path / "ckpt_3.pth")  # latest named an older one (the last good)
    mapped = []

    def where(storage, location):
        mapped.append(location)
        return storage

    path, loaded = ckpt.load_latest(tmp_path, map_location=where)
    assert path == tmp_path / "ckpt_3.pth" and loaded["iteration"] == 3
    assert mapped == ["cpu"], "the map_location was not used"


def test_an_unreadable_latest_falls_back_with_a_warning_naming_the_error(tmp_path):
    for i in (3, 5):
        ckpt.save(state(i), tmp_path, i, keep=None)
    (tmp_path / "ckpt_5.pth").write_bytes(b"truncated")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path, loaded = ckpt.load_latest(tmp_path)
    assert path == tmp_path / "ckpt_3.pth" and loaded["iteration"] == 3
    (message,) = [str(w.message) for w in caught]
    assert message.startswith(f"checkpoint {tmp_path / 'ckpt_5.pth'} is unreadable (")
    assert message.endswith("); falling back to the previous one")
    assert "Error" in message.split("(", 1)[1].split(":", 1)[0], message
    assert ckpt.load_latest(tmp_path / "none") is None


class Payload:
    def __reduce__(self):
        return (print, ("a pickled call",))


def test_a_refused_unpickling_says_the_first_line_and_how_to_trust_it(tmp_path):
    path = tmp_path / "ckpt_1.pth"
    torch.save({"model": {}, "iteration": 1, "x": Payload()}, path)
    try:
        torch.load(path, weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = str(exc).strip().splitlines()
    assert len(lines) > 1
    with pytest.raises(ValueError) as caught:
        ckpt.load_file(path)
    assert str(caught.value) == (f"{path} holds more than tensors and plain values ({lines[0]}); load it with "
                                 f"trusted=True only if you trust whoever wrote it")
    mapped = []
    loaded = ckpt.load_file(path, map_location=lambda s, loc: mapped.append(loc) or s, trusted=True)
    assert loaded["iteration"] == 1


def test_a_trusted_load_maps_tensors_too(tmp_path):
    ckpt.save(state(2), tmp_path, 2)
    mapped = []
    loaded = ckpt.load_file(tmp_path / "ckpt_2.pth", map_location=lambda s, loc: mapped.append(loc) or s, trusted=True)
    assert loaded["iteration"] == 2 and mapped == ["cpu"]


def test_numpy_arrays_load_as_data(tmp_path):
    import numpy

    path = tmp_path / "ckpt_1.pth"
    torch.save({"model": {}, "iteration": 1, "rng": numpy.arange(3, dtype=numpy.uint32)}, path)
    loaded = ckpt.load_file(path)
    assert loaded["rng"].tolist() == [0, 1, 2] and loaded["rng"].dtype == numpy.uint32


def test_a_checkpoint_is_shared_as_the_umask_says(tmp_path, monkeypatch):
    """Results follow the umask (a group-writable one shares checkpoints with the group);
    ptslurm's own control files never get group write."""
    from ptslurm.records import storage

    monkeypatch.setattr(storage, "UMASK", 0o002)
    path = ckpt.save(state(1), tmp_path, 1)
    assert path.stat().st_mode & 0o777 == 0o664 != storage.control_mode()


def test_keep_one_keeps_the_newest_and_what_latest_names(tmp_path):
    for i in (1, 2, 3):
        ckpt.save(state(i), tmp_path, i, keep=None)
    ckpt.link(tmp_path, ckpt.LATEST, tmp_path / "ckpt_2.pth")
    ckpt.prune(tmp_path, keep=1)
    assert [p.name for _, p in ckpt.numbered(tmp_path)] == ["ckpt_2.pth", "ckpt_3.pth"]


def test_by_default_the_last_five_are_kept(tmp_path):
    for i in range(1, 8):
        ckpt.save(state(i), tmp_path, i)
    assert [i for i, _ in ckpt.numbered(tmp_path)] == [3, 4, 5, 6, 7]
