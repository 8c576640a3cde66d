"""The same `ptslurm sweep` command again, once its sweep is submitted, is recognised without
loading the experiment or building a config (it was 2.9x `python exp.py print_config`), and
says what the full path says; anything that changed the command, or the experiment file,
takes the full path."""
import json
import shutil
from pathlib import Path

from conftest import run_cli

COUNTING = '''
import os
from sacred import Experiment

with open(os.environ["IMPORTS_LOG"], "a") as fh:  # every import of this file leaves a line
    fh.write("imported\\n")

ex = Experiment("counting")

@ex.config
def config():
    lr = 0.1

@ex.automain
def main(lr):
    return lr
'''


def test_a_rerun_loads_nothing_and_says_nothing_new(tmp_path, no_slurm):
    exp = tmp_path / "proj" / "exp.py"
    exp.parent.mkdir()
    exp.write_text(COUNTING)
    log = tmp_path / "imports.log"
    env = {"IMPORTS_LOG": str(log)}
    args = ["sweep", "--json", "--root", tmp_path / "runs", exp, "with", "lr=[0.1,0.2]"]
    first = run_cli(*args, env=env)
    assert first.returncode == 0, first.stderr
    imported = log.read_text().count("imported")
    assert imported >= 3, "the pre-flight and each point imported it"
    again = run_cli(*args, env=env)
    assert again.returncode == 0 and "already exists with this spec: nothing new to submit" in again.stderr
    assert json.loads(again.stdout)["sweep_dir"] == json.loads(first.stdout)["sweep_dir"]
    assert json.loads(again.stdout)["already_submitted"] is True
    assert log.read_text().count("imported") == imported, "the re-run imported the experiment"
    # another note: kept, still nothing loaded
    noted = run_cli(*args[:1], "--note", "second look", *args[1:], env=env)
    assert "its note is now 'second look'" in noted.stderr and log.read_text().count("imported") == imported
    # the experiment changed: the full path (it loads the file), the same sweep, and the note on code
    exp.write_text(COUNTING + "\n# an edit\n")
    edited = run_cli(*args, env=env)
    assert "nothing new to submit" in edited.stderr and "exp.py changed since the sweep's code snapshot" in \
        edited.stderr, edited.stderr
    assert log.read_text().count("imported") > imported
    # another command: a new sweep
    other = run_cli(*args[:-1], "lr=[0.3]", env=env)
    assert other.returncode == 0 and json.loads(other.stdout)["sweep_dir"] != json.loads(first.stdout)["sweep_dir"]


def test_a_local_sweep_killed_before_any_point_started_is_run_by_the_same_command(tmp_path, no_slurm):
    """Killed between making the sweep (manifest, storage dirs) and starting its first point:
    the same command again runs every point; it is not a sweep with 'nothing new to submit'
    whose points stay pending for ever."""
    exp = tmp_path / "proj" / "exp.py"
    exp.parent.mkdir()
    exp.write_text(COUNTING)
    env = {"IMPORTS_LOG": str(tmp_path / "imports.log")}
    args = ["sweep", "--json", "--root", tmp_path / "runs", exp, "with", "lr=[0.1,0.2]"]
    killed = run_cli(*args, env={**env, "PTSLURM_FAILPOINT": "created"})
    assert killed.returncode == -9, killed.stderr
    sweep_dir = next((tmp_path / "runs" / "sweeps").iterdir())
    assert [s["state"] for s in json.loads(run_cli("status", sweep_dir, "--json").stdout)] == ["pending"] * 2
    again = run_cli(*args, env=env)
    assert again.returncode == 0 and "nothing new to submit" not in again.stderr, again.stderr
    assert "killed before it started any point" in again.stderr
    assert [(s["state"], s["result"]) for s in json.loads(run_cli("collect", sweep_dir, "--format", "json").stdout)] == [
        ("completed", 0.1), ("completed", 0.2)]


def test_a_stale_or_foreign_hint_takes_the_full_path(tmp_path, no_slurm):
    exp = tmp_path / "exp.py"
    exp.write_text(COUNTING)
    env = {"IMPORTS_LOG": str(tmp_path / "imports.log")}
    args = ["sweep", "--json", "--root", tmp_path / "runs", exp, "with", "lr=[0.1]"]
    first = json.loads(run_cli(*args, env=env).stdout)
    hints = list((tmp_path / "runs" / "sweeps" / ".requests").iterdir())
    assert len(hints) == 1
    shutil.rmtree(first["sweep_dir"])  # the sweep is gone: the same command makes it again
    again = run_cli(*args, env=env)
    assert again.returncode == 0 and "nothing new" not in again.stderr and Path(first["sweep_dir"]).is_dir()
    hints[0].write_text(json.dumps({"name": "../../elsewhere", "spec_hash": "x"}))  # damaged: ignored
    third = run_cli(*args, env=env)
    assert third.returncode == 0 and "nothing new to submit" in third.stderr
