"""What seml, submitit and hydra users expect besides running sweeps (issue 19, item 10):
a note per sweep, filters, colour on a terminal, deleting a sweep, one notification when a
sweep has ended, shell completion."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLES, TEST_EXPERIMENTS, read_status, run_cli, wait_for

TINY = EXAMPLES / "tiny.py"


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A local sweep of tiny with a note and --notify: point 0 completes, point 1 fails."""
    tmp = tmp_path_factory.mktemp("mixed")
    told = tmp / "told.txt"
    env = {"SLURM_CONF": str(tmp / "none.conf")}
    proc = run_cli("sweep", "--json", "--root", tmp / "runs", "-j", "2", "--note", "baseline of the lr study",
                   "--notify", f'echo "$PTSLURM_SWEEP_NAME: $PTSLURM_COUNTS" >> {told}', TINY,
                   "with", "fail=[False,True]", "steps=20", env=env)
    assert proc.returncode == 1 and "1 of 2 points did not complete" in proc.stderr, proc.stderr
    return json.loads(proc.stdout), tmp, told, env


def test_a_note_is_shown_by_list_and_list_filters_by_experiment(mixed):
    summary, tmp, _, env = mixed
    listed = run_cli("list", tmp / "runs", env=env)
    assert "baseline of the lr study" in listed.stdout and "note" in listed.stdout.splitlines()[0]
    assert run_cli("list", tmp / "runs", "-e", "tiny", env=env).stdout.count("tiny-") == 1
    other = run_cli("list", tmp / "runs", "--experiment", "resumable", env=env)
    assert other.returncode == 0 and "no sweeps" in other.stdout and "tiny-" not in other.stdout
    bad = run_cli("sweep", "--root", tmp / "runs", "--note", "two\nlines", TINY, env=env)
    assert bad.returncode == 2 and "--note takes one line" in bad.stderr


def test_status_state_and_collect_where_filter_points(mixed):
    summary, _, _, env = mixed
    sweep = summary["sweep_dir"]
    failed = json.loads(run_cli("status", sweep, "--json", "--state", "failed", env=env).stdout)
    assert [r["index"] for r in failed] == [1]
    both = json.loads(run_cli("status", sweep, "--json", "--state", "failed,completed", env=env).stdout)
    assert [r["index"] for r in both] == [0, 1]
    wrong = run_cli("status", sweep, "--state", "faild", env=env)
    assert wrong.returncode == 2 and "unknown state faild" in wrong.stderr and len(wrong.stderr.splitlines()) == 1
    rows = json.loads(run_cli("collect", sweep, "--format", "json", "--where", "fail=True", env=env).stdout)
    assert [r["index"] for r in rows] == [1]
    rows = json.loads(run_cli("collect", sweep, "--format", "json", "--where", "state=completed",
                              "--where", "fail=False", env=env).stdout)
    assert [r["index"] for r in rows] == [0]
    nothing = run_cli("collect", sweep, "--where", "lrr=0.1", env=env)
    assert nothing.returncode == 2 and "'lrr' is no column" in nothing.stderr


def test_the_end_of_a_sweep_is_notified_once_and_again_after_a_resubmission(mixed):
    summary, _, told, env = mixed
    name = Path(summary["sweep_dir"]).name
    assert told.read_text().splitlines() == [f"{name}: completed 1 failed 1"], "one notification for two ends"
    proc = run_cli("resubmit", summary["sweep_dir"], "--points", "0", env=env)
    assert proc.returncode == 0, proc.stderr
    assert told.read_text().splitlines() == [f"{name}: completed 1 failed 1"] * 2


def tty(command, env):
    """Run ``ptslurm COMMAND`` on a pseudo-terminal (script(1)); its output."""
    line = " ".join([sys.executable, "-m", "ptslurm", *map(str, command)])
    return subprocess.run(["script", "-qec", line, "/dev/null"], capture_output=True, text=True,
                          env=dict(os.environ, TERM="xterm", COLUMNS="120", **env)).stdout


def test_states_are_coloured_on_a_terminal_only_and_never_with_no_color(mixed):
    summary, _, _, env = mixed
    sweep = summary["sweep_dir"]
    on_tty = tty(["status", sweep], env)
    assert "\033[31mfailed\033[0m" in on_tty and "\033[32mcompleted\033[0m" in on_tty
    assert "\033[" not in tty(["status", sweep], dict(env, NO_COLOR="1"))
    assert "\033[" not in run_cli("status", sweep, env=env).stdout, "piped output is plain"
    # colour keeps alignment: without its codes, each state starts under the header's "state"
    import re

    lines = re.sub(r"\033\[\d+m", "", on_tty).replace("\r", "").splitlines()
    header = next(i for i, ln in enumerate(lines) if ln.startswith("#"))
    at = lines[header].index("state")
    assert [ln[at:].split()[0] for ln in lines[header + 2:header + 4]] == ["completed", "failed"], lines


def test_delete_lists_first_refuses_running_points_and_removes_everything(tmp_path, no_slurm):
    root = tmp_path / "runs"
    hold = tmp_path / "hold"
    hold.write_text("")
    proc = run_cli("sweep", "--json", "--root", root, TINY, "with", "lr=[0.1,0.2]", "steps=20")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    dirs = [Path(p["storage_dir"]) for p in summary["points"]]
    preview = run_cli("delete", summary["sweep_dir"])
    assert preview.returncode == 0 and all(f"would delete {d}" in preview.stdout for d in dirs)
    assert "nothing was deleted" in preview.stderr and all(d.exists() for d in dirs)
    busy = subprocess.Popen([sys.executable, "-m", "ptslurm", "sweep", "--json", "--root", str(root),
                             str(TEST_EXPERIMENTS / "probe.py"), "with", f"hold_while_exists={hold}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        probe_sweep = wait_for("the held point to run", lambda: next(
            (p for p in (root / "sweeps").iterdir() if p.name.startswith("probe-")
             and any(read_status(d).get("state") == "running" for d in (root / "probe").glob("*"))), None), timeout=120)
        refused = run_cli("delete", probe_sweep, "--yes")
        assert refused.returncode == 2 and "queued, running or waiting" in refused.stderr
        assert probe_sweep.exists()
    finally:
        hold.unlink()
        busy.communicate(timeout=120)
    gone = run_cli("delete", summary["sweep_dir"], "--yes")
    assert gone.returncode == 0, gone.stderr
    assert not any(d.exists() for d in dirs) and not Path(summary["sweep_dir"]).exists()
    assert (root / "sweeps" / probe_sweep.name).exists(), "the other sweep stays"


def test_delete_refuses_another_users_sweep(tmp_path, no_slurm, other_user):
    proc = run_cli("sweep", "--json", "--root", tmp_path / "runs", TINY, "with", "steps=5")
    sweep = Path(json.loads(proc.stdout)["sweep_dir"])
    os.chown(sweep / "manifest.json", other_user, -1)
    refused = run_cli("delete", sweep, "--yes")
    assert refused.returncode == 2 and "belongs to" in refused.stderr and sweep.exists()


@pytest.mark.fast
def test_completion_offers_commands_options_sweeps_and_points(tmp_path):
    from ptslurm.cli import build_parser, shape
    from ptslurm.cli.completion import candidates

    root = tmp_path / "runs"
    sweep = root / "sweeps" / "tiny-1234"
    sweep.mkdir(parents=True)
    (sweep / "manifest.json").write_text(json.dumps({"points": [{}, {}, {}]}))
    parser = shape(build_parser())
    assert "status" in candidates(parser, 1, ["ptslurm", "st"])
    assert "--sort" in candidates(parser, 2, ["ptslurm", "collect", "--s"])
    assert candidates(parser, 2, ["ptslurm", "status", "", "--root", str(root)]) == ["tiny-1234"]
    assert candidates(parser, 3, ["ptslurm", "logs", "--root", str(root), "tiny-1234", ""])[:0] == []
    assert candidates(parser, 5, ["ptslurm", "logs", "--root", str(root), "tiny-1234", ""]) == ["0", "1", "2"]
    assert "failed" in candidates(parser, 4, ["ptslurm", "status", "x", "--state", ""])
    assert candidates(parser, 2, ["ptslurm", "sweep", ""]) == [], "experiment files: the shell's own"
    # the new verbs and options
    assert {"hold", "release", "note", "command"} <= set(candidates(parser, 1, ["ptslurm", ""]))
    assert {"--where", "--state", "--setup", "--srun-arg", "--time"} <= set(candidates(parser, 2, ["ptslurm",
                                                                                                 "resubmit", "--"]))
    assert {"--where", "--state"} <= set(candidates(parser, 2, ["ptslurm", "cancel", "--"]))
    assert "--snapshot" in candidates(parser, 2, ["ptslurm", "command", "--"])
    assert candidates(parser, 5, ["ptslurm", "command", "--root", str(root), "tiny-1234", ""]) == ["0", "1", "2"]
    assert "failed" in candidates(parser, 4, ["ptslurm", "hold", "x", "--state", ""])


def test_the_bash_completion_script_completes_in_bash_and_help_stays_light(tmp_path):
    bin_dir = Path(sys.executable).parent
    script = run_cli("completion", "bash").stdout
    (tmp_path / "c.sh").write_text(script)
    out = subprocess.run(["bash", "-c", f"source {tmp_path / 'c.sh'}; COMP_WORDS=(ptslurm sta); COMP_CWORD=1; "
                                        "_ptslurm_complete; echo \"${COMPREPLY[@]}\""],
                         capture_output=True, text=True, env=dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}"))
    assert out.stdout.split() == ["status"], out
    light = subprocess.run([sys.executable, "-c", "import sys\nfrom ptslurm import cli\ntry:\n cli.main(['--help'])\n"
                            "except SystemExit:\n pass\nprint(sorted(m for m in sys.modules if m.startswith('ptslurm.')))"],
                           capture_output=True, text=True)
    assert "ptslurm.cli.completion" not in light.stdout and "ptslurm.cli" in light.stdout


def test_the_same_sweep_command_with_a_new_note_keeps_the_note(tmp_path, no_slurm):
    args = ["sweep", "--root", tmp_path / "runs", TINY, "with", "steps=5"]
    assert run_cli(*args[:3], "--note", "first try", *args[3:]).returncode == 0
    again = run_cli(*args[:3], "--note", "the baseline after all", *args[3:])
    assert again.returncode == 0 and "nothing new to submit" in again.stderr
    assert "its note is now 'the baseline after all'" in again.stderr
    listed = run_cli("list", tmp_path / "runs").stdout
    assert "the baseline after all" in listed and "first try" not in listed
    same = run_cli(*args)  # no --note: the note stays
    assert same.returncode == 0 and "note" not in same.stderr and "the baseline after all" in \
        run_cli("list", tmp_path / "runs").stdout


def test_notify_waits_for_resubmitted_points_and_ptslurm_run_sends_nothing(tmp_path, no_slurm):
    """A point that ends while another was resubmitted but has not started yet does not end
    the sweep (the notice would be filed as the resubmission's, and its real end would send
    nothing); running a point in the foreground is debugging, not the sweep's end."""
    from ptslurm.job import housekeeping
    from ptslurm.records import manifests
    from ptslurm.records import read_intent
    from ptslurm.submit.lifecycle import write_intent

    told = tmp_path / "told.txt"
    proc = run_cli("sweep", "--json", "--root", tmp_path / "runs", "--notify", f"echo sent >> {told}", TINY,
                   "with", "fail=[False,True]", "steps=5")
    assert proc.returncode == 1 and told.read_text() == "sent\n", proc.stderr
    sweep_dir = Path(json.loads(proc.stdout)["sweep_dir"])
    assert run_cli("run", sweep_dir, "0").returncode == 0
    assert told.read_text() == "sent\n", "`ptslurm run` sent a notification"
    manifest = manifests.read_manifest(sweep_dir)
    point = manifest.points[1]
    write_intent(sweep_dir, point, cancelled=False, submission=read_intent(point.path).submission + 1)
    assert not housekeeping.notify_if_ended(manifest, sweep_dir), "point 1's new job has not run yet"
    assert told.read_text() == "sent\n"


def test_a_note_is_set_shown_and_removed_after_the_fact(tmp_path, no_slurm):
    proc = run_cli("sweep", "--root", tmp_path / "runs", "--name", "n", TINY, "with", "steps=5")
    assert proc.returncode == 0, proc.stderr
    assert run_cli("note", "n", "--root", tmp_path / "runs").stdout.strip() == "(no note)"
    set_ = run_cli("note", "n", "lr study: the baseline", "--root", tmp_path / "runs")
    assert set_.returncode == 0 and "note set: lr study: the baseline" in set_.stdout
    assert "lr study: the baseline" in run_cli("list", tmp_path / "runs").stdout
    assert run_cli("note", "n", "--root", tmp_path / "runs").stdout.strip() == "lr study: the baseline"
    bad = run_cli("note", "n", "two\nlines", "--root", tmp_path / "runs")
    assert bad.returncode == 2 and "one line" in bad.stderr
    assert run_cli("note", "n", "", "--root", tmp_path / "runs").stdout.strip() == "n: note removed"
    assert "lr study" not in run_cli("list", tmp_path / "runs").stdout
