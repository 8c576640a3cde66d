"""Points that span several ranks: the distributed runtime read from SLURM's environment,
sharded batches, and, on the real cluster, a 2-rank point (several tasks on the one node)
that is requeued at random moments and ends bit-identical to an uninterrupted 2-rank run."""
import json
import random
import subprocess
import time
from pathlib import Path

import pytest
import torch

import ptslurm as pt
from conftest import TEST_EXPERIMENTS, read_status, run_cli, wait_for
from ptslurm.job.runtime import Distributed, distributed, first_host, port_for

EXP = TEST_EXPERIMENTS / "ddp.py"


@pytest.mark.fast
@pytest.mark.parametrize("nodelist,host", [("localhost", "localhost"), ("gpu[07-09,12],cpu1", "gpu07"),
                                           ("n1,n2", "n1"), ("a-b[3]", "a-b3"), ("node[010-011]", "node010")])
def test_first_host_of_a_node_list(nodelist, host):
    assert first_host(nodelist) == host


@pytest.mark.fast
def test_ranks_from_slurms_environment():
    env = {"SLURM_PROCID": "3", "SLURM_NTASKS": "4", "SLURM_LOCALID": "1", "SLURM_NODEID": "1",
           "SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_NODELIST": "gpu[01-02]", "SLURM_JOB_ID": "12345"}
    assert distributed(env) == Distributed(rank=3, world_size=4, local_rank=1, node=1, nodes=2,
                                           master_addr="gpu01", master_port=port_for("12345"))
    assert distributed({}) == Distributed() and distributed({"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}).world_size == 1
    ports = {port_for(str(job)) for job in range(1000, 1100)}
    assert len(ports) == 100 and all(20000 <= p < 40000 for p in ports)  # array tasks on one node differ


@pytest.mark.fast
@pytest.mark.parametrize("n,world,batch", [(40, 2, 6), (41, 3, 4), (7, 4, 2)])
def test_sharded_batches_cover_every_example_and_give_every_rank_the_same_steps(n, world, batch):
    data = torch.arange(n)
    shards = []
    for rank in range(world):
        b = pt.Batches(data, batch_size=batch, seed=3)
        b.set_epoch(2)
        b.set_rank(rank, world)
        shards.append([x for (x,) in b])
    assert len({len(s) for s in shards}) == 1  # the same number of steps on every rank
    seen = torch.cat([torch.cat(s) for s in shards]).tolist()
    assert set(seen) == set(range(n)) and len(seen) - n < world  # padding repeats fewer than `world`
    assert not set(torch.cat(shards[0]).tolist()) & set(torch.cat(shards[1]).tolist()) or n % world


def latest_checkpoint(storage_dir: Path) -> int:
    """The iteration ckpt_latest.pth points at (0 before the first checkpoint)."""
    import os

    try:
        return int(os.readlink(storage_dir / "checkpoints" / "ckpt_latest.pth")[len("ckpt_"):-len(".pth")])
    except OSError:
        return 0


def final_params(storage_dir: Path):
    return torch.load(storage_dir / "checkpoints" / "ckpt_60.pth", weights_only=False)["model"]


def submit(root, *options, updates=(), layout=("--tasks-per-node", "2")):
    proc = run_cli("sweep", "--root", root, "--json", *layout, "--cpus", "1", *options, EXP,
                   "with", "seed=5", *updates)
    assert proc.returncode == 0, proc.stderr
    point = json.loads(proc.stdout)["points"][0]
    return point["job_id"], Path(point["storage_dir"]), Path(json.loads(proc.stdout)["sweep_dir"])


TWO_NODES = ("--nodes", "2", "--tasks-per-node", "1", "--partition", "multi")
ONE_NODE = ("--tasks-per-node", "2")


@pytest.fixture(scope="module")
def references(slurm_cluster, tmp_path_factory):
    """The uninterrupted run of each layout, made once for the module; ``references(layout)``
    gives its storage dir once it completed."""
    submitted = {}

    def get(layout, wait=True):
        if layout not in submitted:
            submitted[layout] = submit(tmp_path_factory.mktemp("reference"), layout=layout)[1]
        reference = submitted[layout]
        if wait:
            wait_for("the reference run", lambda: read_status(reference).get("state") in ("completed", "failed"),
                     timeout=300, every=1)
            assert read_status(reference)["state"] == "completed", read_status(reference)
        return reference

    return get


@pytest.mark.slurm
@pytest.mark.parametrize("layout", [ONE_NODE, TWO_NODES], ids=["2 ranks on 1 node", "2 nodes"])
def test_a_two_rank_point_requeued_at_random_moments_ends_bit_identical(slurm_cluster, references, tmp_path, layout):
    if layout == TWO_NODES and not slurm_cluster.extra:
        pytest.fail("the test cluster has no two-node partition: network namespaces are not available here "
                    "(root and iproute2 are needed)")
    references(layout)  # first: on 2 cores, two points side by side only slow each other

    rng = random.Random(11)
    job, storage_dir, sweep_dir = submit(tmp_path / "run", updates=("trainer.model.delay_s=0.05",), layout=layout)
    # a requeue, then (where the partition preempts) a job of the high-priority partition that
    # needs the whole node, each at a random moment
    # moments after the attempt made progress (a new checkpoint), so that each one resumes
    done = []
    for kind in ("requeued", "requeued" if layout == TWO_NODES else "preempted"):
        wait_for("a running attempt", lambda: read_status(storage_dir).get("state") == "running", timeout=180)
        start, before = read_status(storage_dir)["attempt"], latest_checkpoint(storage_dir)
        wait_for("progress", lambda: latest_checkpoint(storage_dir) > before
                 or read_status(storage_dir).get("state") != "running", timeout=180)
        time.sleep(rng.uniform(0, 0.4))
        if read_status(storage_dir).get("state") != "running":
            break
        if kind == "requeued":
            subprocess.run(["scontrol", "requeue", job], check=True)
        else:
            subprocess.run(["sbatch", "-p", "high", "-c", "8", "-o", "/dev/null", "--wrap", "sleep 1"], check=True,
                           capture_output=True)
        done.append(kind)
        wait_for("the next attempt", lambda: read_status(storage_dir).get("attempt", 0) > start, timeout=180)
    interruptions = len(done)
    reference = references(layout)
    ranks = [json.loads((reference / "ranks" / f"{r}.json").read_text()) for r in (0, 1)]
    local = ["0", "0"] if layout == TWO_NODES else ["0", "1"]  # one rank per node, or two on one
    assert [(r["rank"], r["world_size"], r["LOCAL_RANK"]) for r in ranks] == [(0, 2, local[0]), (1, 2, local[1])]
    assert len({tuple(r["master"]) for r in ranks}) == 1  # one rendezvous
    wait_for("completion", lambda: read_status(storage_dir).get("state") == "completed", timeout=400, every=1)
    status = read_status(storage_dir)
    assert interruptions >= 1 and [a["cause"] for a in status["attempts"][:-1]] == done
    assert len(status["attempts"]) == interruptions + 1  # one attempt per interruption, not one per rank
    assert all(a.get("ranks") == 2 for a in status["attempts"])
    runs = sorted(p.parent.name for p in (storage_dir / "sacred").glob("[0-9]*/run.json"))
    assert len(runs) == interruptions + 1  # exactly one sacred run per attempt
    ours, theirs = final_params(storage_dir), final_params(reference)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    # every summary, across the resumes, as the uninterrupted run wrote it (each rank's pending
    # summary values travel in the checkpoint)
    from conftest import joined_metrics

    mine, ref = joined_metrics(storage_dir, status["attempts"]), joined_metrics(reference, read_status(reference)["attempts"])
    assert mine.keys() == ref.keys() and "training/loss" in ref
    for name in ref:
        assert mine[name]["steps"] == ref[name]["steps"], name
        assert mine[name]["values"] == pytest.approx(ref[name]["values"], rel=1e-6, abs=1e-9), name
    logs = run_cli("logs", sweep_dir, "0", "--rank", "1")
    assert logs.returncode == 0 and "resuming from" in logs.stdout, logs.stderr  # rank 1's own output
    shown = run_cli("status", sweep_dir)
    nodes = 2 if layout == TWO_NODES else 1
    assert f"2 on {nodes} node" in shown.stdout, shown.stdout
    if layout == TWO_NODES:
        hosts = {json.loads((storage_dir / "ranks" / f"{r}.json").read_text())["master"][0] for r in (0, 1)}
        assert hosts == {"ptsn1"}, hosts


@pytest.mark.slurm
def test_sigkill_of_one_rank_brings_the_point_down_and_it_resumes_from_its_last_checkpoint(references, tmp_path):
    import os
    import signal

    references(ONE_NODE)
    job, storage_dir, _ = submit(tmp_path / "run", updates=("trainer.model.delay_s=0.05",))
    wait_for("a checkpoint", lambda: (storage_dir / "checkpoints" / "ckpt_latest.pth").exists(), timeout=180)
    os.kill(int((storage_dir / "ranks" / "1.pid").read_text()), signal.SIGKILL)
    wait_for("completion", lambda: read_status(storage_dir).get("state") in ("completed", "failed"),
             timeout=400, every=1)
    status = read_status(storage_dir)
    assert status["state"] == "completed", status["attempts"][0].get("error")
    first, last = status["attempts"][0], status["attempts"][-1]
    assert first["cause"] == "failed" and first["action"] == "requeue"  # rank 0 saw its peer die
    assert last["resumed_from"]["iteration"] >= 10  # from the periodic checkpoint, not from scratch
    ours, theirs = final_params(storage_dir), final_params(references(ONE_NODE))
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


@pytest.mark.slurm
def test_gpus_give_each_rank_its_own_device(slurm_cluster, tmp_path):
    _, storage_dir, _ = submit(tmp_path, "--gpus", "2")
    wait_for("completion", lambda: read_status(storage_dir).get("state") in ("completed", "failed"),
             timeout=300, every=1)
    assert read_status(storage_dir)["state"] == "completed"
    seen = [json.loads((storage_dir / "ranks" / f"{r}.json").read_text()) for r in (0, 1)]
    assert sorted(r["cuda_visible_devices"] for r in seen) == ["0", "1"]
    assert [r["LOCAL_RANK"] for r in seen] == ["0", "1"]
