"""Trainer overhead: ms per step of ptslurm's Trainer vs a hand-written PyTorch loop on the
same model and data, in one run (not part of the test run).

    python tests/benchmarks/bench_trainer.py [--steps 2000] [--device cpu|cuda]

Both loops do forward, loss, backward, gradient clipping and an Adam step per batch; the
Trainer adds its bookkeeping (scalar summaries, triggers, stop-request checks). Checkpoints
and summaries are triggered once, at the end, as in a long run between checkpoints.
"""
import argparse
import statistics
import tempfile
import time

import torch

import ptslurm as pt


class MLP(pt.Model):
    def __init__(self, width=512, depth=3):
        super().__init__()
        layers = []
        for _ in range(depth):
            layers += [torch.nn.Linear(width, width), torch.nn.ReLU()]
        self.net = torch.nn.Sequential(*layers, torch.nn.Linear(width, 10))

    def forward(self, batch):
        return self.net(batch[0])

    def review(self, batch, output):
        return {"loss": torch.nn.functional.cross_entropy(output, batch[1])}


def data(n, width, batch_size):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, width, generator=g)
    return pt.Batches((x, torch.randint(0, 10, (n,), generator=g)), batch_size, seed=0)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def hand_loop(steps, device, width, batch_size):
    torch.manual_seed(0)
    model = MLP(width).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = data(steps * batch_size, width, batch_size)
    sync(device)
    start = time.perf_counter()
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = torch.nn.functional.cross_entropy(model.net(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1e10)
        opt.step()
        opt.zero_grad(set_to_none=True)
    sync(device)
    return (time.perf_counter() - start) / steps * 1000


def trainer_loop(steps, device, width, batch_size):
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = pt.Trainer(MLP(width), storage_dir=tmp, stop_trigger=(steps, "iteration"),
                             checkpoint_trigger=(steps, "iteration"), summary_trigger=(steps, "iteration"),
                             device=str(device))
        batches = data(steps * batch_size, width, batch_size)
        sync(device)
        start = time.perf_counter()
        trainer.train(batches)
        sync(device)
        elapsed = time.perf_counter() - start
    # the final checkpoint and summary are part of the Trainer's time: leave them in
    return elapsed / steps * 1000


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    device = torch.device(args.device)
    hand_loop(200, device, args.width, args.batch_size)  # warm-up (allocator, kernels)
    trainer_loop(200, device, args.width, args.batch_size)
    hand, trainer = [], []
    for _ in range(args.repeats):  # interleaved, so drift hits both alike
        hand.append(hand_loop(args.steps, device, args.width, args.batch_size))
        trainer.append(trainer_loop(args.steps, device, args.width, args.batch_size))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    h, t = statistics.median(hand), statistics.median(trainer)
    print(f"device: {name}; MLP {args.width}x3, batch {args.batch_size}, {args.steps} steps, median of {args.repeats}")
    print(f"hand-written loop: {h:.3f} ms/step")
    print(f"ptslurm Trainer:   {t:.3f} ms/step")
    print(f"ratio:             {t / h:.3f}x")


if __name__ == "__main__":
    main()
