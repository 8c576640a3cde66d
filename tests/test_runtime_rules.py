"""Where a rank stands and which GPU it keeps, from SLURM's environment (issue 34: a rank
pinned by its global rank on a second node went uncaught): the second node's ranks 2 and 3
are local ranks 0 and 1 and keep that node's first and second GPU."""
import pytest

from ptslurm.job import runtime

pytestmark = pytest.mark.fast


def env(procid, localid, nodeid, ntasks=4, nodes=2):
    return {"SLURM_PROCID": str(procid), "SLURM_LOCALID": str(localid), "SLURM_NODEID": str(nodeid),
            "SLURM_NTASKS": str(ntasks), "SLURM_JOB_NUM_NODES": str(nodes), "SLURM_JOB_NODELIST": "gpu[07-08]",
            "SLURM_JOB_ID": "1234"}


@pytest.mark.parametrize("procid, localid, nodeid, keeps", [(0, 0, 0, "4"), (1, 1, 0, "5"), (2, 0, 1, "4"),
                                                            (3, 1, 1, "5")])
def test_each_rank_keeps_its_local_gpu_on_every_node(procid, localid, nodeid, keeps, monkeypatch):
    d = runtime.distributed(env(procid, localid, nodeid))
    assert (d.rank, d.local_rank, d.node, d.nodes, d.world_size) == (procid, localid, nodeid, 2, 4)
    assert d.master_addr == "gpu07" and d.master_port == runtime.port_for("1234")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")  # what SLURM shows every task of the node
    runtime.pin_gpu(d)
    assert runtime.os.environ["CUDA_VISIBLE_DEVICES"] == keeps


def test_one_rank_or_one_gpu_is_left_as_it_is(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    runtime.pin_gpu(runtime.distributed(env(1, 1, 0, ntasks=2, nodes=1)))
    assert runtime.os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    runtime.pin_gpu(runtime.distributed({}))
    assert runtime.os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"
