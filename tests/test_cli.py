"""The command line as a user meets it, without SLURM: bad input gets a one-line error,
exit code 2 and no side effect; good input runs locally with the SLURM layout."""
import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import EXAMPLES, TEST_EXPERIMENTS, run_cli, tree

TINY = EXAMPLES / "tiny.py"


def assert_clean_error(proc, fragment, root):
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("ptslurm: error: ") and fragment in lines[0], lines[0]
    assert tree(root) == set(), f"bad input left files behind: {tree(root)}"


@pytest.fixture
def root(tmp_path):
    return tmp_path / "root with space"


@pytest.mark.parametrize("args, fragment", [
    (["missing.py"], "does not exist"),
    ([str(TEST_EXPERIMENTS / "no_experiment.py")], "defines no sacred Experiment"),
    ([str(TEST_EXPERIMENTS / "two_experiments.py")], "defines 2 sacred Experiments (ex, other)"),
    ([str(TINY), "with", "lr=[0.1,0.2"], "unbalanced brackets"),
    ([str(TINY), "with", "lr=[0.1,,]"], "not a Python literal"),
    ([str(TINY), "with", "lr=[]"], "empty axis"),
    ([str(TINY), "with", "lrr=[0.1,0.2]"], "unknown config key 'lrr'; did you mean 'lr'?"),
    ([str(TINY), "with", "nonexistent"], "unknown named config 'nonexistent' (available: long)"),
    ([str(TINY), "with", "[long,short]"], "unknown named config 'short'"),
    ([str(TEST_EXPERIMENTS / "probe.py"), "with", "x=[0,-1]"],
     "point 1 (x=-1): config scope failed: ZeroDivisionError: division by zero (probe.py:18)"),
    (["--sbatch", "requeue\ntouch /tmp/pwned #=1", str(TINY)], "control characters"),
    (["--time", "-5", str(TINY)], "must be positive"),
    (["--time", "2", "--signal-delay", "120", str(TINY)], "--time 2 min leaves no time to run"),
    (["--time", "1", "--signal-delay", "45", str(TINY)], "give --time 2 or more"),
    (["--mem", "nan", str(TINY)], "--mem must be a positive number of GB"),
    (["--mem", "inf", str(TINY)], "--mem must be a positive number of GB"),
    (["-j", "0", str(TINY)], "-j/--jobs must be at least 1, got 0"),
    (["-j", "-3", str(TINY)], "-j/--jobs must be at least 1, got -3"),
    (["--name", "my sweep", str(TINY)], "bad sweep name 'my sweep'"),
    (["--name", "x" * 101, str(TINY)], "use at most 100 letters"),
    (["--name", "a\tb", str(TINY)], "bad sweep name"),
    ([str(TINY), "with", "lr=[" + ",".join(str(i) for i in range(101)) + "]",
      "batch_size=[" + ",".join(str(i) for i in range(100)) + "]"], "the sweep has 10,100 points, more than --max-points 10,000"),
    (["--root", "/proc/ptslurm-runs", str(TINY)], "is not writable"),
])
def test_bad_input_is_one_line_exit_2_and_creates_nothing(args, fragment, root, no_slurm):
    proc = run_cli("sweep", "--root", root, *args)
    assert_clean_error(proc, fragment, root)


def test_unreadable_and_non_python_files(tmp_path, root, no_slurm):
    text = tmp_path / "exp.txt"
    text.write_text("")
    assert_clean_error(run_cli("sweep", "--root", root, text), "not a Python file", root)
    folder = tmp_path / "dir.py"
    folder.mkdir()
    assert_clean_error(run_cli("sweep", "--root", root, folder), "not a readable file", root)


def test_failing_import_names_the_exception(tmp_path, root, no_slurm):
    bad = tmp_path / "broken.py"
    bad.write_text("import sacred\nraise ImportError('no module named foo')\n")
    assert_clean_error(run_cli("sweep", "--root", root, bad), "failed to import: ImportError: no module named foo (broken.py:2)", root)


@pytest.mark.parametrize("text, fragment", [
    ("grid: {lr: {type: range, min: 0, max: .nan, step: 1}}", "'max' must be a finite number, got nan"),
    ("grid: {lr: {type: linspace, min: 0, max: .inf, num: 3}}", "'max' must be a finite number, got inf"),
    ("grid: {lr: {type: range, min: 0, max: 1.0e12, step: 1}}", "more than 1,000,000; use a larger step"),
    ("grid: {lr: {type: linspace, min: 0, max: 1, num: 100000000}}", "is more than 1,000,000 values"),
    ("random: {samples: 100000000, seed: 1, lr: {type: uniform, min: 0, max: 1}}", "samples are more than"),
    ("a: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
     "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
     "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\ngrid: {lr: [*f,*f,*f,*f,*f,*f,*f,*f,*f]}",
     "expands to more than 1,000,000 values"),
])
def test_sweep_files_with_nan_or_huge_ranges_are_refused_at_once(tmp_path, root, no_slurm, text, fragment):
    spec = tmp_path / "s.yaml"
    spec.write_text(text + "\n")
    assert_clean_error(run_cli("sweep", "--root", root, TINY, "-f", spec, timeout=60), fragment, root)


def test_an_experiment_that_exits_at_import_is_an_error(tmp_path, root, no_slurm):
    exp = tmp_path / "exits.py"
    exp.write_text("import os\nfrom sacred import Experiment\nex = Experiment('e')\nos._exit(0)\n")
    assert_clean_error(run_cli("sweep", "--root", root, exp), "calls os._exit(0) when imported", root)


def test_a_full_disk_is_a_clear_error_with_nothing_half_made(small_tmpfs, no_slurm):
    mnt = small_tmpfs("256k")
    (mnt / "runs").mkdir()
    fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT)  # fill it up
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    before = tree(mnt / "runs")
    proc = run_cli("sweep", "--root", mnt / "runs", TINY, "with", "lr=[0.1,0.2]")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no space left on device" in lines[0].lower(), proc.stderr
    assert tree(mnt / "runs") == before, "a half-made sweep was left behind"


def test_bad_sweep_files(tmp_path, root, no_slurm):
    bad = tmp_path / "s.yaml"
    bad.write_text("grid: [1, 2\n")
    assert_clean_error(run_cli("sweep", "--root", root, TINY, "-f", bad), "not valid YAML", root)
    bad.write_text("grd: {lr: [1, 2]}\n")
    assert_clean_error(run_cli("sweep", "--root", root, TINY, "-f", bad), "unknown section 'grd'", root)
    assert_clean_error(run_cli("sweep", "--root", root, TINY, "-f", tmp_path / "none.yaml"), "cannot read sweep file", root)


def test_root_that_is_not_a_directory(tmp_path, no_slurm):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = run_cli("sweep", "--root", blocker / "r", TINY, "with", "lr=[0.1,0.2]")
    assert_clean_error(proc, "is not a directory", blocker.parent / "nothing")
    assert blocker.read_text() == "x"


def test_root_that_is_not_writable(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to another user")
    root = tmp_path / "ro"
    root.mkdir()
    os.chmod(tmp_path, 0o755)
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
                           os.environ.get("PYTHON", __import__("sys").executable), "-m", "ptslurm", "sweep",
                           "--executor", "local", "--root", str(root / "sub"), str(TINY)],
                          capture_output=True, text=True, cwd="/",
                          env=dict(os.environ, HOME="/tmp", PYTHONPATH=str(EXAMPLES.parent)))
    assert_clean_error(proc, "is not writable", root)


def test_dry_run_prints_points_dirs_and_command_and_creates_nothing(root, no_slurm):
    proc = run_cli("sweep", "--root", root, "--dry-run", TINY, "with", "lr=[0.05,0.1]", "batch_size=[4,8]")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "4 points of experiment 'tiny'" in out
    assert "lr    batch_size" in out and str(root / "tiny" / "4") in out
    assert "-m ptslurm.job " in out and "nothing was created" in out
    assert tree(root) == set()


def test_local_sweep_runs_every_point_with_the_slurm_layout(root, no_slurm):
    proc = run_cli("sweep", "--root", root, "-j", "2", "--json", TINY, "with", "lr=[0.05,0.1]", "batch_size=[4,8]")
    assert proc.returncode == 0, proc.stderr
    assert "no SLURM here: running 4 points" in proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["executor"] == "local" and len(summary["points"]) == 4
    dirs = [Path(p["storage_dir"]) for p in summary["points"]]
    assert sorted(d.name for d in dirs) == ["1", "2", "3", "4"]
    for p, d in zip(summary["points"], dirs):
        assert p["state"] == "completed"
        run = json.loads((d / "sacred" / "1" / "run.json").read_text())
        assert run["status"] == "COMPLETED"
        config = json.loads((d / "config.json").read_text())
        assert config["storage_dir"] == str(d)
        assert (config["lr"], config["batch_size"]) == (p["updates"]["lr"], p["updates"]["batch_size"])
        assert "final loss" in (d / "sacred" / "1" / "cout.txt").read_text()
    manifest = json.loads((Path(summary["sweep_dir"]) / "manifest.json").read_text())
    assert manifest["versions"]["sacred"] and manifest["git"]["commit"] is not None
    assert (Path(summary["sweep_dir"]) / "code" / "tiny.py").is_file()

    again = run_cli("sweep", "--root", root, "-j", "2", TINY, "with", "lr=[0.05,0.1]", "batch_size=[4,8]")
    assert again.returncode == 0
    assert "nothing new to submit" in again.stderr
    assert sorted(p.name for p in (root / "tiny").iterdir() if p.is_dir()) == ["1", "2", "3", "4"]


def test_failed_point_makes_a_local_sweep_exit_non_zero(root, no_slurm):
    proc = run_cli("sweep", "--root", root, TINY, "with", "fail=[False,True]", "steps=20")
    assert proc.returncode == 1
    assert "1 of 2 points did not complete (point 1 failed: RuntimeError: tiny: failing on purpose" in proc.stderr
    status = json.loads((root / "tiny" / "2" / "ptslurm_status.json").read_text())
    assert status["state"] == "failed" and "Traceback" in status["attempts"][-1]["traceback"]
    run = json.loads((root / "tiny" / "2" / "sacred" / "1" / "run.json").read_text())
    assert run["status"] == "FAILED"


def test_seed_shaped_experiment_leaves_no_stray_dirs_and_records_each_attempt_once(tmp_path, root, no_slurm):
    env_root = tmp_path / "storage root"
    env = {"STORAGE_ROOT": str(env_root)}
    exp = TEST_EXPERIMENTS / "seedlike.py"
    dry = run_cli("sweep", "--root", root, "--dry-run", exp, "with", "trainer.optimizer.lr=[0.1,0.2]", "[big]", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "injected as trainer.storage_dir" in dry.stdout
    assert tree(root) == set() and tree(env_root) == set()
    proc = run_cli("sweep", "--root", root, "--json", exp, "with", "trainer.optimizer.lr=[0.1,0.2]", env=env)
    assert proc.returncode == 0, proc.stderr
    assert tree(env_root) == set(), "the config scope's own storage dirs must not land in $STORAGE_ROOT"
    for p in json.loads(proc.stdout)["points"]:
        d = Path(p["storage_dir"])
        assert sorted(x.name for x in (d / "sacred").iterdir()) == ["1", "_sources"]
        assert (d / "done.txt").read_text() == "2"


def test_experiment_in_a_git_repo_without_commits_still_runs(tmp_path, root, no_slurm):
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    exp = repo / "tiny.py"
    exp.write_text(TINY.read_text())
    proc = run_cli("sweep", "--root", repo / "runs", "--json", exp, "with", "steps=[20,40]")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    manifest = json.loads((Path(summary["sweep_dir"]) / "manifest.json").read_text())
    assert manifest["git"]["commit"] is None and manifest["git"]["reason"] == "the repository has no commits yet"
    assert all(p["state"] == "completed" for p in summary["points"])


def test_list_default_warning(tmp_path, root, no_slurm):
    exp = tmp_path / "listy.py"
    exp.write_text("from sacred import Experiment\nex = Experiment('listy')\n"
                   "@ex.config\ndef config():\n    sizes = [1, 2]\n\n@ex.automain\ndef main(sizes):\n    return sizes\n")
    proc = run_cli("sweep", "--root", root, "--dry-run", exp, "with", "sizes=[3,4]")
    assert proc.returncode == 0
    assert "sizes: the experiment's default is a list ([1, 2])" in proc.stderr
    assert "sizes=[[3,4]]" in proc.stderr


@pytest.mark.parametrize("command", ["", "sweep", "init", "status", "collect", "cancel", "resubmit", "logs",
                                     "plot", "list", "run", "show", "command"])
def test_every_help_shows_an_example(command):
    proc = run_cli(*([command] if command else []), "--help")
    assert proc.returncode == 0
    assert "Example" in proc.stdout or "ptslurm sweep exp.py with" in proc.stdout


def test_every_command_and_option_has_a_help_text():
    import argparse

    from ptslurm.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, command in sub.choices.items():
        assert command.description, f"`ptslurm {name} --help` has no description"
        for action in command._actions:
            assert action.help, f"`ptslurm {name}`: {action.option_strings or action.dest} has no help text"


def test_init_writes_profile_and_skeleton_that_run(tmp_path, no_slurm):
    proc = run_cli("init", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "ptslurm.yaml").is_file() and (tmp_path / "experiment.py").is_file()
    again = run_cli("init", tmp_path)
    assert again.returncode == 2 and "already exists; pass --force" in again.stderr
    run = run_cli("sweep", "--root", tmp_path / "runs", "experiment.py", "with", "lr=[1e-3,1e-4]", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert len(list((tmp_path / "runs" / "experiment").iterdir())) == 3  # 2 dirs + lock file


def test_inits_skeleton_survives_a_stop_and_its_profile_leaves_the_signal_delay_to_the_rule(tmp_path, no_slurm,
                                                                                          monkeypatch):
    """The skeleton stops at a step boundary when asked and its next attempt resumes where it
    stopped, ending as an uninterrupted run does; the profile does not pin a signal delay
    that would silence the short-limit rule."""
    import yaml

    import ptslurm
    from ptslurm.plan import experiment

    assert run_cli("init", tmp_path).returncode == 0
    profile = yaml.safe_load((tmp_path / "ptslurm.yaml").read_text())
    assert profile["resources"]["signal_delay_s"] is None
    dry = run_cli("sweep", "--dry-run", "--executor", "slurm", "--time", "3", "experiment.py", cwd=tmp_path)
    assert dry.returncode == 0 and "#SBATCH --signal=USR2@45" in dry.stdout, dry.stdout + dry.stderr
    _, ex = experiment.load(tmp_path / "experiment.py", module_name="skeleton_under_test")
    whole = ex.run(config_updates={"storage_dir": str(tmp_path / "whole")}).result
    asked = []
    monkeypatch.setattr(ptslurm, "should_stop", lambda: asked.append(1) or len(asked) > 3)
    stopped = tmp_path / "stopped"
    ex.run(config_updates={"storage_dir": str(stopped)})
    assert json.loads((stopped / "checkpoints" / "state.json").read_text())["epoch"] == 3
    assert not (stopped / "result.txt").exists(), "a stopped attempt is not the end"
    monkeypatch.setattr(ptslurm, "should_stop", lambda: asked.append(1) and False)
    resumed = ex.run(config_updates={"storage_dir": str(stopped)})
    assert resumed.result == whole and len(asked) == 4 + 7, "resumed at epoch 3: 7 epochs to go"
    assert (stopped / "result.txt").read_text() == f"{whole}\n"
