"""The paths real users take, with experiments written for these tests (not the examples):
swept from their own folder and from elsewhere, reading data next to the script, importing
helpers through a parent-folder sys.path insert, with their own seed, their own observer and
logging. Local executor; the SLURM side of the same mechanisms is in test_slurm.py."""
import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import run_cli, tree


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def sweep_json(*args, cwd=None, env=None):
    proc = run_cli("sweep", "--json", *args, cwd=cwd, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc


def results_of(summary):
    out = []
    for p in summary["points"]:
        status = json.loads((Path(p["storage_dir"]) / "ptslurm_status.json").read_text())
        out.append(status["attempts"][-1].get("result"))
    return out


TORCH_EXP = """
    import torch
    from sacred import Experiment

    ex = Experiment("torchy")

    @ex.config
    def config():
        width = 3

    @ex.automain
    def main(width):
        return float(torch.ones(width).sum())
"""


@pytest.mark.parametrize("where", ["own folder", "elsewhere"])
def test_torch_experiment_swept_from_its_own_folder_or_elsewhere(tmp_path, no_slurm, where):
    """torch registers modules with a relative __file__; a sibling *folder* named x.py."""
    folder = tmp_path / "exp dir"
    write(folder / "exp.py", TORCH_EXP)
    (folder / "notes.py").mkdir()
    cwd = folder if where == "own folder" else tmp_path
    target = "exp.py" if where == "own folder" else folder / "exp.py"
    summary, _ = sweep_json("--root", tmp_path / "runs", target, "with", "width=[2,5]", cwd=cwd)
    assert [p["state"] for p in summary["points"]] == ["completed", "completed"]
    assert results_of(summary) == [2.0, 5.0]


def test_data_file_read_relative_to_file_is_in_the_snapshot(tmp_path, no_slurm):
    folder = tmp_path / "proj"
    write(folder / "data" / "values.txt", "1\n2\n3\n")
    write(folder / "exp.py", """
        from pathlib import Path
        from sacred import Experiment

        ex = Experiment("reader")
        HERE = Path(__file__).parent

        @ex.config
        def config():
            scale = 1

        @ex.automain
        def main(scale):
            return scale * sum(int(v) for v in (HERE / "data" / "values.txt").read_text().split())
    """)
    summary, _ = sweep_json("--root", tmp_path / "runs", folder / "exp.py", "with", "scale=[1,10]", cwd=tmp_path)
    assert results_of(summary) == [6, 60]
    code = Path(summary["sweep_dir"]) / "code"
    assert (code / "data" / "values.txt").read_text() == "1\n2\n3\n"
    manifest = json.loads((Path(summary["sweep_dir"]) / "manifest.json").read_text())
    assert len(manifest["code"]["sha256"]) == 64


def test_a_data_file_the_job_would_miss_fails_the_preflight(tmp_path, no_slurm):
    """Excluded by .ptslurmignore: the pre-flight, run from the snapshot, says so first."""
    folder = tmp_path / "proj"
    write(folder / "data" / "values.txt", "1\n")
    write(folder / ".ptslurmignore", "data/\n")
    write(folder / "exp.py", """
        from pathlib import Path
        from sacred import Experiment

        ex = Experiment("reader")
        VALUES = (Path(__file__).parent / "data" / "values.txt").read_text()

        @ex.automain
        def main():
            return VALUES
    """)
    root = tmp_path / "runs"
    proc = run_cli("sweep", "--root", root, folder / "exp.py")
    assert proc.returncode == 2, proc.stderr
    assert "FileNotFoundError" in proc.stderr and "values.txt" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert tree(root) == set()


@pytest.mark.parametrize("from_parent", [True, False])
def test_helper_imported_through_a_parent_sys_path_insert_comes_from_the_snapshot(tmp_path, no_slurm, from_parent):
    proj = tmp_path / "proj"
    write(proj / "common" / "helpers.py", "FACTOR = 7\n")
    write(proj / "experiments" / "exp.py", """
        import sys
        from pathlib import Path
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "common"))
        import helpers
        from sacred import Experiment

        ex = Experiment("uses-helper")

        @ex.config
        def config():
            x = 1

        @ex.automain
        def main(x):
            return [x * helpers.FACTOR, helpers.__file__]
    """)
    cwd = proj if from_parent else tmp_path
    summary, _ = sweep_json("--root", tmp_path / "runs", proj / "experiments" / "exp.py", "with", "x=[1,2]", cwd=cwd)
    code = (Path(summary["sweep_dir"]) / "code").resolve()
    for (value, helper_file), x in zip(results_of(summary), (1, 2)):
        assert value == 7 * x
        assert Path(helper_file).resolve() == code / "common" / "helpers.py", "the live tree was imported"


def test_snapshot_leaves_out_envs_git_caches_checkpoints_and_storage_roots(tmp_path, no_slurm):
    proj = tmp_path / "proj"
    write(proj / "exp.py", "from sacred import Experiment\nex = Experiment('lean')\n"
                           "@ex.automain\ndef main():\n    return 1\n")
    write(proj / "pkg" / "__init__.py", "")
    write(proj / "venv" / "pyvenv.cfg", "home = /usr\n")
    write(proj / "venv" / "lib" / "big.py", "x = 1\n")
    write(proj / ".git" / "HEAD", "ref: refs/heads/main\n")
    write(proj / "__pycache__" / "exp.cpython-311.pyc", "")
    write(proj / "checkpoints" / "ckpt_10.pth", "")
    write(proj / "my_runs" / "_sources" / "exp.py", "")
    write(proj / "outputs" / "ignored.bin", "")
    write(proj / ".gitignore", "outputs/\n")
    summary, _ = sweep_json("--root", proj / "runs", proj / "exp.py", cwd=proj)
    code = Path(summary["sweep_dir"]) / "code"
    assert sorted(str(p.relative_to(code)) for p in code.rglob("*") if p.is_file()) == ["exp.py", "pkg/__init__.py"]


def test_snapshot_size_cap_names_the_biggest_files(tmp_path, no_slurm):
    proj = tmp_path / "proj"
    write(proj / "exp.py", "from sacred import Experiment\nex = Experiment('fat')\n"
                           "@ex.automain\ndef main():\n    return 1\n")
    (proj / "weights.bin").write_bytes(b"\0" * 3_000_000)
    root = tmp_path / "runs"
    proc = run_cli("sweep", "--root", root, "--max-snapshot-mb", "1", proj / "exp.py")
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert "3.0 MB (cap 1 MB)" in line and "weights.bin (3.0 MB)" in line and ".ptslurmignore" in line
    assert tree(root) == set()


SEEDED = """
    import random
    from sacred import Experiment

    ex = Experiment("seeded")

    @ex.config
    def config():
        seed = 42
        x = 0

    @ex.automain
    def main(x, seed):
        return [seed, random.random()]
"""

UNSEEDED = """
    import random
    from sacred import Experiment

    ex = Experiment("unseeded")

    @ex.config
    def config():
        x = 0

    @ex.automain
    def main(x, seed):
        return [seed, random.random()]
"""


def test_the_experiments_own_seed_wins(tmp_path, no_slurm):
    exp = write(tmp_path / "exp.py", SEEDED)
    summary, _ = sweep_json("--root", tmp_path / "runs", exp, "with", "x=[1,2]")
    assert [p["seed"] for p in summary["points"]] == [42, 42]
    # sacred seeds python's random with the run's seed, exactly as `python exp.py` does
    direct = subprocess.run([sys.executable, str(exp), "-l", "ERROR", "print_config"], capture_output=True, text=True)
    assert "seed = 42" in direct.stdout
    assert results_of(summary) == [[42, random.Random(42).random()]] * 2
    collected = json.loads(run_cli("collect", summary["sweep_dir"], "--format", "json").stdout)
    assert [r["seed"] for r in collected] == [42, 42]


def test_an_axis_over_seed_and_a_fixed_seed_per_point_otherwise(tmp_path, no_slurm):
    exp = write(tmp_path / "exp.py", SEEDED)
    summary, _ = sweep_json("--root", tmp_path / "runs", exp, "with", "seed=[1,2]")
    assert results_of(summary) == [[1, random.Random(1).random()], [2, random.Random(2).random()]]
    free = write(tmp_path / "free" / "exp.py", UNSEEDED)
    summary, _ = sweep_json("--root", tmp_path / "runs", free, "with", "x=[1,2]")
    seeds = [p["seed"] for p in summary["points"]]
    assert [r[0] for r in results_of(summary)] == seeds, "ptslurm's fixed seed is the run's seed"
    assert seeds[0] != seeds[1]


def test_ptslurms_observer_decides_the_run_id_and_the_users_own_keeps_working(tmp_path, no_slurm):
    exp = write(tmp_path / "proj" / "exp.py", """
        from sacred import Experiment
        from sacred.observers import FileStorageObserver

        ex = Experiment("observed")
        ex.observers.append(FileStorageObserver("my_runs"))

        @ex.config
        def config():
            x = 0

        @ex.automain
        def main(x):
            return x
    """)
    for name in ("1", "2", "3"):  # the user's own observer folder already holds runs
        (tmp_path / "proj" / "my_runs" / name).mkdir(parents=True)
    summary, _ = sweep_json("--root", tmp_path / "runs", exp, "with", "x=[1,2,3]", cwd=tmp_path / "proj")
    for p in summary["points"]:
        assert p["state"] == "completed"
        assert sorted(os.listdir(Path(p["storage_dir"]) / "sacred")) == ["1", "_sources"]
    # a relative observer folder is the point's own, in its working dir (never the shared snapshot)
    assert not (Path(summary["sweep_dir"]) / "code" / "my_runs").exists()
    for p in summary["points"]:
        theirs = Path(p["storage_dir"]) / "work" / "my_runs"
        runs = [json.loads((d / "run.json").read_text()) for d in theirs.iterdir() if d.name.isdigit()]
        assert [(r["status"], r["result"]) for r in runs] == [("COMPLETED", p["index"] + 1)]


def test_logs_show_what_logging_printed_and_fall_back_to_the_local_log(tmp_path, no_slurm):
    exp = write(tmp_path / "exp.py", """
        import logging
        import os
        from sacred import Experiment

        logging.basicConfig(level=logging.INFO)
        log = logging.getLogger("mine")
        ex = Experiment("logger")

        @ex.config
        def config():
            raw = False

        @ex.automain
        def main(raw):
            if raw:  # bypasses every Python-level capture
                os.write(1, b"written to fd 1\\n")
            else:
                log.info("hello from logging")
    """)
    summary, _ = sweep_json("--root", tmp_path / "runs", exp, "with", "raw=[False,True]")
    cout = Path(summary["points"][0]["storage_dir"]) / "sacred" / "1" / "cout.txt"
    assert "hello from logging" in cout.read_text()
    logs = run_cli("logs", summary["sweep_dir"], "0")
    assert "hello from logging" in logs.stdout
    # output sacred could not see (written to fd 1) and a cout.txt with nothing in it
    raw_cout = Path(summary["points"][1]["storage_dir"]) / "sacred" / "1" / "cout.txt"
    assert "written to fd 1" not in raw_cout.read_text()
    raw_cout.write_text("")
    raw = run_cli("logs", summary["sweep_dir"], "1")
    assert raw.returncode == 0
    assert "written to fd 1" in raw.stdout and "showing the local log" in raw.stderr
    local_log = (Path(summary["sweep_dir"]) / "logs" / "0.log").read_text()
    assert "RuntimeWarning" not in local_log and "found in sys.modules" not in local_log


FIXABLE = """
    from sacred import Experiment

    ex = Experiment("fixable")

    @ex.config
    def config():
        x = 0

    @ex.automain
    def main(x):
        {body}
"""


DATA_BUG = """
    from sacred import Experiment

    ex = Experiment("fixable")

    @ex.config
    def config():
        activation = "relu"

    @ex.automain
    def main(activation):
        {body}
"""


def test_points_that_ran_two_code_versions_say_so_everywhere(tmp_path, no_slurm):
    """Fix a bug and resubmit the failed point: each point names the code it ran."""
    exp = write(tmp_path / "proj" / "exp.py", DATA_BUG.format(
        body="if activation == 'swish':\n            raise RuntimeError('data bug')\n        return 1.0"))
    sweep = ["sweep", "--root", tmp_path / "runs", "--json", exp, "with", "activation=['relu','swish']"]
    proc = run_cli(*sweep)
    assert proc.returncode == 1
    sweep_dir = Path(json.loads(proc.stdout)["sweep_dir"])
    write(exp, DATA_BUG.format(body="return 3.0 if activation == 'swish' else 2.0"))
    # the same command says the code changed and what to do
    again = run_cli(*sweep)
    assert "exp.py changed since the sweep's code snapshot v1" in again.stderr
    assert "--refresh-code" in again.stderr
    # resubmit makes the user choose
    stale = run_cli("resubmit", sweep_dir, "--failed")
    assert stale.returncode == 2 and "choose --refresh-code" in stale.stderr and "--keep-code" in stale.stderr
    assert [r["state"] for r in json.loads(run_cli("status", sweep_dir, "--json").stdout)] == ["completed", "failed"]
    fixed = run_cli("resubmit", sweep_dir, "--failed", "--refresh-code")
    assert fixed.returncode == 0, fixed.stderr
    status = json.loads(run_cli("status", sweep_dir, "--json").stdout)
    assert [r["code"].split()[0] for r in status] == ["v1", "v2"]
    text = run_cli("status", sweep_dir).stdout
    assert " code " in text.splitlines()[1] and "v1" in text and "v2" in text
    rows = json.loads(run_cli("collect", sweep_dir, "--format", "json").stdout)
    assert [(r["code"].split()[0], r["result"]) for r in rows] == [("v1", 1.0), ("v2", 3.0)], "relu ran the old code"
    assert "snapshot v2" in run_cli("show", sweep_dir, "1").stderr
    assert "snapshot v1" in run_cli("show", sweep_dir, "0").stderr
    assert (sweep_dir / "code" / "exp.py").read_text() != (sweep_dir / "code-2" / "exp.py").read_text(), \
        "both snapshots kept"
    # keeping the old code is a choice too, and the point then runs v1
    kept = run_cli("resubmit", sweep_dir, "--points", "0", "--keep-code")
    assert kept.returncode == 0, kept.stderr
    assert json.loads(run_cli("status", sweep_dir, "--json").stdout)[0]["code"].startswith("v1")
    run_again = run_cli("run", sweep_dir, "0")
    assert run_again.returncode == 2 and "--keep-code" in run_again.stderr


def test_a_snapshot_edited_after_submission_stops_the_job_without_retries(tmp_path, no_slurm):
    exp = write(tmp_path / "exp.py", FIXABLE.format(body="return x"))
    summary, _ = sweep_json("--root", tmp_path / "runs", exp, "with", "x=[1]")
    code_file = Path(summary["sweep_dir"]) / "code" / "exp.py"
    code_file.write_text(code_file.read_text().replace("return x", "return -x"))
    run_cli("resubmit", summary["sweep_dir"], "--points", "0")
    status = json.loads((Path(summary["points"][0]["storage_dir"]) / "ptslurm_status.json").read_text())
    last = status["attempts"][-1]
    assert last["state"] == "failed" and "code snapshot changed since submission" in last["error"]
    assert "--refresh-code" in last["error"] and "result" not in last


def test_run_and_show_one_point_in_the_foreground(tmp_path, no_slurm):
    exp = write(tmp_path / "exp.py", FIXABLE.format(body="print('ran', x); return x"))
    summary, _ = sweep_json("--root", tmp_path / "runs", "--name", "dbg", exp, "with", "x=[4,5]")
    shown = run_cli("show", "dbg", "1", "--root", tmp_path / "runs")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["x"] == 5
    ran = run_cli("run", "dbg", "1", "--root", tmp_path / "runs", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "ran 5" in ran.stdout
    status = json.loads((Path(summary["points"][1]["storage_dir"]) / "ptslurm_status.json").read_text())
    assert [a["state"] for a in status["attempts"]] == ["completed", "completed"]
    bad = run_cli("run", "dbg", "7", "--root", tmp_path / "runs")
    assert bad.returncode == 2 and "point 7 is out of range" in bad.stderr


def test_small_things_users_see_first(tmp_path, no_slurm):
    exp = write(tmp_path / "exp.py", FIXABLE.format(body="return x"))
    root = tmp_path / "runs"
    one = run_cli("sweep", "--root", root, "--json", exp)
    assert "running 1 point of" in one.stderr and "1 points" not in one.stderr
    assert json.loads(one.stdout)["state"] == "completed", "--json reports how the sweep ended"
    forgot = run_cli("sweep", "--root", root, exp, "x=[1,2]")
    assert forgot.returncode == 2
    assert "config updates go after `with`" in forgot.stderr and len(forgot.stderr.strip().splitlines()) == 1
    dry = run_cli("sweep", "--root", root, "--dry-run", "--executor", "slurm", exp, "with", "x=[1,2]")
    assert dry.returncode == 0, dry.stderr
    assert "#SBATCH --array=0-1" in dry.stdout and "--time" not in dry.stdout
    short = run_cli("sweep", "--root", root, "--time", "2", "--signal-delay", "120", exp)
    assert short.returncode == 2 and "give --time 3 or more, or a smaller --signal-delay" in short.stderr
    sweep_dir = json.loads(one.stdout)["sweep_dir"]
    status = run_cli("status", sweep_dir)
    assert "ended " in status.stdout and " ago" in status.stdout
    # a reader that went away (`| head`) is not an error with a traceback
    for command in (["status", sweep_dir], ["list", root], ["collect", sweep_dir]):
        proc = subprocess.Popen([sys.executable, "-m", "ptslurm", *map(str, command)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        proc.stdout.close()  # before it writes anything
        err = proc.stderr.read()
        assert proc.wait() == 141 and err == "", err


def test_named_configs_read_the_same_in_status_and_collect(tmp_path, no_slurm):
    exp = write(tmp_path / "exp.py", """
        from sacred import Experiment

        ex = Experiment("named")

        @ex.config
        def config():
            size = 1

        @ex.named_config
        def big():
            size = 2

        @ex.named_config
        def small():
            size = 0

        @ex.automain
        def main(size):
            return size
    """)
    summary, _ = sweep_json("--root", tmp_path / "runs", exp, "with", "[big,small]")
    status = run_cli("status", summary["sweep_dir"]).stdout
    collect = run_cli("collect", summary["sweep_dir"]).stdout
    for name in ("big", "small"):
        assert f"'{name}'" not in status and f"'{name}'" not in collect
        assert f" {name} " in status and f" {name} " in collect


def test_a_nan_metric_or_result_never_hides_a_point_nor_wins(tmp_path, no_slurm):
    exp = write(tmp_path / "exp.py", """
        from sacred import Experiment

        ex = Experiment("nan")

        @ex.config
        def config():
            broken = False

        @ex.automain
        def main(broken, _run):
            for step in range(3):
                _run.log_scalar("loss", float("nan") if broken else 1.0 - step / 10, step)
            return float("nan") if broken else 0.5
    """)
    summary, _ = sweep_json("--root", tmp_path / "runs", exp, "with", "broken=[True,False]")
    sweep_dir = summary["sweep_dir"]
    rows = json.loads(run_cli("status", sweep_dir, "--json").stdout)
    assert [(r["state"], r["attempts"]) for r in rows] == [("completed", 1), ("completed", 1)]
    collected = json.loads(run_cli("collect", sweep_dir, "--format", "json").stdout)
    assert [r["state"] for r in collected] == ["completed", "completed"]
    assert collected[1]["loss/final"] == pytest.approx(0.8)
    table = run_cli("collect", sweep_dir).stdout
    assert "nan" in table.lower()
    best = run_cli("collect", sweep_dir, "--best", "loss")
    assert best.stdout.strip() == summary["points"][1]["storage_dir"]
    ranked = json.loads(run_cli("collect", sweep_dir, "--sort", "result:min", "--format", "json").stdout)
    assert [r["index"] for r in ranked] == [1, 0]
    watch = run_cli("status", sweep_dir, "--watch", "--interval", "0.1", timeout=30)
    assert watch.returncode == 0


@pytest.mark.parametrize("damage", ["truncated status", "status is a list", "truncated metrics", "metrics of lists",
                                    "run.json is a list", "empty status"])
def test_a_damaged_file_is_named_and_never_shown_as_a_state_the_point_is_not_in(tmp_path, no_slurm, damage):
    exp = write(tmp_path / "exp.py", """
        from sacred import Experiment

        ex = Experiment("fragile")

        @ex.config
        def config():
            x = 0

        @ex.automain
        def main(x, _run):
            for step in range(3):
                _run.log_scalar("loss", x + 1.0 - step / 10, step)
            return x
    """)
    summary, _ = sweep_json("--root", tmp_path / "runs", exp, "with", "x=[0,1]")
    d = Path(summary["points"][0]["storage_dir"])
    target = {"truncated status": d / "ptslurm_status.json", "status is a list": d / "ptslurm_status.json",
              "empty status": d / "ptslurm_status.json", "truncated metrics": d / "sacred" / "1" / "metrics.json",
              "metrics of lists": d / "sacred" / "1" / "metrics.json", "run.json is a list": d / "sacred" / "1" / "run.json"}[damage]
    text = target.read_text()
    target.write_text({"truncated status": text[: len(text) // 2], "status is a list": "[1, 2]", "empty status": "",
                       "truncated metrics": text[: len(text) // 2], "metrics of lists": '{"loss": [1, 2]}',
                       "run.json is a list": "[]"}[damage])
    status = run_cli("status", summary["sweep_dir"])
    collect = run_cli("collect", summary["sweep_dir"], "--format", "json", "--no-cache")
    listed = run_cli("list", tmp_path / "runs")
    for proc in (status, collect, listed):
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    rows = json.loads(collect.stdout)
    assert rows[1]["state"] == "completed" and rows[1]["loss/final"] == pytest.approx(1.8), "the rest goes on"
    if "status" in damage:
        assert rows[0]["state"] == "unknown"
        assert f"{target} is damaged" in status.stderr and f"{target} is damaged" in collect.stderr
        assert "unknown 1" in status.stdout and "unknown 1" in listed.stdout
    elif "metrics" in damage:
        assert rows[0]["state"] == "completed" and rows[0].get("loss/final") is None
        assert f"{target} is damaged" in collect.stderr
        best = run_cli("collect", summary["sweep_dir"], "--best", "loss")
        assert best.returncode == 0 and f"{target} is damaged" in best.stderr
    else:
        assert rows[0]["state"] == "completed" and "completed 2" in status.stdout


def test_a_job_that_fills_the_disk_ends_failed_with_that_cause(tmp_path, no_slurm, small_tmpfs):
    mnt = small_tmpfs("3m")
    exp = write(tmp_path / "exp.py", """
        import os
        from sacred import Experiment

        ex = Experiment("filler")

        @ex.config
        def config():
            storage_dir = None

        @ex.automain
        def main(storage_dir):
            with open(os.path.join(storage_dir, "blob"), "wb") as fh:
                while True:
                    fh.write(b"x" * 65536)
                    fh.flush()
    """)
    proc = run_cli("sweep", "--root", mnt / "runs", "--json", exp)
    assert proc.returncode == 1, proc.stderr
    point = json.loads(proc.stdout)["points"][0]
    assert point["state"] == "failed"
    last = json.loads((Path(point["storage_dir"]) / "ptslurm_status.json").read_text())["attempts"][-1]
    assert last["cause"] == "no_space" and "No space left on device" in last["error"]
    assert "No space left on device" in proc.stderr
