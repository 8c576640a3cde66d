"""The Python API (``ptslurm.Client``/``Sweep``) on the fake scheduler, in seconds (test_api
runs it on the SLURM cluster and locally): a client plans without creating anything, sweeps,
opens a sweep by name, and its sweep handle reads states and status, cancels what still goes,
resubmits, collects; bad calls raise the command line's error and change nothing."""
from pathlib import Path

import pytest

from conftest import TEST_EXPERIMENTS, end_point

import ptslurm
from ptslurm.errors import UsageError
from ptslurm.schedulers.backends import FakeCluster

pytestmark = pytest.mark.fast

CURVES = TEST_EXPERIMENTS / "curves.py"


@pytest.fixture
def client(tmp_path):
    cluster = FakeCluster()
    return ptslurm.Client(root=tmp_path / "root", executor="slurm", scheduler=cluster.backend), cluster


def test_a_plan_checks_everything_and_creates_nothing(client, tmp_path):
    c, cluster = client
    plan = c.plan(CURVES, "speed=[0.2,0.4]", "steps=3", resources={"timeout_min": 10})
    assert [p.updates for p in plan.points] == [{"speed": 0.2, "steps": 3}, {"speed": 0.4, "steps": 3}]
    assert not (tmp_path / "root").exists() and not cluster.jobs


def test_a_sweep_handle_reads_cancels_resubmits_and_collects(client, tmp_path):
    c, cluster = client
    sweep = c.sweep(CURVES, "speed=[0.2,0.4,0.6]", "steps=3", name="api", resources={"timeout_min": 10})
    assert repr(sweep) == f"Sweep({str(sweep.dir)!r})" and sweep.dir.parent.name == "sweeps"
    assert sweep.states() == ["pending"] * 3 and len(cluster.queued()) == 3 and sweep.manifest.executor == "slurm"
    end_point(cluster, sweep.dir, 0, 0.25)
    assert sweep.states() == ["completed", "pending", "pending"]
    rows = sweep.status()
    assert [r["state"] for r in rows] == ["completed", "pending", "pending"]
    assert rows[0]["storage_dir"] == str(sweep.storage_dir(0)) and Path(rows[0]["storage_dir"]).is_dir()
    assert sweep.cancel() == [1, 2], "only the points still going"
    assert sweep.states() == ["completed", "cancelled", "cancelled"]
    jobs = sweep.resubmit([2])
    assert list(jobs) == [2] and jobs[2] in cluster.queued() and sweep.states()[2] == "pending"
    collected = sweep.collect()
    assert [r["index"] for r in collected] == [0, 1, 2] and collected[0]["result"] == 0.25
    assert c.open("api").dir == sweep.dir and c.open(sweep.dir).manifest.name == "api"


@pytest.mark.parametrize("call, message", [
    (lambda c: c.sweep(CURVES, "speed=[0.2]", resources={"gpu": 1}),
     "unknown resource(s) gpu; use fields of ptslurm's Resources: account, array_parallelism, constraint, cpus, gpus"),
    (lambda c: ptslurm.Client(executor="kubernetes"), "unknown executor 'kubernetes'; use slurm, local or auto"),
    (lambda c: c.open("nothing-here"), "no sweep 'nothing-here': not a directory, nor a sweep under"),
])
def test_a_bad_call_raises_the_command_lines_error_and_submits_nothing(client, tmp_path, call, message):
    c, cluster = client
    with pytest.raises(ptslurm.PtslurmError) as err:
        call(c)
    assert message in str(err.value)
    assert not cluster.jobs and not (tmp_path / "root" / "sweeps").exists()


def test_points_outside_the_sweep_are_refused_by_number(client):
    c, cluster = client
    sweep = c.sweep(CURVES, "speed=[0.2,0.4]", name="few", resources={"timeout_min": 10})
    calls = cluster.scancel_calls
    with pytest.raises(UsageError, match=r"no point 2 in this sweep \(it has points 0-1\)"):
        sweep.cancel([0, 2])
    with pytest.raises(UsageError, match=r"no point -1 in this sweep"):
        sweep.resubmit([-1])
    assert cluster.scancel_calls == calls and sweep.states() == ["pending", "pending"]
