#!/usr/bin/env bash
# The checks that need NVIDIA GPUs (run where a GPU machine is lent; the suite runs without one):
# the Trainer benchmark on CUDA, NCCL ranks of a distributed point (bench_ddp), and packed points
# each seeing its own GPU through torch (a local sweep with --points-per-job over the visible GPUs).
#   bash tests/gpu_check.sh            (with ptslurm and a CUDA torch installed in the python on PATH)
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python}
$py -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA device'; print(torch.cuda.device_count(), 'GPU(s):', torch.cuda.get_device_name(0))"
$py tests/benchmarks/bench_trainer.py --steps 200 --repeats 2
if [ "$($py -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
    $py tests/benchmarks/bench_ddp.py --steps 100 --world 2
fi
work=$(mktemp -d)
cat > "$work/gpus.py" <<'PY'
import json, os
import torch
from sacred import Experiment
ex = Experiment("gpus")
@ex.config
def config():
    x = 0
    storage_dir = None
@ex.automain
def main(x, storage_dir):
    props = torch.cuda.get_device_properties(0)
    json.dump({"visible": os.environ.get("CUDA_VISIBLE_DEVICES"), "count": torch.cuda.device_count(),
               "uuid": str(getattr(props, "uuid", props.name))}, open(os.path.join(storage_dir, "gpu.json"), "w"))
PY
n=$($py -c 'import torch; print(torch.cuda.device_count())')
CUDA_VISIBLE_DEVICES=$(seq -s, 0 $((n - 1))) $py -m ptslurm sweep --executor local --root "$work/root" \
    --points-per-job $((2 * n)) "$work/gpus.py" with "x=[$(seq -s, 1 $((2 * n)))]" > /dev/null
$py - "$work/root" "$n" <<'PY'
import json, pathlib, sys
root, n = pathlib.Path(sys.argv[1]), int(sys.argv[2])
seen = [json.loads(p.read_text()) for p in sorted((root / "gpus").glob("*/gpu.json"), key=lambda p: int(p.parent.name))]
assert len(seen) == 2 * n and all(s["count"] == 1 for s in seen), seen
assert [s["visible"] for s in seen] == [str(k % n) for k in range(2 * n)], seen
assert len({s["uuid"] for s in seen}) == n, "each GPU of the job used by its share of the points"
print(f"packed points: {2 * n} points on {n} GPU(s), each seeing one, round-robin: ok")
PY
rm -rf "$work"
# what each point used: a point that keeps its GPU busy shows its use and memory in `collect`
cat > "$work/busy.py" <<'PY'
import time
import torch
from sacred import Experiment
ex = Experiment("busy")
@ex.config
def config():
    seconds = 4
@ex.automain
def main(seconds):
    a = torch.randn(4096, 4096, device="cuda")
    end = time.time() + seconds
    while time.time() < end:
        a = (a @ a).tanh()
    torch.cuda.synchronize()
PY
CUDA_VISIBLE_DEVICES=0 PTSLURM_SAMPLE_S=0.5 $py -m ptslurm sweep --executor local --root "$work/busy" --name busy \
    "$work/busy.py" > /dev/null
$py - "$work/busy/sweeps/busy" <<'PY'
import sys, ptslurm
(row,) = ptslurm.collect([sys.argv[1]])
assert row.get("gpu_util", 0) > 10 and row.get("gpu_mem_peak_mb", 0) > 64, row
print(f"usage: GPU {row['gpu_util']}% busy, {row['gpu_mem_peak_mb']:.0f} MiB at the peak, host {row['max_rss_mb']:.0f} MiB: ok")
PY
