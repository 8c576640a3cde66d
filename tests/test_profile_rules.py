"""Cluster profiles (``plan.profile``) in-process, on real files and the fake scheduler: which
profile a command finds, a profile found in the working folder taken only when it is the
user's own and not world-writable, the first line that says what it set, `ptslurm init`'s
files (refusing to overwrite) fitted to the smallest node a controller reports."""
import os

import pytest
import yaml

from ptslurm.errors import UsageError
from ptslurm.plan import profile

pytestmark = pytest.mark.fast


def test_the_profile_named_wins_then_the_environments_then_the_folders_then_the_users(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".config" / "ptslurm").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("PTSLURM_PROFILE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert profile.find() is None
    user = home / ".config" / "ptslurm" / "profile.yaml"
    user.write_text("jobs: 1\n")
    assert profile.find() == user
    (tmp_path / profile.PROFILE_NAME).write_text("jobs: 2\n")
    assert profile.find().resolve() == (tmp_path / profile.PROFILE_NAME).resolve()
    env = tmp_path / "env.yaml"
    env.write_text("jobs: 3\n")
    monkeypatch.setenv("PTSLURM_PROFILE", str(env))
    assert profile.find() == env
    named = tmp_path / "named.yaml"
    named.write_text("jobs: 4\n")
    assert profile.find(str(named)) == named
    with pytest.raises(UsageError, match=r"profile 'nope.yaml' does not exist; create one with `ptslurm init`"):
        profile.find("nope.yaml")


def test_a_world_writable_profile_in_the_folder_is_refused_unless_named(tmp_path, monkeypatch):
    monkeypatch.delenv("PTSLURM_PROFILE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    found = tmp_path / profile.PROFILE_NAME
    found.write_text("jobs: 2\n")
    os.chmod(found, 0o666)
    with pytest.raises(UsageError, match=r"may be written by anyone: `chmod o-w ptslurm.yaml`, or pass --profile"):
        profile.find()
    assert profile.find(profile.PROFILE_NAME) is not None, "named, it is the user's choice"
    os.chmod(found, 0o664)
    assert profile.find() is not None, "group-writable is umask 002's normal"


def test_another_users_profile_in_the_folder_is_refused(tmp_path, monkeypatch):
    found = tmp_path / profile.PROFILE_NAME
    found.write_text("jobs: 2\n")
    monkeypatch.setattr(profile.os, "geteuid", lambda: os.stat(found).st_uid + 1)
    with pytest.raises(UsageError, match=r"in this folder belongs to .*: ptslurm does not take another user's "
                                         r"settings unasked; read it and pass --profile ptslurm.yaml"):
        profile._require_trusted(found)


def test_the_first_line_says_the_file_and_every_value_it_set(tmp_path):
    data = {"jobs": 2, "root": None, "resources": {"cpus": 3, "time": "0-08:00", "setup": [], "sbatch_args": {},
                                                    "partition": "gpu\nrm -rf"}}
    assert profile.describe(tmp_path / "p.yaml", data) == (
        f"profile {tmp_path / 'p.yaml'}: jobs=2, cpus=3, time=0-08:00, partition='gpu\\nrm -rf' "
        f"(command-line options win; --profile FILE for another)")
    assert "sets nothing" in profile.describe(tmp_path / "p.yaml", {"resources": {}})


def test_init_writes_a_profile_that_loads_and_an_experiment_and_never_overwrites_unasked(tmp_path, no_slurm):
    written = profile.init(tmp_path)
    assert written == [tmp_path / profile.PROFILE_NAME, tmp_path / "experiment.py"]
    loaded = profile.load(written[0])
    assert set(loaded) <= set(profile.TOP_KEYS) and loaded["resources"]
    assert "Experiment(" in written[1].read_text()
    written[1].write_text("mine")
    with pytest.raises(UsageError, match=r"'.*ptslurm.yaml' already exists; pass --force to overwrite"):
        profile.init(tmp_path)
    assert written[1].read_text() == "mine", "nothing written when a target exists"
    profile.init(tmp_path, force=True)
    assert written[1].read_text() != "mine"
    with pytest.raises(UsageError, match=r"is not a directory"):
        profile.init(tmp_path / "missing")


def test_init_fits_cpus_and_memory_to_the_smallest_node_a_controller_reports(tmp_path, fake_slurm, monkeypatch):
    from ptslurm import schedulers

    monkeypatch.setattr(schedulers, "here", lambda: ("up", ""))
    fake_slurm.nodes = [(3, 2048, ""), (16, 64000, "gpu:2")]
    text = profile.template("profile.yaml").decode()
    fitted = yaml.safe_load(profile.fit_to_cluster(text))["resources"]
    assert fitted["cpus"] == 3 and fitted["mem_gb"] == 1, "3 CPUs and 90 % of 2048 MB, in whole GB"
    fake_slurm.nodes = [(64, 512000, "")]
    assert profile.fit_to_cluster(text) == text, "a node larger than the template's defaults changes nothing"
    fake_slurm.nodes = []
    assert profile.fit_to_cluster(text) == text
    monkeypatch.setattr(schedulers, "here", lambda: ("none", ""))
    fake_slurm.nodes = [(1, 1000, "")]
    assert profile.fit_to_cluster(text) == text, "no controller here: the template as it is"
