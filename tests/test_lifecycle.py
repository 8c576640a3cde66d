"""Living in a sweep: status, collect, cancel, resubmit, logs, plot and list, from the files.
SLURM where SLURM is involved; bad input everywhere gets one line and exit code 2."""
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import EXAMPLES, TEST_EXPERIMENTS, run_cli, tree

PROBE = TEST_EXPERIMENTS / "probe.py"


def wait_for(what, check, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def states(sweep_dir, root):
    proc = run_cli("status", sweep_dir, "--json", "--root", root)
    assert proc.returncode == 0, proc.stderr
    return [r["state"] for r in json.loads(proc.stdout)]


@pytest.fixture(scope="module")
def life(slurm_cluster, tmp_path_factory):
    """A sweep of four probe points on the test cluster (no requeue of failures): 0 fails
    (until its flag file is removed), 1 and 2 complete, 3 runs until cancelled. Later stages
    (``fixed``) build on it; each test names the one behaviour it checks."""
    tmp_path = tmp_path_factory.mktemp("life")
    root = tmp_path / "root"
    flag, hold = tmp_path / "broken", tmp_path / "hold"
    flag.write_text("")
    hold.write_text("")
    spec = tmp_path / "sweep.yaml"
    spec.write_text(f"zip:\n  - x: [0, 1, 2, 3]\n    fail_if_exists: ['{flag}', '', '', '']\n"
                    f"    hold_while_exists: ['', '', '', '{hold}']\n")
    cmd = ["sweep", "--root", root, "--name", "life", "--max-requeues", "0", PROBE, "-f", spec]
    proc = run_cli(*cmd)
    assert proc.returncode == 0, proc.stderr
    sweep_dir = Path(proc.stdout.strip())
    wait_for("three points to end and one to run",
             lambda: states("life", root) == ["failed", "completed", "completed", "running"])
    cancel = run_cli("cancel", "life", "--points", "3", "--root", root)
    wait_for("the cancel", lambda: states("life", root) == ["failed", "completed", "completed", "cancelled"])
    return {"root": root, "sweep_dir": sweep_dir, "flag": flag, "hold": hold, "cmd": cmd, "cancel": cancel}


@pytest.fixture(scope="module")
def fixed(life):
    """The failure fixed and `resubmit --failed` run to completion, then the cancelled point
    resubmitted and completed."""
    root, sweep_dir = life["root"], life["sweep_dir"]
    before = json.loads((sweep_dir / "manifest.json").read_text())["points"]
    life["flag"].unlink()
    failed = run_cli("resubmit", "life", "--failed", "--root", root)
    after = json.loads((sweep_dir / "manifest.json").read_text())["points"]
    wait_for("point 0 to complete", lambda: states("life", root)[0] == "completed")
    life["hold"].unlink()
    cancelled = run_cli("resubmit", "life", "--points", "3", "--root", root)
    wait_for("all completed", lambda: states("life", root) == ["completed"] * 4)
    # a point's job stays in the queue a moment after its status says completed (it ends the
    # attempt, then exits): run to completion means gone from the queue too
    wait_for("the jobs to leave the queue",
             lambda: not subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout.strip())
    return dict(life, before=before, after=after, failed=failed, cancelled=cancelled)


@pytest.mark.slurm
def test_cancel_stops_a_running_point_and_says_which(life):
    assert life["cancel"].returncode == 0 and "cancelled 1 point(s): 3" in life["cancel"].stdout
    assert states("life", life["root"]) == ["failed", "completed", "completed", "cancelled"]


@pytest.mark.slurm
def test_the_status_table_counts_the_states_within_a_100_column_terminal(life):
    table = run_cli("status", "life", "--root", life["root"], env={"COLUMNS": "100"}).stdout
    assert "failed" in table and "cancelled" in table and "completed 2" in table
    assert max(len(line) for line in table.splitlines()) <= 100, "a 100-column terminal wraps no row"


@pytest.mark.slurm
def test_collect_gives_each_points_state_values_metrics_and_result(life):
    collect = json.loads(run_cli("collect", "life", "--format", "json", "--root", life["root"]).stdout)
    assert [r["state"] for r in collect] == ["failed", "completed", "completed", "cancelled"]
    assert [r["x"] for r in collect] == [0, 1, 2, 3]
    assert collect[2]["score/final"] == 2.0 and collect[2]["score/best"] == 2.0 and collect[2]["result"] == 2


@pytest.mark.slurm
def test_logs_of_a_failed_point_show_its_traceback(life):
    logs = run_cli("logs", "life", "0", "--root", life["root"])
    assert logs.returncode == 0 and "ValueError: probe failing on purpose" in logs.stdout and "Traceback" in logs.stdout


@pytest.mark.slurm
def test_resubmit_failed_queues_only_the_failed_point_again_in_its_own_storage_dir(fixed):
    assert fixed["failed"].returncode == 0, fixed["failed"].stderr
    assert fixed["failed"].stdout.startswith("resubmitted 1 point(s): 0 (")
    before, after = fixed["before"], fixed["after"]
    assert after[0]["job_id"] != before[0]["job_id"]
    assert [p["job_id"] for p in after[1:]] == [p["job_id"] for p in before[1:]], "only the failed point"
    assert (Path(after[0]["storage_dir"]) / "sacred" / "2").is_dir(), "rerun in its own storage dir"


@pytest.mark.slurm
def test_resubmit_of_a_cancelled_point_runs_it_to_completion(fixed):
    assert fixed["cancelled"].returncode == 0, fixed["cancelled"].stderr
    assert states("life", fixed["root"])[3] == "completed"


@pytest.mark.slurm
def test_the_same_sweep_command_again_changes_nothing_and_queues_nothing(fixed):
    final = (fixed["sweep_dir"] / "manifest.json").read_text()
    again = run_cli(*fixed["cmd"])
    assert again.returncode == 0 and "nothing new to submit" in again.stderr
    assert (fixed["sweep_dir"] / "manifest.json").read_text() == final, "the rerun changed the manifest"
    queued = subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout.strip()
    assert queued == "", f"the rerun queued jobs: {queued}"


@pytest.mark.slurm
def test_list_shows_the_sweep_with_its_points_counted_by_state(fixed):
    listing = run_cli("list", fixed["root"]).stdout
    assert "life" in listing and "completed 4" in listing


@pytest.mark.slurm
def test_job_killed_from_outside_without_files_is_not_running_forever(slurm_cluster, tmp_path):
    root = tmp_path / "root"
    proc = run_cli("sweep", "--root", root, "--json", "--sbatch", "begin=now+1hour", PROBE, "with", "x=[1,2]")
    assert proc.returncode == 0, proc.stderr
    points = json.loads(proc.stdout)["points"]
    assert states(Path(json.loads(proc.stdout)["sweep_dir"]), root) == ["pending", "pending"]
    subprocess.run(["scancel", points[0]["job_id"].split("_")[0]], check=True)
    wait_for("squeue to forget", lambda: subprocess.run(["squeue", "-h", "-j", points[0]["job_id"].split("_")[0]],
                                                        capture_output=True, text=True).stdout.strip() == "")
    got = wait_for("sacct", lambda: (s := states(Path(json.loads(proc.stdout)["sweep_dir"]), root)) != ["pending"] * 2
                   and s)
    assert got == ["cancelled", "cancelled"] or set(got) <= {"cancelled", "lost"}
    assert not any(Path(p["storage_dir"], "ptslurm_status.json").exists() for p in points)


def test_plot_has_one_curve_per_point_and_collect_sorts_and_picks_the_best(tmp_path, no_slurm):
    root = tmp_path / "root"
    proc = run_cli("sweep", "--root", root, "--name", "p", PROBE, "with", "x=[1,3,2]")
    assert proc.returncode == 0, proc.stderr
    sweep_dir = Path(proc.stdout.strip())
    from ptslurm.cli import plot

    fig = plot.plot(sweep_dir, "score", tmp_path / "score.png")
    assert len(fig.axes[0].get_lines()) == 3
    assert (tmp_path / "score.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["x=1", "x=3", "x=2"]
    assert all(line.get_marker() in (None, "None") for line in fig.axes[0].get_lines()), "curves are lines"
    from unittest import mock

    with mock.patch.object(plot, "curves", return_value=[("x=1", [1, 2], [0.5, 1.0]), ("x=9", [1], [4.5])]):
        one = plot.plot(sweep_dir, "score")
    assert [line.get_marker() for line in one.axes[0].get_lines()] == ["None", "o"], "a single value is a visible dot"
    cli = run_cli("plot", "p", "--metric", "score", "--root", root)
    assert cli.returncode == 0 and "(3 curves)" in cli.stdout and (sweep_dir / "score.png").exists()
    best = run_cli("collect", "p", "--best", "score", "--root", root)
    assert best.stdout.strip() == json.loads((sweep_dir / "manifest.json").read_text())["points"][1]["storage_dir"]
    csv = run_cli("collect", "p", "--sort", "score", "--format", "csv", "--root", root).stdout.splitlines()
    assert csv[0].startswith("index,x,state,seed,result,score/final,score/best") and [r.split(",")[1] for r in csv[1:]] == [
        "3", "2", "1"]
    md = run_cli("collect", "p", "--format", "md", "-o", tmp_path / "r.md", "--root", root)
    assert md.returncode == 0 and (tmp_path / "r.md").read_text().startswith("| index | x | state |")
    watch = run_cli("status", "p", "--watch", "--interval", "0.1", "--root", root, timeout=60)
    assert watch.returncode == 0 and "3/3 ended" in watch.stdout, "--watch ends once every point has ended"
    follow = run_cli("logs", "p", "2", "--follow", "--root", root, timeout=60)
    assert follow.returncode == 0 and "Result: 2" in follow.stdout
    import ptslurm

    frame = ptslurm.to_frame(ptslurm.collect(["p"], root=str(root)))
    assert list(frame["x"]) == [1, 3, 2] and list(frame["score/best"]) == [1.0, 3.0, 2.0]  # max: a score


@pytest.mark.parametrize("args, fragment", [
    (["status", "nope"], "no sweep 'nope'"),
    (["collect", "nope"], "no sweep 'nope'"),
    (["logs", "SWEEP", "7"], "point 7 is out of range: sweep 'b' has points 0-1"),
    (["cancel", "SWEEP", "--points", "0,9"], "point 9 is out of range"),
    (["collect", "SWEEP", "--sort", "nonsense"], "unknown metric 'nonsense'; reported metrics: score"),
    (["plot", "SWEEP", "--metric", "nonsense"], "unknown metric 'nonsense'; reported metrics: score"),
    (["status", "CORRUPT"], "unreadable or corrupt"),
    (["status", "EMPTY"], "manifest.json' is missing"),
])
def test_bad_input_for_life_cycle_commands(tmp_path, no_slurm, args, fragment):
    root = tmp_path / "root"
    proc = run_cli("sweep", "--root", root, "--name", "b", PROBE, "with", "x=[1,2]")
    assert proc.returncode == 0, proc.stderr
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "manifest.json").write_text('{"schema": 1, "points": [')
    (tmp_path / "empty").mkdir()
    subs = {"SWEEP": proc.stdout.strip(), "CORRUPT": str(corrupt), "EMPTY": str(tmp_path / "empty")}
    before = tree(root)
    out = run_cli(*[subs.get(a, a) for a in args], "--root", root)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ptslurm: error: ") and fragment in lines[0], out.stderr
    assert tree(root) == before


def test_a_local_run_killed_without_a_word_shows_as_lost(tmp_path, no_slurm):
    import signal

    root = tmp_path / "root"
    hold = tmp_path / "hold"
    hold.write_text("")
    proc = subprocess.Popen([__import__("sys").executable, "-m", "ptslurm", "sweep", "--root", str(root), "--name", "k",
                             str(PROBE), "with", f"hold_while_exists='{hold}'"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    status_file = lambda: next(root.glob("probe/*/ptslurm_status.json"), None)  # noqa: E731
    wait_for("the point to run", lambda: status_file() and json.loads(status_file().read_text())["state"] == "running")
    assert states("k", root) == ["running"]
    os.kill(json.loads(status_file().read_text())["attempts"][-1]["pid"], signal.SIGKILL)
    proc.wait(timeout=60)
    assert states("k", root) == ["lost"]


def test_collect_cache_follows_changed_files(tmp_path, no_slurm):
    root = tmp_path / "root"
    proc = run_cli("sweep", "--root", root, "--name", "c", PROBE, "with", "x=[1,2]")
    assert proc.returncode == 0, proc.stderr
    sweep_dir = Path(proc.stdout.strip())
    from ptslurm.read import results

    first = results.collect([sweep_dir])
    assert (sweep_dir / "collect_cache.json").is_file()
    assert [r["score/final"] for r in first] == [1.0, 2.0]
    storage_dir = Path(first[0]["storage_dir"])
    metrics_path = storage_dir / "sacred" / "1" / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics["score"]["steps"].append(3)
    metrics["score"]["values"].append(7.5)
    metrics_path.write_text(json.dumps(metrics, indent=2))  # a heartbeat of a running point
    again = results.collect([sweep_dir])
    assert [r["score/final"] for r in again] == [7.5, 2.0] and again[0]["score/best"] == 7.5
    assert results.collect([sweep_dir], use_cache=False) == again


def test_a_foreign_or_damaged_manifest_is_one_line_and_list_goes_on(tmp_path, no_slurm):
    root = tmp_path / "root"
    ok = run_cli("sweep", "--root", root, "--name", "fine", TEST_EXPERIMENTS / "probe.py", "with", "x=[1]")
    assert ok.returncode == 0, ok.stderr
    for name, text in (("string-schema", '{"schema": "1", "points": []}'), ("no-points", '{"schema": 1}'),
                       ("a-list", "[]")):
        (root / "sweeps" / name).mkdir(parents=True)
        (root / "sweeps" / name / "manifest.json").write_text(text)
        proc = run_cli("status", name, "--root", root)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "is not a ptslurm manifest" in proc.stderr and "Traceback" not in proc.stderr
    listed = run_cli("list", root)
    assert listed.returncode == 0, listed.stderr
    assert "fine" in listed.stdout and "completed 1" in listed.stdout
    assert listed.stdout.count("unreadable") == 3


@pytest.mark.parametrize("damage", ["deleted", "edited"])
def test_refresh_code_replaces_a_lost_or_damaged_snapshot(tmp_path, no_slurm, damage):
    """With the sweep's code/ deleted (or a file of it edited), every point fails its code
    check; `resubmit --refresh-code` must take a new snapshot (the live code is unchanged, so
    it has the same hash as the broken one) and the point then completes."""
    import shutil

    proc = run_cli("sweep", "--json", "--root", tmp_path / "root", EXAMPLES / "tiny.py", "with", "steps=5")
    assert proc.returncode == 0, proc.stderr
    sweep_dir = Path(json.loads(proc.stdout)["sweep_dir"])
    if damage == "deleted":
        shutil.rmtree(sweep_dir / "code")
    else:
        (sweep_dir / "code" / "tiny.py").write_text("raise SystemExit('planted')\n")
    failing = run_cli("resubmit", sweep_dir, "--points", "0", "--keep-code")
    assert "snapshot" in (failing.stdout + failing.stderr + run_cli("status", sweep_dir).stdout)
    again = run_cli("resubmit", sweep_dir, "--points", "0", "--refresh-code")
    assert again.returncode == 0, again.stderr
    manifest = json.loads((sweep_dir / "manifest.json").read_text())
    assert manifest["points"][0]["code_version"] == 2 and (sweep_dir / "code-2").is_dir()
    assert json.loads(run_cli("status", sweep_dir, "--json").stdout)[0]["state"] == "completed"
