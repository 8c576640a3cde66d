"""The life-cycle verbs' rules (``submit.lifecycle``) on the fake scheduler and real files, in
seconds (test_lifecycle runs them through the command line on the SLURM cluster): which log
`ptslurm logs` shows for each attempt, rank and kind of sweep; the command `ptslurm command`
prints runs the point's config under sacred itself; hold touches only queued jobs and is
refused on a local sweep; a refreshed snapshot is a new code version only when the code
changed, and a damaged one is never reused; what `resubmit` says a point asks for."""
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TEST_EXPERIMENTS, end_point, fake_sweep

from ptslurm import records
from ptslurm.errors import UsageError
from ptslurm.plan.make import plan
from ptslurm.records import manifests
from ptslurm.records.spec import Resources
from ptslurm.schedulers.backends import FakeCluster
from ptslurm.submit import lifecycle
from ptslurm.submit.sweep import SweepRequest

pytestmark = pytest.mark.fast


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    """A sweep of a copy of plainloop.py (a test may change the copy), 3 points."""
    where = tmp_path_factory.mktemp("lifecycle-code")
    shutil.copy(TEST_EXPERIMENTS / "plainloop.py", where / "plainloop.py")
    p = plan(SweepRequest(experiment=str(where / "plainloop.py"), with_tokens=("steps=[3,4,5]", "delay_s=0.25"),
                          root=str(tmp_path_factory.mktemp("lifecycle-root")), name="template",
                          resources=Resources(timeout_min=10)), scheduler_given=True)
    yield p
    p.discard()


def manifest(sweep_dir: Path) -> records.Manifest:
    return manifests.read_manifest(sweep_dir)


def test_logs_show_sacreds_captured_output_else_the_schedulers_log_with_a_note(planned):
    cluster = FakeCluster()
    _, sweep_dir = fake_sweep(planned, "logs", cluster)
    m = manifest(sweep_dir)
    job0 = m.points[0].job_id
    path, attempt, note = lifecycle.log_paths(sweep_dir, m, 0, None)
    assert attempt is None and note is None and path.name == f"{job0}_0_log.out", "not started: the job's log"
    end_point(cluster, sweep_dir, 0, 0.5)
    cout = Path(m.points[0].storage_dir) / "sacred" / "1" / "cout.txt"
    cout.write_text("")
    path, attempt, note = lifecycle.log_paths(sweep_dir, m, 0, None)
    assert path.name == f"{job0}_0_log.out" and attempt.attempt == 1
    assert note == f"(sacred captured no output in {cout}; showing the scheduler log)"
    cout.write_text("step 1\n")
    assert lifecycle.log_paths(sweep_dir, m, 0, None)[:1] == (cout,)
    assert lifecycle.log_paths(sweep_dir, m, 0, 1)[0] == cout
    live = lifecycle.log_paths(sweep_dir, m, 0, None, live=True)
    assert live[0].name == f"{job0}_0_log.out" and live[2] is None, "--follow reads what is written as it happens"


@pytest.mark.parametrize("attempt, rank, message", [
    (2, 0, r"point 0 has 1 attempt\(s\); --attempt must be 1-1"),
    (0, 0, r"--attempt must be 1-1"),
    (None, 1, r"--rank 1: point 0 has ranks 0-0"),
    (None, -1, r"--rank -1: point 0 has ranks 0-0"),
])
def test_logs_refuse_an_attempt_or_rank_the_point_does_not_have(planned, attempt, rank, message):
    cluster = FakeCluster()
    _, sweep_dir = fake_sweep(planned, f"logs-bad-{attempt}-{rank}", cluster)
    end_point(cluster, sweep_dir, 0, 0.5)
    with pytest.raises(UsageError, match=message):
        lifecycle.log_paths(sweep_dir, manifest(sweep_dir), 0, attempt, rank=rank)


def test_a_local_sweeps_log_and_a_later_attempts_are_their_own(planned, tmp_path):
    cluster = FakeCluster()
    _, sweep_dir = fake_sweep(planned, "logs-local", cluster)
    end_point(cluster, sweep_dir, 1, 0.5, state="failed")
    end_point(cluster, sweep_dir, 1, 0.4)
    m = manifest(sweep_dir)
    (Path(m.points[1].storage_dir) / "sacred" / "1" / "cout.txt").write_text("first\n")
    (Path(m.points[1].storage_dir) / "sacred" / "2" / "cout.txt").write_text("second\n")
    assert lifecycle.log_paths(sweep_dir, m, 1, 1)[0].read_text() == "first\n"
    assert lifecycle.log_paths(sweep_dir, m, 1, None)[0].read_text() == "second\n"
    local = m.replace(executor="local")
    path, _, note = lifecycle.log_paths(sweep_dir, local, 1, None, live=True)
    assert path == sweep_dir / records.LOCAL_LOGS / "1.log" and note is None
    (Path(m.points[1].storage_dir) / "sacred" / "2" / "cout.txt").write_text("")
    assert "showing the local log" in lifecycle.log_paths(sweep_dir, local, 1, None)[2]


def test_the_printed_command_runs_the_points_config_under_sacred(planned):
    cluster = FakeCluster()
    _, sweep_dir = fake_sweep(planned, "command", cluster)
    m = manifest(sweep_dir)
    entry = m.points[2]
    command = lifecycle.point_command(m, 2)
    words = shlex.split(command)
    assert words[:3] == ["python", str(Path(m.experiment.file)), "with"]
    assert not any(w.startswith(f"{m.storage_key}=") for w in words), "the storage dir is left to the experiment"
    assert f"seed={entry.seed}" in words and "steps=5" in words and "delay_s=0.25" in words
    printed = subprocess.run([sys.executable, words[1], "print_config", "with", *words[3:]], capture_output=True,
                             text=True, timeout=120)
    assert printed.returncode == 0, printed.stderr
    plain = re.sub(r"\x1b\[[0-9;]*m", "", printed.stdout)  # sacred colours what the updates changed
    shown = {line.split("=")[0].strip(): line.split("=", 1)[1].split("#")[0].strip()
             for line in plain.splitlines() if "=" in line}
    assert (shown["steps"], shown["delay_s"], shown["seed"]) == ("5", "0.25", str(entry.seed))
    in_snapshot = lifecycle.point_command(m, 2, snapshot_code=True)
    code = m.code_of(entry.code_version)
    assert in_snapshot.startswith(f"cd {shlex.quote(str(Path(code.snapshot).parent))} && python "
                                  f"{shlex.quote(code.snapshot)} with ")


def test_hold_touches_only_queued_jobs_and_release_undoes_it(planned, monkeypatch):
    cluster = FakeCluster()
    _, sweep_dir = fake_sweep(planned, "hold", cluster)
    end_point(cluster, sweep_dir, 0, 0.5)
    m = manifest(sweep_dir)
    monkeypatch.setattr(lifecycle.schedulers, "of", lambda executor: cluster.backend(sweep_dir, Resources(), "x"))
    jobs = lifecycle.hold(sweep_dir, m, [0, 1, 2])
    assert jobs == sorted([m.points[1].job_id, m.points[2].job_id]), "the ended point's job is left alone"
    assert [cluster.jobs[j].get("held") for j in jobs] == [True, True]
    assert lifecycle.hold(sweep_dir, m, [1], release=True) == [m.points[1].job_id]
    assert cluster.jobs[m.points[1].job_id]["held"] is False and cluster.jobs[m.points[2].job_id]["held"]
    monkeypatch.undo()
    with pytest.raises(UsageError, match=r"sweep 'hold' runs locally: hold and release are SLURM's"):
        lifecycle.hold(sweep_dir, m.replace(executor="local"), [0])


@pytest.mark.parametrize("resources, said", [
    (Resources(), "the cluster's defaults"),
    (Resources(gpus=2, mem_gb=32.0, timeout_min=60), "gpus 2, mem 32 GB, time 60 min"),
    (Resources(partition="debug", cpus=4, mem_gb=1.5, signal_delay_s=90), "partition debug, cpus 4, mem 1.5 GB, "
                                                                          "signal delay 90 s"),
])
def test_what_a_point_asks_for_is_said_in_the_schedulers_terms(resources, said):
    assert lifecycle.describe_request(resources) == said


def test_a_refreshed_snapshot_is_a_new_version_only_when_the_code_changed(planned):
    cluster = FakeCluster()
    _, sweep_dir = fake_sweep(planned, "refresh", cluster)
    m = manifest(sweep_dir)
    assert lifecycle.code_change_note(m, sweep_dir) is None
    same = lifecycle.refresh_snapshot(sweep_dir, m, [0])
    assert same.latest_code == 1 and same.points[0].code_version == 1, "unchanged code: the snapshot it has"
    source = Path(m.experiment.file)
    text = source.read_text()
    try:
        source.write_text(text + "\n# changed\n")
        note = lifecycle.code_change_note(m, sweep_dir, [0])
        assert note is not None and note.startswith("plainloop.py changed since the sweep's code snapshot v1 (")
        new = lifecycle.refresh_snapshot(sweep_dir, m, [0])
        assert new.latest_code == 2 and [e.code_version for e in new.points] == [2, 1, 1]
        assert (sweep_dir / new.code_of(2).dir / "plainloop.py").read_text().endswith("# changed\n")
        assert (sweep_dir / m.code_of(1).dir / "plainloop.py").read_text() == text, "the old one stays for its points"
        assert lifecycle.refresh_snapshot(sweep_dir, new, [1]).points[1].code_version == 2
        damaged = sweep_dir / new.code_of(2).dir / "plainloop.py"
        damaged.write_text("broken")
        again = lifecycle.refresh_snapshot(sweep_dir, manifest(sweep_dir), [2])
        assert again.latest_code == 3 and again.points[2].code_version == 3, "a damaged snapshot is not reused"
    finally:
        source.write_text(text)
    assert json.loads((sweep_dir / records.MANIFEST).read_text())["code_versions"]["3"]["sha256"] == \
        again.code_of(2).sha256


def test_a_new_time_limit_brings_the_default_stop_lead_along_but_not_a_lead_set_by_hand():
    from ptslurm.plan.make import check_resources

    ruled = check_resources(Resources(timeout_min=60))[0]
    assert ruled.signal_delay_s == 120
    assert lifecycle._asking(ruled, {"timeout_min": 4}).signal_delay_s == 60, "a quarter of a short limit"
    assert lifecycle._asking(ruled, {"timeout_min": 600}).signal_delay_s == 120
    by_hand = check_resources(Resources(timeout_min=60, signal_delay_s=300))[0]
    assert lifecycle._asking(by_hand, {"timeout_min": 30}).signal_delay_s == 300
    assert lifecycle._asking(ruled, {"timeout_min": 30, "signal_delay_s": 200}).signal_delay_s == 200


def test_resubmitted_sbatch_options_join_the_points_and_setup_lines_are_added():
    from ptslurm.plan.make import check_resources

    old = check_resources(Resources(timeout_min=60, sbatch_args={"exclusive": True, "licenses": "a"},
                                    setup=("module load a",), srun_args=("--x",)))[0]
    new = lifecycle._asking(old, {"sbatch_args": {"licenses": "b", "begin": "now"}, "setup": ["module load b"],
                                  "srun_args": ["--y"], "mem_gb": 8.0})
    assert new.sbatch_args == {"exclusive": True, "licenses": "b", "begin": "now"}
    assert (new.setup, new.srun_args, new.mem_gb, new.timeout_min) == (("module load a", "module load b"),
                                                                       ("--x", "--y"), 8.0, 60)
    with pytest.raises(UsageError, match=r"mem"):
        lifecycle._asking(old, {"mem_gb": -1.0})


def test_points_given_the_same_new_request_share_one_resource_group(planned):
    cluster = FakeCluster()
    _, sweep_dir = fake_sweep(planned, "groups", cluster)
    m = manifest(sweep_dir)
    longer = lifecycle._with_resources(m, [0, 2], {"timeout_min": 120})
    assert [e.group for e in longer.points] == [1, 0, 1] and len(longer.groups) == 2
    assert longer.resources_of(0).timeout_min == 120 and longer.resources_of(1).timeout_min == 10
    same = lifecycle._with_resources(longer, [1], {"timeout_min": 120})
    assert [e.group for e in same.points] == [1, 1, 1] and len(same.groups) == 2, "an existing group is reused"
    back = lifecycle._with_resources(same, [2], {"timeout_min": 10})
    assert [e.group for e in back.points] == [1, 1, 0]
