"""Distributed Trainer overhead: ms per step of ptslurm's Trainer in a 2-rank point vs a
hand-written DistributedDataParallel loop of the same world size, model and data, and the
cost of the stop agreement (one all-reduce of a flag per optimizer step). Not part of the
test run.

    python tests/benchmarks/bench_ddp.py [--steps 300] [--world 2] [--width 256]

Ranks are local processes with gloo (CPU) or NCCL (one GPU each, when there are enough),
given SLURM's task variables as srun would, so that ``ptslurm.distributed()`` reads them.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_trainer import MLP, data  # noqa: E402

import ptslurm as pt  # noqa: E402


def device_for(rank):
    return torch.device("cuda", rank) if torch.cuda.device_count() > rank else torch.device("cpu")


def hand(steps, width, batch, rank, world):
    torch.manual_seed(0)
    device = device_for(rank)
    model = MLP(width).to(device)
    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[rank] if device.type == "cuda" else None)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = data(steps * batch * world, width, batch)
    batches.set_rank(rank, world)
    dist.barrier()
    start = time.perf_counter()
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        loss = torch.nn.functional.cross_entropy(ddp((x, y)), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1e10)
        opt.step()
        opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    dist.barrier()
    return (time.perf_counter() - start) / steps * 1000


def trainer(steps, width, batch, rank, world, tmp):
    torch.manual_seed(0)
    t = pt.Trainer(MLP(width), storage_dir=tmp, stop_trigger=(steps, "iteration"),
                   checkpoint_trigger=(steps, "iteration"), summary_trigger=(steps, "iteration"),
                   device=str(device_for(rank)))
    batches = data(steps * batch * world, width, batch)
    dist.barrier()
    start = time.perf_counter()
    t.train(batches)
    dist.barrier()
    return (time.perf_counter() - start) / steps * 1000


def agreement(steps):
    flag = torch.tensor([0])
    dist.barrier()
    start = time.perf_counter()
    for _ in range(steps):
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return (time.perf_counter() - start) / steps * 1000


def worker(rank, world, args, port, out):
    os.environ.update(SLURM_PROCID=str(rank), SLURM_NTASKS=str(world), SLURM_LOCALID=str(rank), SLURM_NODEID="0",
                      SLURM_JOB_NUM_NODES="1", SLURM_JOB_NODELIST="localhost", SLURM_JOB_ID=str(port))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    pt.init_process_group()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):  # alternating, so that drifts of the machine hit both
            rows.append(("hand", hand(args.steps, args.width, args.batch, rank, world)))
            rows.append(("trainer", trainer(args.steps, args.width, args.batch, rank, world, f"{tmp}/{repeat}")))
        rows.append(("agree", agreement(args.steps * 5)))
    if rank == 0:
        out.put(rows)
    dist.destroy_process_group()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5, help="runs of each loop; the median is shown")
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    port = 20000 + os.getpid() % 20000
    procs = [ctx.Process(target=worker, args=(r, args.world, args, port, out)) for r in range(args.world)]
    for p in procs:
        p.start()
    rows = out.get(timeout=1800)
    for p in procs:
        p.join()
    hand_ms = statistics.median(v for k, v in rows if k == "hand")
    trainer_ms = statistics.median(v for k, v in rows if k == "trainer")
    agree_ms = next(v for k, v in rows if k == "agree")
    device = torch.cuda.get_device_name(0) if torch.cuda.device_count() >= args.world else "cpu (gloo)"
    print(f"world size {args.world}, {device}, MLP {args.width}x3, batch {args.batch} per rank, {args.steps} steps, "
          f"median of {args.repeats}")
    print(f"hand-written DDP loop: {hand_ms:.3f} ms/step")
    print(f"ptslurm Trainer:       {trainer_ms:.3f} ms/step")
    print(f"ratio: {trainer_ms / hand_ms:.3f}x (target <= 1.05x)")
    print(f"stop agreement (all-reduce of a flag): {agree_ms:.3f} ms/step "
          f"({agree_ms / hand_ms * 100:.1f}% of a step)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
