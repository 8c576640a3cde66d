"""A sweep as a whole once its points ended (``job.housekeeping``), on the fake scheduler:
``--notify`` runs once when the last point ends, with the counts, and again after a
resubmission ends; ``ptslurm delete`` says what it would remove, refuses while a point is
queued and when a storage dir is not a folder of the user's, and a delete killed half-way is
finished by running it again."""
import json
import os
import shlex
from pathlib import Path

import pytest

from conftest import TEST_EXPERIMENTS, end_point, fake_sweep

from ptslurm import records
from ptslurm.errors import UsageError
from ptslurm.job import housekeeping
from ptslurm.plan.make import plan
from ptslurm.records import manifests
from ptslurm.records.spec import Resources
from ptslurm.submit import lifecycle
from ptslurm.submit.sweep import SweepRequest

pytestmark = pytest.mark.fast


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    where = tmp_path_factory.mktemp("housekeeping")
    told = where / "told.txt"
    to = shlex.quote(str(told))
    notify = f"env | grep -E '^PTSLURM_(COUNTS|SWEEP|SWEEP_NAME)=' | sort >> {to}; echo --- >> {to}"
    p = plan(SweepRequest(experiment=str(TEST_EXPERIMENTS / "curves.py"), with_tokens=("speed=[0.2,0.4,0.6]",),
                          root=str(where / "root"), name="template", notify=notify,
                          resources=Resources(timeout_min=10)), scheduler_given=True)
    yield p, told
    p.discard()


def test_notify_runs_once_when_the_last_point_ends_with_the_counts(planned, fake_slurm):
    p, told = planned
    told.unlink(missing_ok=True)
    _, sweep_dir = fake_sweep(p, "notify", fake_slurm)
    end_point(fake_slurm, sweep_dir, 0, 0.5)
    end_point(fake_slurm, sweep_dir, 2, 0.5, state="failed")
    assert not housekeeping.notify_if_ended(manifests.read_manifest(sweep_dir), sweep_dir) and not told.exists()
    end_point(fake_slurm, sweep_dir, 1, 0.4)
    m = manifests.read_manifest(sweep_dir)
    assert housekeeping.notify_if_ended(m, sweep_dir)
    assert told.read_text() == (f"PTSLURM_COUNTS=completed 2 failed 1\nPTSLURM_SWEEP={sweep_dir}\n"
                                f"PTSLURM_SWEEP_NAME=notify\n---\n")
    assert not housekeeping.notify_if_ended(m, sweep_dir), "one notification, whoever ends last"
    assert not housekeeping.notify_if_ended(m.replace(notify=None), sweep_dir)


def test_a_resubmission_notifies_again_once_its_points_have_ended(planned, fake_slurm):
    p, told = planned
    told.unlink(missing_ok=True)
    _, sweep_dir = fake_sweep(p, "again", fake_slurm)
    for i in range(3):
        end_point(fake_slurm, sweep_dir, i, 0.5)
    assert housekeeping.notify_if_ended(manifests.read_manifest(sweep_dir), sweep_dir)
    lifecycle.resubmit(sweep_dir, [1], make=fake_slurm.backend)
    m = manifests.read_manifest(sweep_dir)
    assert not housekeeping.notify_if_ended(m, sweep_dir), "its old end is not the resubmission's"
    end_point(fake_slurm, sweep_dir, 1, 0.3)
    assert housekeeping.notify_if_ended(manifests.read_manifest(sweep_dir), sweep_dir)
    assert told.read_text().count("---") == 2 and (sweep_dir / f"{housekeeping.NOTIFIED}-s1").exists()


def test_delete_is_refused_while_a_point_is_queued_and_removes_nothing(planned, fake_slurm):
    p, _ = planned
    _, sweep_dir = fake_sweep(p, "busy", fake_slurm)
    end_point(fake_slurm, sweep_dir, 0, 0.5)
    with pytest.raises(UsageError, match=r"sweep 'busy' has 2 point\(s\) queued, running or waiting \(1, 2\); "
                                         r"nothing was deleted: `ptslurm cancel .*` first"):
        housekeeping.delete(sweep_dir, yes=True)
    assert sweep_dir.exists() and all(Path(e.storage_dir).exists()
                                      for e in manifests.read_manifest(sweep_dir).points)


def test_delete_says_what_it_would_remove_and_then_removes_it_storage_dirs_first(planned, fake_slurm):
    p, _ = planned
    _, sweep_dir = fake_sweep(p, "gone", fake_slurm)
    for i in range(3):
        end_point(fake_slurm, sweep_dir, i, 0.5)
    dirs = [Path(e.storage_dir) for e in manifests.read_manifest(sweep_dir).points]
    assert housekeeping.delete(sweep_dir, yes=False) == dirs + [sweep_dir]
    assert sweep_dir.exists() and all(d.exists() for d in dirs), "without --yes nothing goes"
    import shutil

    shutil.rmtree(dirs[0])  # a delete killed after its first storage dir
    assert housekeeping.delete(sweep_dir, yes=True) == dirs[1:] + [sweep_dir]
    assert not sweep_dir.exists() and not any(d.exists() for d in dirs)


def test_delete_refuses_a_storage_dir_that_is_a_symlink(planned, fake_slurm, tmp_path):
    p, _ = planned
    _, sweep_dir = fake_sweep(p, "linked", fake_slurm)
    for i in range(3):
        end_point(fake_slurm, sweep_dir, i, 0.5)
    victim = tmp_path / "someone-elses"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    target = Path(manifests.read_manifest(sweep_dir).points[1].storage_dir)
    import shutil

    shutil.rmtree(target)
    os.symlink(victim, target)
    with pytest.raises(UsageError, match=r"storage dir .* of point 1 is not a folder of yours \(a symlink"):
        housekeeping.delete(sweep_dir, yes=True)
    assert (victim / "keep.txt").read_text() == "mine" and sweep_dir.exists()
    assert json.loads((sweep_dir / records.MANIFEST).read_text())["name"] == "linked"
