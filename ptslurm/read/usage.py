"""What an attempt used of its allocation, as the read side shows it: the attempt's record
holds ``usage`` (peak host memory of its process tree; for each GPU it was given, the mean
utilisation and peak memory), sampled by a thread of the job (``sampler.Sampler``).
``columns`` are collect's, ``hints`` one line per waste worth changing an option for.

Without a GPU nothing is sampled of GPUs and nothing is shown of them.
"""
import datetime
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


def _seconds(text: tp.Any) -> tp.Optional[float]:
    """A time of the records (ISO 8601) in seconds; None for anything else."""
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except (TypeError, ValueError):
        return None


def span(attempt: tp.Any) -> tp.Optional[tp.Tuple[float, float]]:
    """An attempt's start and end (its last heartbeat while it runs), in seconds."""
    start = _seconds(attempt.started)
    end = _seconds(attempt.ended) or _seconds(attempt.heartbeat) or start
    return None if start is None or end is None else (start, end)


def trained_share(metrics: tp.Mapping[str, tp.Any], start: float, end: float) -> tp.Optional[float]:
    """The share of an attempt's ``start``..``end`` spent training: from its first to its
    last logged step, plus one step's time for the first, by sacred's metric timestamps
    (``metrics``: the attempt's metrics.json, in the order logged); None without any."""
    firsts: tp.List[float] = []
    lasts: tp.List[float] = []
    steps = 0
    for series in metrics.values():
        stamps = series.get("timestamps") or [] if isinstance(series, dict) else []
        first, last = (_seconds(stamps[0]), _seconds(stamps[-1])) if stamps else (None, None)
        if first is not None and last is not None:
            firsts.append(first)
            lasts.append(last)
            steps = max(steps, len(stamps))
    if not firsts or end <= start:
        return None
    spent = max(lasts) - min(firsts)
    trained = spent + (spent / (steps - 1) if steps > 1 else 0.0)
    return round(max(0.0, min(1.0, trained / (end - start))), 3)


def time_columns(attempts: tp.Sequence[tp.Any], parts: tp.Sequence[tp.Mapping[str, tp.Any]]) -> tp.Dict[str, tp.Any]:
    """``collect``'s columns of a point's time: ``time_s``, what its attempts ran in all, and
    ``trained``, the share of it spent training (of the attempts whose metrics say)."""
    total = known = trained = 0.0
    for attempt, metrics in zip(attempts, parts):
        got = span(attempt)
        if got is None:
            continue
        took = got[1] - got[0]
        total += took
        share = trained_share(metrics, *got)
        if share is not None:
            known += took
            trained += share * took
    out: tp.Dict[str, tp.Any] = {"time_s": round(total)} if total else {}
    if known:
        out["trained"] = round(trained / known, 3)
    return out
