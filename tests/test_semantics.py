"""A sweep means what the user wrote (issue 16): SLURM's time formats, --sbatch rules and
the direction of a metric, through the command line."""
import json
from pathlib import Path

import pytest

from conftest import EXAMPLES, run_cli, tree


def dry_script(tmp_path, *args, cwd=None):
    proc = run_cli("sweep", "--executor", "slurm", "--dry-run", "--root", tmp_path / "runs", *args,
                   EXAMPLES / "tiny.py", cwd=cwd)
    return proc


@pytest.mark.parametrize("given,minutes", [("0-08:00", 480), ("1-12:30", 2190), ("2-12", 3600), ("90", 90),
                                           ("1:30:00", 90)])
def test_time_in_sbatchs_forms_is_submitted_as_sbatch_reads_it(tmp_path, no_slurm, given, minutes):
    proc = dry_script(tmp_path, "--time", given)
    assert proc.returncode == 0, proc.stderr
    assert f"#SBATCH --time={minutes}\n" in proc.stdout


@pytest.mark.parametrize("options,lead,note", [(["--time", "1"], 15, True), (["--time", "3"], 45, True),
                                               (["--time", "8"], 120, False), ([], 120, False),
                                               (["--time", "2", "--signal-delay", "45"], 45, False)])
def test_a_short_time_limit_gets_a_stop_signal_that_fits_without_options(tmp_path, no_slurm, options, lead, note):
    """--time 1 with no other option is a normal request (issue 15's long trainings at short
    limits): the stop signal comes a quarter of the limit before its end instead of refusing;
    an explicit --signal-delay is taken as written."""
    proc = dry_script(tmp_path, *options)
    assert proc.returncode == 0, proc.stderr
    assert f"#SBATCH --signal=USR2@{lead}\n" in proc.stdout
    assert ("the default 120 s does not fit" in proc.stderr) == note, proc.stderr


def test_a_profile_time_and_mem_are_read_the_same_and_none_unsets_them(tmp_path, no_slurm):
    (tmp_path / "ptslurm.yaml").write_text("resources:\n  time: '0-08:00'\n  mem_gb: 16\n  cpus: 2\n")
    proc = dry_script(tmp_path, cwd=tmp_path)
    assert "#SBATCH --time=480\n" in proc.stdout and "#SBATCH --mem=16G" in proc.stdout
    proc = dry_script(tmp_path, "--mem", "none", "--time", "none", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "--mem=" not in proc.stdout and "--time=" not in proc.stdout and "--cpus-per-task=2" in proc.stdout


def test_sbatch_flags_and_refusals_from_the_command_line(tmp_path, no_slurm):
    proc = dry_script(tmp_path, "--sbatch", "exclusive", "--sbatch", "mail-type=END")
    assert proc.returncode == 0, proc.stderr
    assert "#SBATCH --exclusive\n" in proc.stdout and "#SBATCH --mail-type=END" in proc.stdout
    assert "#SBATCH --signal=USR2@120" in proc.stdout
    proc = run_cli("sweep", "--executor", "local", "--root", tmp_path / "runs", "--sbatch", "signal=USR1@90",
                   EXAMPLES / "tiny.py")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--signal-delay" in lines[0], lines
    assert tree(tmp_path / "runs") == set()


SERIES = """
from sacred import Experiment
ex = Experiment("series")

@ex.config
def config():
    which = 0

@ex.automain
def main(which, _run):
    for step, value in enumerate([[5.0, 0.0], [3.0, 2.0], [1.0, 1.0]][which]):
        _run.log_scalar("loss", value, step)
    return [0.5, 0.9, 0.9][which]
"""


def test_best_and_sort_say_the_direction_and_take_an_explicit_one(tmp_path, no_slurm):
    exp = tmp_path / "exp" / "series.py"
    exp.parent.mkdir()
    exp.write_text(SERIES)
    proc = run_cli("sweep", "--json", "--name", "d", "--root", tmp_path, exp, "with", "which=[0,1,2]")
    assert proc.returncode == 0, proc.stderr
    dirs = [p["storage_dir"] for p in json.loads(proc.stdout)["points"]]
    proc = run_cli("collect", "d", "--root", tmp_path, "--best", "loss")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == dirs[0], "lowest loss of any point: 0.0"
    assert "lowest first" in proc.stderr and "'loss': lower is better" in proc.stderr
    # the other way round: each point's best is then its highest value (5, 3, 1), read from its files
    proc = run_cli("collect", "d", "--root", tmp_path, "--best", "loss:max")
    assert proc.stdout.strip() == dirs[0], proc.stderr
    assert "highest first (max as asked)" in proc.stderr
    proc = run_cli("collect", "d", "--root", tmp_path, "--best", "result:max")
    assert proc.stdout.strip() == dirs[1] and "tie: points 1, 2" in proc.stderr, proc.stderr
    proc = run_cli("collect", "d", "--root", tmp_path, "--sort", "result")
    assert proc.returncode == 2 and "result:min or result:max" in proc.stderr


def sacred_config(exp, cwd, *with_args):
    """The config sacred itself builds for `python exp.py with ...` (its own observer's config.json)."""
    import subprocess
    import sys

    out = cwd / "sacred-own"
    subprocess.run([sys.executable, str(exp), "-F", str(out), "with", *with_args], cwd=cwd, check=True,
                   capture_output=True)
    return json.loads(next(out.glob("*/config.json")).read_text())


@pytest.mark.parametrize("executor", ["local", pytest.param("slurm", marks=pytest.mark.slurm)])
def test_with_config_files_as_sacred_reads_them(tmp_path, request, executor):
    """`with config.json` (and an axis over config files) as in sacred: relative to the cwd,
    copied into the snapshot so the job finds them."""
    if executor == "slurm":
        request.getfixturevalue("slurm_cluster")
    else:
        request.getfixturevalue("no_slurm")
    work = tmp_path / "work"
    (work / "cfgs").mkdir(parents=True)
    (work / "cfgs" / "fast.json").write_text(json.dumps({"lr": 0.7, "batch_size": 2}))
    (work / "slow.yaml").write_text("lr: 0.01\nsteps: 7\n")
    exp = EXAMPLES / "tiny.py"
    proc = run_cli("sweep", "--json", "--wait", "--executor", executor, "--root", tmp_path / "runs", exp,
                   "with", "[cfgs/fast.json,slow.yaml]", "steps=5", cwd=work, env={"PTSLURM_POLL_S": "0.5"})
    assert proc.returncode == 0, proc.stderr
    points = json.loads(proc.stdout)["points"]
    assert [p["state"] for p in points] == ["completed", "completed"]
    for point, with_args in zip(points, (["cfgs/fast.json", "steps=5"], ["slow.yaml", "steps=5"])):
        ours = json.loads((Path(point["storage_dir"]) / "config.json").read_text())
        theirs = sacred_config(exp, work, *with_args)
        for key in ("lr", "batch_size", "steps"):
            assert ours[key] == theirs[key], (key, ours[key], theirs[key])
    (work / "cfgs" / "fast.json").write_text(json.dumps({"lr": 0.9}))  # the submitted copy is what runs
    sweep_dir = Path(json.loads(proc.stdout)["sweep_dir"])
    assert json.loads((sweep_dir / "code" / "ptslurm-with" / "fast.json").read_text())["lr"] == 0.7


LAX = """
from sacred import Experiment
ex = Experiment("lax")

@ex.config
def config():
    optimizer = {"name": "adam", "lr": 0.1}
    steps = 3

@ex.automain
def main(optimizer, steps, extra):
    return [dict(optimizer), steps, extra]
"""


def test_preflight_is_as_lax_as_sacred_and_strict_on_typos(tmp_path, no_slurm):
    exp = tmp_path / "proj" / "lax.py"
    exp.parent.mkdir()
    exp.write_text(LAX)
    ok = run_cli("sweep", "--json", "--root", tmp_path / "runs", exp, "with",
                 "optimizer=[{'name':'sgd','momentum':0.9},{'name':'adam'}]", "extra=5")
    assert ok.returncode == 0, ok.stderr
    results = []
    for p in json.loads(ok.stdout)["points"]:
        run = json.loads((Path(p["storage_dir"]) / "sacred" / "1" / "run.json").read_text())
        results.append(run["result"])
    assert results[0][0] == {"name": "sgd", "lr": 0.1, "momentum": 0.9} and results[0][2] == 5
    typo = run_cli("sweep", "--root", tmp_path / "runs2", exp, "with", "step=4", "extra=1")
    assert typo.returncode == 2 and "unknown config key 'step'; did you mean 'steps'?" in typo.stderr
    bare = run_cli("sweep", "--root", tmp_path / "runs2", exp, "with", "recipient=[Bob,Alice]")
    assert bare.returncode == 2 and "\"recipient=['Bob','Alice']\"" in bare.stderr


def test_best_ranks_the_completed_points_unless_told_otherwise(tmp_path, no_slurm):
    """A point that failed after logging a better loss must not win `collect --best` (README
    feeds its output to Model.from_storage_dir); --where state=... ranks others on purpose."""
    exp = tmp_path / "exp" / "failing.py"
    exp.parent.mkdir()
    exp.write_text(
        "from sacred import Experiment\nex = Experiment('failing')\n\n@ex.config\ndef config():\n    loss = 1.0\n"
        "    crash = False\n\n@ex.automain\ndef main(loss, crash, _run):\n    _run.log_scalar('loss', loss, 1)\n"
        "    if crash:\n        raise RuntimeError('diverged')\n    return loss\n")
    proc = run_cli("sweep", "--json", "--name", "b", "--root", tmp_path, exp, "with", "loss=[0.1,0.5,0.7]",
                   "crash=[True,False]")
    dirs = {(p["config"]["loss"], p["config"]["crash"]) if "config" in p else i: p["storage_dir"]
            for i, p in enumerate(json.loads(proc.stdout)["points"])}
    best = run_cli("collect", "b", "--root", tmp_path, "--best", "loss")
    assert best.returncode == 0, best.stderr
    winner = json.loads(run_cli("collect", "b", "--root", tmp_path, "--format", "json", "--where",
                                "state=completed", "--sort", "loss").stdout)[0]
    assert best.stdout.strip() == winner["storage_dir"] and winner["loss"] == 0.1 and not winner["crash"]
    assert "among the 3 completed point(s)" in best.stderr
    failed = run_cli("collect", "b", "--root", tmp_path, "--best", "loss", "--where", "state=failed")
    rows = json.loads(run_cli("collect", "b", "--root", tmp_path, "--format", "json").stdout)
    by_dir = {r["storage_dir"]: r for r in rows}
    assert by_dir[failed.stdout.strip()]["state"] == "failed" and by_dir[failed.stdout.strip()]["loss"] == 0.1
    assert len(dirs) == 6
