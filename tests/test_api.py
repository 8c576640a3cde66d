"""The public Python API (issue 29): a notebook drives a whole sweep with ``import ptslurm``
alone (``Client``, ``Sweep``), on the test cluster and here, and gets the command line's
one-line errors."""
import pytest

import ptslurm
from conftest import EXAMPLES, TEST_EXPERIMENTS, wait_for


@pytest.mark.slurm
def test_a_notebook_plans_submits_waits_cancels_resubmits_and_collects_a_sweep(slurm_cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("PTSLURM_POLL_S", "0.5")
    hold = tmp_path / "hold"
    hold.write_text("")
    spec = tmp_path / "sweep.yaml"
    spec.write_text(f"zip:\n  - x: [0, 1, 2]\n    hold_while_exists: ['', '', '{hold}']\n")
    client = ptslurm.Client(root=tmp_path / "runs", executor="slurm")

    plan = client.plan(TEST_EXPERIMENTS / "probe.py", sweep_file=str(spec))
    assert [p.updates["x"] for p in plan.points] == [0, 1, 2]
    assert not (tmp_path / "runs" / "sweeps").exists(), "planning created nothing"

    sweep = client.sweep(TEST_EXPERIMENTS / "probe.py", sweep_file=str(spec), name="notebook")
    assert [p["job_id"] for p in sweep.status()] == [e.job_id for e in sweep.manifest.points]
    wait_for("point 2's attempt to run", lambda: (lambda row: row["state"] == "running" and row["attempts"])(
        sweep.status()[2]), timeout=120)
    assert sweep.cancel([2]) == [2]
    wait_for("the cancelled attempt to end", lambda: sweep.status()[2]["history"][-1]["state"] == "cancelled")
    hold.unlink()
    assert sweep.wait() == ["completed", "completed", "cancelled"]

    assert list(sweep.resubmit([2])) == [2]
    assert sweep.wait() == ["completed"] * 3
    rows = sweep.collect()
    assert [(r["x"], r["state"], r["result"]) for r in rows] == [(0, "completed", 0), (1, "completed", 1),
                                                                 (2, "completed", 2)]
    again = client.open("notebook")
    assert again.dir == sweep.dir and [a["state"] for a in again.status()[2]["history"]] == [
        "cancelled", "completed"]


def test_the_api_runs_a_sweep_here_resubmits_a_point_and_collects(tmp_path, no_slurm):
    client = ptslurm.Client(root=tmp_path / "runs")  # no controller answers: the points run here
    words = ("lr=[0.05,0.1]", "steps=5")
    assert len(client.plan(EXAMPLES / "tiny.py", *words).points) == 2
    assert not (tmp_path / "runs" / "sweeps").exists(), "planning created nothing"
    sweep = client.sweep(EXAMPLES / "tiny.py", *words, name="api")
    assert sweep.states() == ["completed", "completed"]
    assert sweep.resubmit([1]) == {1: "local"}
    assert sweep.status()[1]["attempts"] == 2 and sweep.states() == ["completed"] * 2
    assert [r["lr"] for r in sweep.collect()] == [0.05, 0.1]
    assert client.sweep(EXAMPLES / "tiny.py", *words, name="api").dir == sweep.dir, "the same call again"
    assert sweep.storage_dir(0).is_dir()


@pytest.mark.parametrize("call, message", [
    (lambda c, s: c.sweep(EXAMPLES / "tiny.py", "steps=5", resources={"gpu": 1}), "unknown resource(s) gpu; use"),
    (lambda c, s: s.cancel([5]), "no point 5 in this sweep (it has points 0-0)"),
    (lambda c, s: ptslurm.Client(executor="cluster"), "unknown executor 'cluster'"),
    (lambda c, s: c.open("nope"), "nope"),
])
def test_a_bad_call_raises_the_command_lines_error_and_changes_nothing(tmp_path, no_slurm, call, message):
    client = ptslurm.Client(root=tmp_path / "runs")
    sweep = client.sweep(EXAMPLES / "tiny.py", "steps=5", name="one")
    before = sorted(p.name for p in (tmp_path / "runs").rglob("*"))
    with pytest.raises(ptslurm.PtslurmError) as caught:
        call(client, sweep)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert sorted(p.name for p in (tmp_path / "runs").rglob("*")) == before
