"""What an attempt used of its allocation, as the read side shows it: the attempt's record
holds ``usage`` (peak host memory of its process tree; for each GPU it was given, the mean
utilisation and peak memory), sampled by a thread of the job (``sampler.Sampler``).
``columns`` are collect's, ``hints`` one line per waste worth changing an option for.

Without a GPU nothing is sampled of GPUs and nothing is shown of them.
"""
import typing as tp

IDLE_GPU_PERCENT = 10.0  # a GPU used less than this on average is worth a hint
SMALL_MEMORY_SHARE = 0.25  # a point that used less than this share of the memory it asked for


def parse_gpus(text: str) -> tp.List[tp.Tuple[int, float, float, float]]:
    """``nvidia-smi --query-gpu=index,utilization.gpu,memory.used,memory.total
    --format=csv,noheader,nounits`` -> [(index, util %, used MiB, total MiB)]; lines it cannot
    read ("[N/A]", "[Not Supported]") are left out."""
    rows = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4:
            continue
        try:
            rows.append((int(parts[0]), float(parts[1]), float(parts[2]), float(parts[3])))
        except ValueError:
            continue
    return rows


def hints(index: int, usage: tp.Optional[tp.Mapping[str, tp.Any]], mem_gb: tp.Optional[float],
          gpus: int) -> tp.List[str]:
    """One line per waste worth changing an option for: GPUs held but mostly idle, host
    memory asked for but mostly unused (``mem_gb``: what the point asked, None: the
    cluster's default, which says nothing)."""
    if not usage:
        return []
    out = []
    held = usage.get("gpus") or []
    if held and gpus:
        mean = _mean_use(held)
        if mean < IDLE_GPU_PERCENT:
            out.append(f"point {index} kept its {len(held)} GPU(s) {mean:.0f}% busy on average: the work waits "
                       f"elsewhere (data loading?); ask for fewer with --gpus, or give each GPU more work")
    peak = usage.get("max_rss_mb")
    if mem_gb and peak and peak < SMALL_MEMORY_SHARE * mem_gb * 1024:
        enough = max(1, int(-(-peak * 1.5 // 1024)))
        out.append(f"point {index} used {peak / 1024:.1f} of the {mem_gb:g} GB of memory it asked for: "
                   f"--mem {enough} would do")
    return out


def columns(used: tp.Optional[tp.Mapping[str, tp.Any]]) -> tp.Dict[str, tp.Any]:
    """``collect``'s columns of an attempt's usage: peak host memory, and where GPUs were
    sampled their mean utilisation and the peak memory of the busiest."""
    if not used or not used.get("samples"):
        return {}
    out: tp.Dict[str, tp.Any] = {"max_rss_mb": used.get("max_rss_mb")}
    held = used.get("gpus") or []
    if held:
        out["gpu_util"] = round(_mean_use(held), 1)
        out["gpu_mem_peak_mb"] = max(g["mem_peak_mb"] for g in held)
    return out


def _mean_use(gpus: tp.Sequence[tp.Mapping[str, tp.Any]]) -> float:
    """The mean utilisation (%) over the GPUs sampled."""
    return sum(g["util_mean"] for g in gpus) / len(gpus)
